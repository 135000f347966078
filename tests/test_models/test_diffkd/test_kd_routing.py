"""Where the KD signal goes under the options that keep it away from the denoiser:
kd_predictor_ema and start_noise='vp' (DiffKDDenoiser), student_match_weight and
denoised_pull_weight (DiffKDLoss)."""
import pytest
import torch

from diffkd_mm.models.diffkd import DiffKDDenoiser
from diffkd_mm.models.diffkd.student_terms import channel_wise_kl, standardized_mse
from diffkd_mm.models.losses import DiffKDLoss
from mmrazor.registry import MODELS


def grads_of(loss, student, module):
    """Gradients of ``loss`` for the student feature and every parameter of ``module``."""
    params = dict(module.named_parameters())
    grads = torch.autograd.grad(loss, [student, *params.values()], allow_unused=True)
    return dict(zip(['student_feat', *params], grads))


def nonzero(grad) -> bool:
    return grad is not None and float(grad.abs().sum()) > 0


def features(seed=1, student_channels=6, teacher_channels=16, size=4):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(3, student_channels, size, size, generator=g, requires_grad=True)
    teacher = torch.randn(3, teacher_channels, size, size, generator=g) * 5 + 2
    return student, teacher


# ----------------------------------------------------------------------------- kd_predictor_ema
def test_ema_needs_the_kd_gradient_stopped():
    with pytest.raises(ValueError, match='kd_predictor_ema=0.99 needs kd_trains_predictor=False'):
        DiffKDDenoiser(6, 16, kd_predictor_ema=0.99)


@pytest.mark.parametrize('bad', [1, 1.0, 0.0, -0.5, 'x', True, float('nan')])
def test_ema_momentum_must_be_in_the_open_unit_interval(bad):
    with pytest.raises(ValueError, match='kd_predictor_ema must be a float in \\(0, 1\\)'):
        DiffKDDenoiser(6, 16, kd_trains_predictor=False, kd_predictor_ema=bad)


def test_ema_follows_the_weights_and_the_loop_runs_on_it():
    torch.manual_seed(0)
    denoiser = DiffKDDenoiser(6, 16, kd_trains_predictor=False, kd_predictor_ema=0.9).train()
    student, _ = features()
    denoiser(student)  # the first training forward copies the weights
    average = denoiser.predictor_ema.weights()
    weights = dict(denoiser.noise_predictor.named_parameters())
    for name, weight in weights.items():
        torch.testing.assert_close(average[name], weight.detach())
    before = {name: w.detach().clone() for name, w in weights.items()}
    with torch.no_grad():  # an optimizer step
        for weight in weights.values():
            weight.add_(1.0)
    noise = torch.randn(3, 16, 4, 4)
    refined, _, _ = denoiser(student, noise)
    average = denoiser.predictor_ema.weights()  # updated out of place: new tensors
    for name, weight in weights.items():
        torch.testing.assert_close(average[name], 0.9 * before[name] + 0.1 * weight.detach())
    # The loop ran on the average, not on the live weights: a denoiser whose predictor holds
    # the average computes the same refined feature (train mode: BN uses batch statistics).
    own = {k: v for k, v in denoiser.state_dict().items() if not k.startswith('predictor_ema.')}
    averaged = DiffKDDenoiser(6, 16).train()
    averaged.load_state_dict(own)
    live = DiffKDDenoiser(6, 16).train()
    live.load_state_dict(own)
    with torch.no_grad():
        for name, weight in averaged.noise_predictor.named_parameters():
            weight.copy_(average[name])
        torch.testing.assert_close(averaged(student, noise)[0], refined.detach())
        assert not torch.allclose(live(student, noise)[0], refined.detach(), atol=1e-4)


def test_a_shared_denoiser_on_its_average_trains_on_every_level():
    """One denoiser for all levels runs once per level in an iteration, updating the average
    each time; the update must leave the average that an earlier level's backward needs."""
    torch.manual_seed(0)
    loss = DiffKDLoss(
        6, 16, num_levels=2, share_branch=True, kd_trains_predictor=False, kd_predictor_ema=0.9)
    preds_T = [torch.randn(2, 16, 5, 4), torch.randn(2, 16, 3, 2)]
    storage = [b.data_ptr() for b in loss.branch(0).denoiser.predictor_ema.buffers()]
    for _ in range(2):
        preds_S = [
            torch.randn(2, 6, 5, 4, requires_grad=True),
            torch.randn(2, 6, 3, 2, requires_grad=True)
        ]
        loss(preds_S, preds_T).backward()
        assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in preds_S)
    # Updated in place: a captured graph takes the buffers as static inputs.
    assert [b.data_ptr() for b in loss.branch(0).denoiser.predictor_ema.buffers()] == storage


def test_ema_takes_no_kd_gradient_and_lives_in_buffers():
    torch.manual_seed(0)
    denoiser = DiffKDDenoiser(6, 16, kd_trains_predictor=False, kd_predictor_ema=0.99).train()
    student, teacher = features()
    refined, _, _ = denoiser(student)
    grads = grads_of((refined - teacher).pow(2).mean(), student, denoiser)
    assert all(g is None for n, g in grads.items() if n.startswith('noise_predictor.'))
    assert nonzero(grads['student_feat']) and nonzero(grads['student_proj.weight'])
    assert not any(n.startswith('predictor_ema.') for n, _ in denoiser.named_parameters())
    state = denoiser.state_dict()
    assert 'predictor_ema.initialized' in state and bool(state['predictor_ema.initialized'])
    assert any(k.startswith('predictor_ema.layers__') for k in state)


