"""The foundation: after `import diffkd_mm` the whole OpenMMLab stack imports and distils."""
import subprocess
import sys

import pytest
import torch

import diffkd_mm
from diffkd_mm import compat


def test_version():
    assert isinstance(diffkd_mm.__version__, str) and diffkd_mm.__version__.count('.') == 2


def test_stack_imports_after_diffkd_mm():
    # A fresh interpreter, so that no other test has imported anything first.
    code = ('import diffkd_mm, mmrazor.models, mmrazor.engine, mmdet.models, mmseg.models, '
            'mmpretrain.models\n'
            'from mmrazor.utils import register_all_modules\n'
            'register_all_modules()\n'
            'from mmrazor.models import SingleTeacherDistill, ConfigurableDistiller\n'
            'from mmcv.ops import nms, RoIAlign\n'
            'print("OK", diffkd_mm.compat.QUANTIZATION_IMPORT_ERROR is not None)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().startswith('OK')


def test_compat_is_idempotent():
    """Applied again, nothing is re-imported or wrapped twice."""
    import sys

    from mmrazor.models.distillers import ConfigurableDistiller
    before = compat.QUANTIZATION_IMPORT_ERROR
    structures = sys.modules['mmrazor.structures']
    build = ConfigurableDistiller.build_distill_losses
    assert compat.apply() is (before is not None)
    compat.name_distill_losses()
    assert compat.QUANTIZATION_IMPORT_ERROR is before
    assert sys.modules['mmrazor.structures'] is structures
    assert ConfigurableDistiller.build_distill_losses is build


def test_mmcv_compiled_ops_run():
    from mmcv.ops import RoIAlign, nms
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float)
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feat = torch.arange(16, dtype=torch.float).view(1, 1, 4, 4)
    rois = torch.tensor([[0, 0, 0, 4, 4]], dtype=torch.float)
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)(feat, rois)
    # Bin centres of a 4x4 ramp: the mean of each 2x2 quadrant.
    assert torch.allclose(out.flatten(), torch.tensor([2.5, 4.5, 10.5, 12.5]))


@pytest.mark.skipif(
    compat.QUANTIZATION_IMPORT_ERROR is None,
    reason='mmrazor quantization imports natively on this torch')
def test_stubbed_quantization_api_raises_clearly():
    from mmrazor.structures.quantization import BackendConfigs
    from mmrazor.structures.quantization.backend_config import get_native_backend_config
    with pytest.raises(compat.MMRazorQuantizationUnavailable, match='diffkd_mm/compat.py'):
        BackendConfigs['native']
    with pytest.raises(ImportError, match='mmrazor 1.0.0.*quantization'):
        get_native_backend_config()
    # Everything else of mmrazor.structures is the real thing.
    from mmrazor.structures import export_fix_subnet
    assert export_fix_subnet.__module__.startswith('mmrazor.structures')


def test_single_teacher_distill_train_step_on_cpu():
    from mmengine.optim import OptimWrapper

    from diffkd_mm.testing import toy_batch, toy_distill_cfg
    from mmrazor.registry import MODELS
    torch.manual_seed(0)
    # The stock ConfigurableDistiller with an mmrazor loss: proves the stack itself works.
    cfg = toy_distill_cfg(
        distiller_type='ConfigurableDistiller',
        loss_cfg=dict(type='ChannelWiseDivergence', tau=1.0, loss_weight=1.0),
        student_width=8,
        teacher_width=8)
    algo = MODELS.build(cfg)
    before = [p.detach().clone() for p in algo.student.parameters()]
    wrapper = OptimWrapper(torch.optim.SGD(algo.parameters(), lr=0.1))
    log_vars = algo.train_step(toy_batch(), wrapper)
    assert {'loss', 'student.loss_cls', 'distill.loss_diffkd'} <= set(log_vars)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, algo.student.parameters()))


def test_stock_distiller_tells_its_losses_their_entry_names():
    """mmrazor 1.0.0's ConfigurableDistiller builds its losses in build_distill_losses, which
    compat wraps: every DiffKD entry knows its key once the distiller is built, before any
    call, and other losses are left alone. Written against mmrazor 1.0.0."""
    import mmrazor
    from mmrazor.models.distillers import ConfigurableDistiller
    assert mmrazor.__version__ == '1.0.0', 'check name_distill_losses against this mmrazor'
    distiller = ConfigurableDistiller(
        distill_losses=dict(
            loss_fpn=dict(type='DiffKDLoss', student_channels=4, teacher_channels=8),
            loss_l2=dict(type='L2Loss')))
    assert distiller.distill_losses['loss_fpn'].loss_name == 'loss_fpn'
    assert not hasattr(distiller.distill_losses['loss_l2'], 'loss_name')
    wrapped = ConfigurableDistiller.build_distill_losses
    compat.name_distill_losses()  # idempotent: wraps once
    assert ConfigurableDistiller.build_distill_losses is wrapped
    assert not hasattr(wrapped.__wrapped__, '__wrapped__')
