"""The benchmark tool keeps working (a smoke run: its numbers are not asserted), and its reference
formulation computes what DiffKDBranch computes."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

import diffkd_mm

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark_train_step.py')


def _tool_module():
    sys.path.insert(0, osp.dirname(TOOL))
    try:
        import benchmark_train_step
    finally:
        sys.path.pop(0)
    return benchmark_train_step


def test_every_diffkd_variant_is_a_valid_loss_config():
    from mmrazor.registry import MODELS
    tool = _tool_module()
    assert set(tool.SAME_MATH_AS_DIFFKD) <= set(tool.VARIANTS)
    for name, options in tool.DIFFKD_OPTIONS.items():
        loss = MODELS.build(
            dict(
                type='DiffKDLoss',
                student_channels=16,
                teacher_channels=16,
                num_levels=2,
                **options))
        assert len(loss.branches) == (1 if options.get('share_branch') else 2), name


def test_each_variant_holds_only_its_own_losses():
    """A variant replaces the config's DiffKD entry: the FitNet variant computes no DiffKD."""
    import copy

    from mmengine.config import Config
    tool = _tool_module()
    dist = Config.fromfile(tool.PAIRS['retinanet']).model.distiller
    base = copy.deepcopy(dist.distill_losses.loss_diffkd_fpn)
    expected = dict(
        fitnet={f'loss_mse{i}'
                for i in range(5)},
        pkd={f'loss_pkd{i}'
             for i in range(5)},
        diffkd={'loss_diffkd'},
        diffkd_per_level={f'loss_diffkd{i}'
                          for i in range(5)},
        diffkd_pkd={'loss_pkd', 'loss_diffkd'})
    for kind, losses in expected.items():
        variant = copy.deepcopy(dist)
        tool.set_distiller(variant, kind, base, 5)
        assert set(variant.distill_losses) == losses, kind
        assert set(variant.loss_forward_mappings) == losses, kind
        assert ('connectors' in variant) == (kind == 'diffkd_pkd'), kind


def test_reference_formulation_has_identical_math():
    ReferenceDiffKDBranch = _tool_module().ReferenceDiffKDBranch
    from diffkd_mm.models.diffkd import DiffKDBranch
    torch.manual_seed(0)
    ours = DiffKDBranch(8, 16, ae_channels=8)
    ref = ReferenceDiffKDBranch(8, 16, ae_channels=8)
    ref.load_state_dict(ours.state_dict())
    s, t = torch.randn(2, 8, 6, 6), torch.randn(2, 16, 6, 6)
    noise, ddim_noise, steps = torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6,
                                                                    6), torch.tensor([3, 900])
    a = ours(s, t, noise=noise, diffusion_noise=ddim_noise, timesteps=steps)
    b = ref(s, t, noise=noise, diffusion_noise=ddim_noise, timesteps=steps)
    torch.testing.assert_close(a.refined, b.refined, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path):
    res = subprocess.run([
        sys.executable, TOOL, '--size', '64', '--iters', '1', '--warmup', '0', '--no-scaling',
        '--variants', 'student', 'fitnet', 'diffkd', 'diffkd_per_level', 'diffkd_pkd', 'reference',
        '--out-dir',
        str(tmp_path)
    ],
                         capture_output=True,
                         text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    table = (tmp_path / 'benchmark.md').read_text()
    assert '| diffkd |' in table and '| reference |' in table
    rows = json.loads((tmp_path / 'benchmark.json').read_text())['rows']
    assert set(rows) == {
        'student', 'fitnet', 'diffkd', 'diffkd_per_level', 'diffkd_pkd', 'reference'
    }
    assert all(r['sec'] > 0 and r['mem'] > 0 for r in rows.values())