# ----------------------------------------------------------------------------- start_noise='vp'
def test_vp_start_point_is_the_forward_process_at_the_first_timestep():
    torch.manual_seed(0)
    denoiser = DiffKDDenoiser(6, 16, start_noise='vp')
    assert denoiser.noise_adapter is None
    assert not any(k.startswith('noise_adapter.') for k in denoiser.state_dict())
    latent, noise = torch.randn(3, 16, 4, 4), torch.randn(3, 16, 4, 4)
    x, gate = denoiser._start_point(latent, noise)
    t0 = int(denoiser.scheduler.timesteps[0])
    assert t0 == 400
    ab = float(denoiser.scheduler.alphas_cumprod[t0])
    torch.testing.assert_close(x, ab**0.5 * latent + (1 - ab)**0.5 * noise)
    torch.testing.assert_close(gate, torch.full((3, ), ab**0.5))
    # The KD gradient reaches the student through the scaled start point, and the predictor
    # (official kd_trains_predictor=True here), as without the adapter it has nowhere else to go.
    student, teacher = features()
    refined, _, _ = denoiser.train()(student)
    grads = grads_of((refined - teacher).pow(2).mean(), student, denoiser)
    assert nonzero(grads['student_feat']) and nonzero(grads['student_proj.weight'])
    assert nonzero(grads['noise_predictor.layers.2.weight'])


def test_unknown_start_noise_is_named():
    with pytest.raises(ValueError, match="start_noise must be one of \\('adaptive', 'vp'\\)"):
        DiffKDDenoiser(6, 16, start_noise='gaussian')


# ----------------------------------------------------------------------------- loss-level terms
def loss_with(**weights):
    torch.manual_seed(0)
    return DiffKDLoss(6, 16, **weights).train()


def test_student_match_trains_the_student_and_its_projection_only():
    loss = loss_with(loss_weight=0.0, ddim_loss_weight=0.0, student_match_weight=1.0)
    student, teacher = features()
    value = loss(student, teacher)
    grads = grads_of(value, student, loss)
    assert nonzero(grads['student_feat'])
    assert nonzero(grads['branches.0.denoiser.student_proj.weight'])
    for name, grad in grads.items():
        if any(part in name for part in ('noise_predictor', 'noise_adapter', 'output_proj')):
            assert not nonzero(grad), name
    # Its value: the standardised MSE of the projected feature and the (standardised) target.
    with torch.no_grad():
        projected = loss.branch(0).denoiser.student_proj(student)
    torch.testing.assert_close(value.detach(), standardized_mse(projected, teacher))


def test_denoised_pull_leaves_the_denoiser_alone():
    for form in ('mse', 'cwd'):
        loss = loss_with(
            loss_weight=0.0, ddim_loss_weight=0.0, denoised_pull_weight=1.0, denoised_pull=form)
        student, teacher = features()
        grads = grads_of(loss(student, teacher), student, loss)
        assert nonzero(grads['student_feat']), form
        assert nonzero(grads['branches.0.denoiser.student_proj.weight']), form
        for name, grad in grads.items():
            if any(part in name for part in ('noise_predictor', 'noise_adapter', 'output_proj')):
                assert not nonzero(grad), (form, name)


def test_official_kd_term_is_unchanged_by_zero_weights():
    student, teacher = features()
    official = loss_with()(student, teacher)
    zero = loss_with(student_match_weight=0.0, denoised_pull_weight=0.0)(student, teacher)
    torch.testing.assert_close(zero, official)


def test_standardized_mse_ignores_per_channel_scale_and_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    scale = torch.tensor([2.0, 10.0, 0.5]).view(1, 3, 1, 1)
    torch.testing.assert_close(
        standardized_mse(a * scale + 7, b), standardized_mse(a, b), rtol=1e-4, atol=0)
    assert float(standardized_mse(a, a * 3 - 1)) < 1e-6


def test_channel_wise_kl_is_mmrazors_cwd():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 4, 6, 6, generator=g), torch.randn(2, 4, 6, 6, generator=g)
    cwd = MODELS.build(dict(type='ChannelWiseDivergence', tau=2.0, loss_weight=1.0))
    torch.testing.assert_close(channel_wise_kl(s, t, 2.0), cwd(s, t))
    assert float(channel_wise_kl(t, t, 1.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize('key', [
    'student_match_weight', 'denoised_pull_weight', 'loss_weight', 'ddim_loss_weight',
    'ae_loss_weight'
])
@pytest.mark.parametrize('bad', [float('nan'), -1.0, 'x', True, float('inf')])
def test_bad_weights_are_named(key, bad):
    with pytest.raises(ValueError, match=f'{key} must be a finite number >= 0'):
        DiffKDLoss(6, 16, **{key: bad})


def test_bad_pull_settings_are_named():
    with pytest.raises(ValueError, match="denoised_pull must be one of \\('mse', 'cwd'\\)"):
        DiffKDLoss(6, 16, denoised_pull='kl')
    with pytest.raises(ValueError, match='pull_tau must be a number > 0'):
        DiffKDLoss(6, 16, pull_tau=0)
