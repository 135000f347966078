import itertools

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub

from diffkd_mm.models.connectors import DiffKDTeacherConnector
from diffkd_mm.models.diffkd import DiffKDTarget
from diffkd_mm.models.diffkd.target import standardize_channels
from diffkd_mm.models.losses import DiffKDLoss
from mmrazor.registry import MODELS

_hubs = itertools.count()


def logged_terms(loss, *inputs, name='loss_diffkd'):
    """Run ``loss`` as an entry named ``name`` and return (total, {term: logged value})."""
    hub = MessageHub.get_instance(f'test_diffkd_loss_{next(_hubs)}')  # becomes the current hub
    loss.bind_entry(name)
    total = loss(*inputs)
    stem = name[len('loss_'):]
    logged = {}
    for key, buf in hub.log_scalars.items():
        prefix = f'train/distill.{name}_'
        if not key.startswith(prefix):
            prefix = f'train/distill.{stem}_'
        logged[key[len(prefix):]] = buf.current()
    return total, logged


def test_registered_for_mmrazor_configs():
    loss = MODELS.build(dict(type='DiffKDLoss', student_channels=4, teacher_channels=8))
    assert isinstance(loss, DiffKDLoss)
    for name in ('DiffKDDistiller', 'DiffKDDiffusionLoss', 'DiffKDStudentConnector',
                 'DiffKDTeacherConnector'):
        assert MODELS.get(name) is not None, name
    # Internal parts are built by the branch, never from a config: nothing of them goes into
    # mmrazor's registry, where generic names could collide with other packages'.
    for name in ('DiffKDBranch', 'DDIMScheduler', 'NoisePredictor', 'NoiseAdapter',
                 'LinearAutoEncoder'):
        assert MODELS.get(name) is None, name


def test_fpn_tuple_one_entry_terms_and_weights():
    torch.manual_seed(0)
    loss = DiffKDLoss(
        student_channels=4,
        teacher_channels=16,
        num_levels=3,
        ae_channels=8,
        loss_weight=2.0,
        ddim_loss_weight=0.5,
        ae_loss_weight=3.0)
    sizes = (8, 4, 2)
    s = [torch.randn(2, 4, h, h) for h in sizes]
    t = [torch.randn(2, 16, h, h) for h in sizes]
    torch.manual_seed(1)
    total, out = logged_terms(loss, s, t)
    assert set(out) == {'kd', 'ddim', 'ae', 'gate'}
    assert total.dim() == 0 and total.requires_grad
    assert 0 < out['gate'] < 1
    # Recompute the weighted sums level by level with the same draws.
    torch.manual_seed(1)
    kd = ddim = ae = 0
    for level in range(3):
        o = loss.branches[level](s[level], t[level])
        kd, ddim, ae = kd + F.mse_loss(o.refined, o.target), ddim + o.loss_ddim, ae + o.loss_ae
    for term, expected in (('kd', 2.0 * kd), ('ddim', 0.5 * ddim), ('ae', 3.0 * ae)):
        assert out[term] == pytest.approx(float(expected), rel=1e-5), term
    torch.testing.assert_close(total, 2.0 * kd + 0.5 * ddim + 3.0 * ae)


def test_any_distiller_gets_a_tensor_and_the_hook_names_the_logged_terms(monkeypatch):
    """In mmrazor's stock ConfigurableDistiller the entry trains unnamed (mmengine logs its sum)
    and says once that its terms are not logged; once DistillLossNamesHook has told it its
    name, each term is logged as distill.<entry>_<term>."""
    from types import SimpleNamespace

    from diffkd_mm.engine import DistillLossNamesHook
    from diffkd_mm.models.losses import multi_term
    from mmrazor.models.distillers import ConfigurableDistiller
    said = []
    monkeypatch.setattr(multi_term, 'print_log', lambda message, **kwargs: said.append(message))
    hub = MessageHub.get_instance(f'test_diffkd_loss_{next(_hubs)}')
    distiller = ConfigurableDistiller(
        student_recorders=dict(s=dict(type='ModuleOutputs', source='0')),
        teacher_recorders=dict(t=dict(type='ModuleOutputs', source='0')),
        distill_losses=dict(
            loss_diffkd_neck=dict(
                type='DiffKDLoss', student_channels=4, teacher_channels=8, ae_channels=8)),
        loss_forward_mappings=dict(
            loss_diffkd_neck=dict(
                preds_S=dict(from_student=True, recorder='s'),
                preds_T=dict(from_student=False, recorder='t'))))
    student, teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1)), \
        torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1))
    distiller.prepare_from_student(student)
    distiller.prepare_from_teacher(teacher)
    x = torch.randn(2, 3, 4, 4)
    with distiller.student_recorders, distiller.teacher_recorders:
        student(x), teacher(x)
    for _ in range(2):
        assert isinstance(distiller.compute_distill_losses()['loss_diffkd_neck'], torch.Tensor)
    assert len(said) == 1 and 'DistillLossNamesHook' in said[0]
    assert not any('loss_diffkd_neck_' in k for k in hub.log_scalars)
    DistillLossNamesHook().before_train(SimpleNamespace(model=distiller))
    losses = distiller.compute_distill_losses()
    names = {k for k in hub.log_scalars}
    assert {
        'train/distill.loss_diffkd_neck_kd', 'train/distill.loss_diffkd_neck_ddim',
        'train/distill.loss_diffkd_neck_ae', 'train/distill.diffkd_neck_gate'
    } == names
    logged = sum(
        hub.get_scalar(f'train/distill.loss_diffkd_neck_{t}').current()
        for t in ('kd', 'ddim', 'ae'))
    assert float(losses['loss_diffkd_neck']) == pytest.approx(logged, rel=1e-5)


