import pytest
import torch
import torch.nn.functional as F

from diffkd_mm.models.losses import DiffKDLoss
from mmrazor.registry import MODELS


def test_registered_for_mmrazor_configs():
    loss = MODELS.build(dict(type='DiffKDLoss', student_channels=4, teacher_channels=8))
    assert isinstance(loss, DiffKDLoss)
    for name in ('DiffKDBranch', 'DDIMScheduler', 'NoisePredictor', 'NoiseAdapter',
                 'LinearAutoEncoder', 'DiffKDDistiller'):
        assert MODELS.get(name) is not None, name


def test_fpn_tuple_one_entry_terms_and_weights():
    torch.manual_seed(0)
    loss = DiffKDLoss(student_channels=4, teacher_channels=16, num_levels=3, ae_channels=8,
                      loss_weight=2.0, ddim_loss_weight=0.5, ae_loss_weight=3.0)
    sizes = (8, 4, 2)
    s = [torch.randn(2, 4, h, h) for h in sizes]
    t = [torch.randn(2, 16, h, h) for h in sizes]
    torch.manual_seed(1)
    out = loss(s, t)
    assert set(out) == {'loss_kd', 'loss_ddim', 'loss_ae', 'gate'}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    assert not out['gate'].requires_grad and 0 < out['gate'] < 1
    # Recompute the weighted sums level by level with the same draws.
    torch.manual_seed(1)
    kd = ddim = ae = 0
    for level in range(3):
        o = loss.branches[level](s[level], t[level])
        kd, ddim, ae = kd + F.mse_loss(o.refined, o.target), ddim + o.loss_ddim, ae + o.loss_ae
    torch.testing.assert_close(out['loss_kd'], 2.0 * kd)
    torch.testing.assert_close(out['loss_ddim'], 0.5 * ddim)
    torch.testing.assert_close(out['loss_ae'], 3.0 * ae)


def test_shared_branch_has_one_set_of_weights():
    shared = DiffKDLoss(4, 8, num_levels=5, share_branch=True)
    separate = DiffKDLoss(4, 8, num_levels=5)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert len(shared.branches) == 1 and n(separate) == 5 * n(shared)
    out = shared([torch.randn(2, 4, h, h) for h in (8, 4, 2, 2, 1)],
                 [torch.randn(2, 8, h, h) for h in (8, 4, 2, 2, 1)])
    assert torch.isfinite(out['loss_kd'])


def test_logits_with_kl_match_official_kl():
    torch.manual_seed(0)
    loss = DiffKDLoss(10, 10, kernel_size=1, kd_loss='kl', tau=2.0)
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    torch.manual_seed(5)
    out = loss(s, t)
    torch.manual_seed(5)
    o = loss.branches[0](s[:, :, None, None], t[:, :, None, None])
    expected = 4.0 * F.kl_div(
        F.log_softmax(o.refined.flatten(1) / 2, 1), F.softmax(o.target.flatten(1) / 2, 1),
        reduction='batchmean')
    torch.testing.assert_close(out['loss_kd'], expected)
    assert 'loss_ae' not in out


def test_tokens_are_reshaped_to_square_maps():
    loss = DiffKDLoss(6, 8)
    out = loss(torch.randn(2, 16, 6), torch.randn(2, 16, 8))
    assert torch.isfinite(out['loss_kd'])
    with pytest.raises(ValueError, match='17 tokens, not a square'):
        loss(torch.randn(2, 17, 6), torch.randn(2, 17, 8))


def test_channel_mismatch_names_loss_and_shapes():
    loss = DiffKDLoss(4, 8)
    loss.loss_name = 'loss_diffkd_neck'
    with pytest.raises(ValueError, match=r'loss_diffkd_neck: preds_S\[0\] has 5 channels '
                       r'\(shape \(2, 5, 4, 4\)\) but student_channels=4'):
        loss(torch.randn(2, 5, 4, 4), torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r'preds_T\[0\] has 7 channels.*teacher_channels=8'):
        loss(torch.randn(2, 4, 4, 4), torch.randn(2, 7, 4, 4))


def test_spatial_mismatch_errors_or_resizes():
    s, t = torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)
    with pytest.raises(ValueError, match='spatial sizes differ.*resize_student'):
        DiffKDLoss(4, 8)(s, t)
    out = DiffKDLoss(4, 8, resize_student='bilinear')(s, t)
    assert torch.isfinite(out['loss_kd'])


def test_level_count_mismatch():
    with pytest.raises(ValueError, match='2 feature level.*num_levels=3'):
        DiffKDLoss(4, 8, num_levels=3)([torch.randn(1, 4, 2, 2)] * 2, [torch.randn(1, 8, 2, 2)] * 2)


@pytest.mark.parametrize('kwargs,match', [
    (dict(kd_loss='l1'), 'kd_loss must be one of'),
    (dict(kernel_size=2), 'kernel_size must be 1'),
    (dict(num_levels=2, student_channels=[4, 4, 4]), 'student_channels must be'),
    (dict(resize_student='linear'), 'resize_student must be one of'),
    (dict(share_branch=True, num_levels=2, teacher_channels=[8, 16]), 'share_branch'),
    (dict(inference_steps=501), 'inference_steps'),
    (dict(tau=0), 'tau'),
])
def test_bad_config_values(kwargs, match):
    args = dict(student_channels=4, teacher_channels=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DiffKDLoss(**args)


def _nan_levels():
    s = [torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    s[1][0, 0, 0, 0] = float('nan')
    return s, [torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2)]


def test_nonfinite_term_raises_with_loss_term_level_and_iteration():
    from mmengine.logging import MessageHub
    loss = DiffKDLoss(4, 8, num_levels=2)
    loss.loss_name = 'loss_diffkd_fpn'
    MessageHub.get_current_instance().update_info('iter', 41)
    s, t = _nan_levels()
    with pytest.raises(FloatingPointError,
                       match=r'loss_diffkd_fpn: non-finite DiffKD term\(s\) at iteration 42: '
                       r'loss_kd = nan at level 1'):
        loss(s, t)


def test_nonfinite_skip_drops_the_terms_without_gradient():
    loss = DiffKDLoss(4, 8, num_levels=2, nonfinite='skip')
    s, t = _nan_levels()
    out = loss(s, t)
    assert float(out['loss_kd']) == 0 and float(out['loss_ddim']) == 0
    assert not out['loss_kd'].requires_grad  # nothing reaches DiffKD's weights
    assert DiffKDLoss(4, 8, nonfinite='ignore')(s[0], t[0])['loss_kd'].requires_grad


def test_nonfinite_in_a_train_step_stops_before_the_optimizer_step():
    import copy

    from mmengine.optim import OptimWrapper

    from diffkd_mm.testing import toy_batch, toy_distill_cfg
    torch.manual_seed(0)
    algo = MODELS.build(toy_distill_cfg())
    algo.train()
    algo.student.backbone.register_forward_pre_hook(lambda m, args: (args[0] * float('nan'), ))
    before = copy.deepcopy(algo.state_dict())
    wrapper = OptimWrapper(torch.optim.SGD(algo.parameters(), lr=0.1))
    with pytest.raises(FloatingPointError, match='loss_diffkd: non-finite'):
        algo.train_step(toy_batch(), wrapper)
    for key, value in algo.state_dict().items():
        if 'running_' not in key and 'num_batches' not in key:  # BN statistics move in forward
            assert torch.equal(value, before[key]), key
