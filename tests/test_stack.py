"""The foundation: after `import diffkd_mm` the whole OpenMMLab stack imports and distils."""
import subprocess
import sys

import pytest
import torch

import diffkd_mm
from diffkd_mm import patches


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
            'print("OK", diffkd_mm.patches.QUANTIZATION_IMPORT_ERROR is not None)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().startswith('OK')


def test_stand_in_is_applied_once_and_mmrazor_is_left_as_it_is():
    """Applied again, nothing is re-imported; mmrazor's distiller is its own class, unwrapped."""
    from mmrazor.models.distillers import ConfigurableDistiller
    before = patches.QUANTIZATION_IMPORT_ERROR
    structures = sys.modules['mmrazor.structures']
    assert patches.apply() is (before is not None)
    assert patches.QUANTIZATION_IMPORT_ERROR is before
    assert sys.modules['mmrazor.structures'] is structures
    build = ConfigurableDistiller.build_distill_losses
    assert build.__module__ == 'mmrazor.models.distillers.configurable_distiller'
    assert not hasattr(build, '__wrapped__')


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
    patches.QUANTIZATION_IMPORT_ERROR is None,
    reason='mmrazor quantization imports natively on this torch')
def test_stubbed_quantization_api_raises_clearly():
    from mmrazor.structures.quantization import BackendConfigs
    from mmrazor.structures.quantization.backend_config import get_native_backend_config
    with pytest.raises(patches.MMRazorQuantizationUnavailable, match='diffkd_mm/patches.py'):
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


def test_stock_distiller_entries_are_named_by_the_hook_only_when_asked():
    """mmrazor 1.0.0's ConfigurableDistiller keeps each entry's key to itself: a DiffKD entry is
    unnamed (its sum still trains and is logged) until DistillLossNamesHook tells it, before
    training; other losses and entries named already are left alone."""
    from types import SimpleNamespace

    from diffkd_mm.engine import DistillLossNamesHook
    from diffkd_mm.testing import toy_distill_cfg
    from mmrazor.registry import MODELS
    algo = MODELS.build(toy_distill_cfg(distiller_type='ConfigurableDistiller'))
    algo.distiller.distill_losses['loss_l2'] = MODELS.build(dict(type='L2Loss'))
    entry = algo.distiller.distill_losses['loss_diffkd']
    assert entry.loss_name is None
    DistillLossNamesHook().before_train(SimpleNamespace(model=algo))
    assert entry.loss_name == 'loss_diffkd'
    assert not hasattr(algo.distiller.distill_losses['loss_l2'], 'loss_name')
    entry.bind_entry('loss_mine')
    DistillLossNamesHook().before_train(SimpleNamespace(model=algo))
    assert entry.loss_name == 'loss_mine'