def test_terms_are_not_logged_in_eval_mode():
    hub = MessageHub.get_instance(f'test_diffkd_loss_{next(_hubs)}')
    loss = DiffKDLoss(4, 8).eval()
    loss.bind_entry('loss_diffkd')
    loss(torch.randn(2, 4, 4, 4), torch.randn(2, 8, 4, 4))
    assert not hub.log_scalars


@pytest.mark.parametrize('match_loss,expected', [
    (dict(type='L2Loss', normalize=False, div_element=True), lambda r, t: F.mse_loss(r, t)),
    (dict(type='PKDLoss', loss_weight=2.0), None),
    (dict(type='ChannelWiseDivergence', tau=2.0, loss_weight=3.0), None),
])
def test_match_loss_is_any_registered_mmrazor_loss(match_loss, expected):
    """The KD term is loss_weight * match_loss(refined, target) per level; the diffusion and
    AE terms are DiffKD's as before."""
    torch.manual_seed(0)
    loss = DiffKDLoss(4, 16, num_levels=2, ae_channels=8, loss_weight=0.5, match_loss=match_loss)
    built = MODELS.build(match_loss)
    s = [torch.randn(2, 4, h, h) for h in (4, 2)]
    t = [torch.randn(2, 16, h, h) for h in (4, 2)]
    torch.manual_seed(1)
    total, out = logged_terms(loss, s, t)
    torch.manual_seed(1)
    kd = ddim = 0
    for level in range(2):
        o = loss.branches[level](s[level], t[level])
        fn = expected or built
        kd = kd + fn(o.refined, o.target)
        ddim = ddim + o.loss_ddim
    assert out['kd'] == pytest.approx(float(0.5 * kd), rel=1e-5)
    assert out['ddim'] == pytest.approx(float(ddim), rel=1e-5)
    total.backward()
    assert loss.branches[0].denoiser.student_proj.weight.grad is not None


def test_match_loss_on_logits_sees_logits():
    """For (B, C) inputs the match loss receives (B, C) tensors, as mmrazor's KLDivergence
    expects."""
    torch.manual_seed(0)
    seen = []
    loss = DiffKDLoss(
        10, 10, kernel_size=1, match_loss=dict(type='KLDivergence', tau=2.0, loss_weight=1.0))
    loss.match_loss.register_forward_pre_hook(
        lambda m, args: seen.append([tuple(a.shape) for a in args]))
    total = loss(torch.randn(4, 10), torch.randn(4, 10))
    assert seen == [[(4, 10), (4, 10)]] and torch.isfinite(total)


