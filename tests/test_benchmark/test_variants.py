"""The cost benchmark's variants and report (the tool's smoke run is in tests/test_tools)."""
import copy

import pytest
import torch
from mmengine.config import Config

from diffkd_mm.benchmark import variants
from diffkd_mm.benchmark.report import cost_table, diffkd_math
from diffkd_mm.models.diffkd import DiffKDBranch
from mmrazor.registry import MODELS


def test_every_diffkd_variant_is_a_valid_loss_config():
    assert set(variants.SAME_MATH_AS_DIFFKD) <= set(variants.VARIANTS)
    for name, options in variants.DIFFKD_OPTIONS.items():
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
    dist = Config.fromfile(variants.PAIRS['retinanet']).model.distiller
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
        variants.set_distiller(variant, kind, base, 5)
        assert set(variant.distill_losses) == losses, kind
        assert set(variant.loss_forward_mappings) == losses, kind
        assert ('connectors' in variant) == (kind == 'diffkd_pkd'), kind


def test_reference_formulation_has_identical_math():
    torch.manual_seed(0)
    ours = DiffKDBranch(8, 16, ae_channels=8)
    ref = variants.ReferenceDiffKDBranch(8, 16, ae_channels=8)
    ref.load_state_dict(ours.state_dict())
    s, t = torch.randn(2, 8, 6, 6), torch.randn(2, 16, 6, 6)
    noise, ddim_noise, steps = torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6,
                                                                    6), torch.tensor([3, 900])
    a = ours(s, t, noise=noise, diffusion_noise=ddim_noise, timesteps=steps)
    b = ref(s, t, noise=noise, diffusion_noise=ddim_noise, timesteps=steps)
    torch.testing.assert_close(a.refined, b.refined, rtol=1e-5, atol=1e-5)


def test_cost_table_gives_ratios_to_fitnet_and_the_reference():
    rows = dict(
        fitnet=dict(sec=2.0, mem=100 * 2**20),
        diffkd=dict(sec=3.0, mem=150 * 2**20),
        reference=dict(sec=4.0, mem=150 * 2**20))
    lines = cost_table('t', 's', rows)
    assert lines[-2] == '| diffkd | default | 3.000 | 1.50 | 0.75 | 150.0 | 1.50 |'
    assert lines[-1] == '| reference | same | 4.000 | 2.00 | 1.00 | 150.0 | 1.50 |'
    assert cost_table('t', 's', dict(diffkd_3steps_ae64=rows['diffkd']))[-1] == \
        '| diffkd_3steps_ae64 | changed | 3.000 | - | - | 150.0 | - |'


@pytest.mark.parametrize('kind,expected', [('student', '-'), ('pkd', '-'), ('diffkd', 'default'),
                                           ('diffkd_cp', 'same'), ('diffkd_raw', 'changed'),
                                           ('reference', 'same')])
def test_diffkd_math_of_each_variant(kind, expected):
    assert diffkd_math(kind) == expected


def test_branch_parts_time_what_the_branch_has():
    """A ``start_noise='vp'`` denoiser has no noise adapter: its parts are timed without one."""
    from diffkd_mm.benchmark.timing import branch_parts
    s, t = torch.randn(2, 8, 4, 4), torch.randn(2, 16, 4, 4)
    official = branch_parts(DiffKDBranch(8, 16), s, t, iters=1)
    vp = branch_parts(DiffKDBranch(8, 16, start_noise='vp'), s, t, iters=1)
    assert set(official) - set(vp) == {'noise_adapter'}
    assert all(seconds > 0 for seconds in vp.values())