@pytest.mark.parametrize('kwargs,match', [
    (dict(match_loss=dict(type='NoSuchLoss')), r"match_loss.type='NoSuchLoss' is not a "
     'registered loss'),
    (dict(match_loss='PKDLoss'), 'match_loss must be a loss config'),
    (dict(match_loss=dict(type='PKDLoss'), kd_loss='kl'), 'kd_loss and tau apply only without'),
])
def test_bad_match_loss(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffKDLoss(4, 8, **kwargs)


def test_shared_branch_has_one_set_of_weights():
    shared = DiffKDLoss(4, 8, num_levels=5, share_branch=True)
    separate = DiffKDLoss(4, 8, num_levels=5)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert len(shared.branches) == 1 and n(separate) == 5 * n(shared)
    out = shared([torch.randn(2, 4, h, h) for h in (8, 4, 2, 2, 1)],
                 [torch.randn(2, 8, h, h) for h in (8, 4, 2, 2, 1)])
    assert torch.isfinite(out)


def test_logits_with_kl_match_official_kl():
    torch.manual_seed(0)
    loss = DiffKDLoss(10, 10, kernel_size=1, kd_loss='kl', tau=2.0)
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    torch.manual_seed(5)
    _, out = logged_terms(loss, s, t)
    torch.manual_seed(5)
    o = loss.branches[0](s[:, :, None, None], t[:, :, None, None])
    expected = 4.0 * F.kl_div(
        F.log_softmax(o.refined.flatten(1) / 2, 1),
        F.softmax(o.target.flatten(1) / 2, 1),
        reduction='batchmean')
    assert out['kd'] == pytest.approx(float(expected), rel=1e-5)
    assert 'ae' not in out


def test_tokens_are_reshaped_to_square_maps():
    """Token n of a (B, N, C) input is position (n // side, n % side) of the map the branch
    sees: a reshape that forgets the transpose would scramble channels and positions."""
    torch.manual_seed(0)
    loss = DiffKDLoss(6, 8)
    s, t = torch.randn(2, 16, 6), torch.randn(2, 16, 8)
    seen = []
    loss.branches[0].register_forward_pre_hook(lambda m, args: seen.append(args))
    assert torch.isfinite(loss(s, t))
    s_map, t_map = seen[0]
    assert s_map.shape == (2, 6, 4, 4) and t_map.shape == (2, 8, 4, 4)
    torch.testing.assert_close(s_map[1, :, 2, 3], s[1, 2 * 4 + 3])
    torch.testing.assert_close(t_map[0, :, 3, 1], t[0, 3 * 4 + 1])
    with pytest.raises(ValueError, match='17 tokens, not a square'):
        loss(torch.randn(2, 17, 6), torch.randn(2, 17, 8))


def test_channel_mismatch_names_loss_and_shapes():
    loss = DiffKDLoss(4, 8)
    loss.bind_entry('loss_diffkd_neck')
    with pytest.raises(
            ValueError,
            match=r'loss_diffkd_neck: preds_S\[0\] has 5 channels '
            r'\(shape \(2, 5, 4, 4\)\) but student_channels=4'):
        loss(torch.randn(2, 5, 4, 4), torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r'preds_T\[0\] has 7 channels.*teacher_channels=8'):
        loss(torch.randn(2, 4, 4, 4), torch.randn(2, 7, 4, 4))


def test_spatial_mismatch_errors_or_resizes():
    s, t = torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)
    with pytest.raises(ValueError, match='spatial sizes differ.*resize_student'):
        DiffKDLoss(4, 8)(s, t)
    loss = DiffKDLoss(4, 8, resize_student='bilinear')
    seen = []
    loss.branches[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    assert torch.isfinite(loss(s, t))
    # The branch sees the student map resized to the teacher's 4x4, as F.interpolate gives it.
    torch.testing.assert_close(seen[0],
                               F.interpolate(s, size=(4, 4), mode='bilinear', align_corners=False))


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
    (dict(target_norm='batch'), 'target_norm must be one of'),
])
def test_bad_config_values(kwargs, match):
    args = dict(student_channels=4, teacher_channels=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DiffKDLoss(**args)


def test_standardize_channels_removes_only_each_channels_scale():
    from diffkd_mm.models.diffkd.target import standardize_channels
    x = torch.randn(3, 4, 5, 5) * torch.tensor([1., 10., 1e3, 1e5]).view(1, 4, 1, 1) + 7
    z = standardize_channels(x)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        z.var(dim=(0, 2, 3), unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    # Positions and samples keep their order and relative distances within a channel.
    for c in range(4):
        torch.testing.assert_close(
            z[:, c], (x[:, c] - x[:, c].mean()) / x[:, c].std(unbiased=False), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize('ae_channels', [None, 8])
def test_huge_teacher_features_give_unit_scale_terms(ae_channels):
    """An untrained deep teacher's FPN reaches 1e5: with the default target_norm every term
    of the first call is of order 1 (and identical to the call on a unit-scale teacher); with the
    teacher's raw scale (target_norm=None, official) the KD and AE terms are ~1e10."""
    torch.manual_seed(0)
    s = [torch.randn(2, 4, 6, 6), torch.randn(2, 4, 3, 3)]
    t = [torch.randn(2, 16, 6, 6), torch.randn(2, 16, 3, 3)]
    huge = [x * 1e5 for x in t]

    def terms(target_norm, teacher):
        torch.manual_seed(0)
        loss = DiffKDLoss(
            4,
            16,
            num_levels=2,
            ae_channels=ae_channels,
            **({} if target_norm == 'default' else dict(target_norm=target_norm)))
        torch.manual_seed(1)
        return logged_terms(loss, s, teacher)[1]

    default = terms('default', huge)
    assert all(0 < default[k] < 10 for k in ('kd', 'ddim') + (('ae', ) if ae_channels else ()))
    unit = terms('default', t)
    for key in default:
        assert default[key] == pytest.approx(unit[key], rel=1e-3), key
    raw = terms(None, huge)
    assert raw['ae' if ae_channels else 'kd'] > 1e8


def test_target_norm_auto_standardises_maps_and_leaves_logits():
    """'auto', the one default: a teacher map with positions is standardised per channel;
    logits ((B, C), seen as 1x1 maps) keep their scale; None and 'channel' do as they say."""
    ft = torch.randn(4, 8, 3, 3) * 5 + 2
    torch.testing.assert_close(DiffKDTarget(8)(ft)[0], standardize_channels(ft))
    assert torch.equal(DiffKDTarget(8, target_norm=None)(ft)[0], ft)
    logits = torch.randn(4, 10, 1, 1) * 5
    assert torch.equal(DiffKDTarget(10)(logits)[0], logits)
    torch.testing.assert_close(
        DiffKDTarget(10, target_norm='channel')(logits)[0], standardize_channels(logits))
    # The loss entry and the teacher connector take the same default from the teacher side.
    out, _ = next(
        DiffKDLoss(10, 10, kernel_size=1,
                   kd_loss='kl').level_outputs(torch.randn(4, 10), logits.flatten(1)))
    assert torch.equal(out.target, logits)
    torch.testing.assert_close(DiffKDTeacherConnector(8)(ft), standardize_channels(ft))


def _nan_levels():
    s = [torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    s[1][0, 0, 0, 0] = float('nan')
    return s, [torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2)]


def test_nonfinite_term_raises_with_loss_term_level_and_iteration():
    from mmengine.logging import MessageHub
    loss = DiffKDLoss(4, 8, num_levels=2)
    loss.bind_entry('loss_diffkd_fpn')
    MessageHub.get_current_instance().update_info('iter', 41)
    s, t = _nan_levels()
    with pytest.raises(
            FloatingPointError,
            match=r'loss_diffkd_fpn: non-finite DiffKD term\(s\) at iteration 42: '
            r'loss_kd = nan at level 1'):
        loss(s, t)


def test_nonfinite_skip_drops_the_terms_without_gradient():
    loss = DiffKDLoss(4, 8, num_levels=2, nonfinite='skip')
    s, t = _nan_levels()
    out = loss(s, t)
    assert float(out) == 0
    assert not out.requires_grad  # nothing reaches DiffKD's weights
    assert DiffKDLoss(4, 8, nonfinite='ignore')(s[0], t[0]).requires_grad


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


def test_ae_channels_per_level_like_the_channels():
    loss = DiffKDLoss([4, 8], [16, 32], num_levels=2, ae_channels=[8, 12])
    assert [b.target.latent_channels for b in loss.branches] == [8, 12]
    assert [b.denoiser.student_proj.out_channels for b in loss.branches] == [8, 12]
    one = DiffKDLoss([4, 8], [16, 32], num_levels=2, ae_channels=8)
    assert [b.target.latent_channels for b in one.branches] == [8, 8]
    none = DiffKDLoss(4, 16, num_levels=2)
    assert [b.target.autoencoder for b in none.branches] == [None, None]
    with pytest.raises(ValueError, match='share_branch=True needs the same channels'):
        DiffKDLoss(4, 16, num_levels=2, ae_channels=[8, 12], share_branch=True)
    with pytest.raises(ValueError, match='ae_channels must be a positive int or 2 positive ints'):
        DiffKDLoss(4, 16, num_levels=2, ae_channels=[8])
    fs = [torch.randn(2, 4, 5, 5), torch.randn(2, 8, 3, 3)]
    ft = [torch.randn(2, 16, 5, 5), torch.randn(2, 32, 3, 3)]
    assert torch.isfinite(DiffKDLoss([4, 8], [16, 32], num_levels=2, ae_channels=[8, 12])(fs, ft))
