import pytest
import torch
from official_reference import OfficialLayoutDiffKD

from diffkd_mm.models.diffkd import DiffKDBranch, convert_official_state_dict


def make_inputs(cs=8, ct=16, latent=16, size=5, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    fs = torch.randn(batch, cs, size, size, generator=g)
    ft = torch.randn(batch, ct, size, size, generator=g)
    noise = torch.randn(batch, latent, size, size, generator=g)
    ddim_noise = torch.randn(batch, latent, size, size, generator=g)
    t = torch.randint(0, 1000, (batch, ), generator=g)
    return fs, ft, noise, ddim_noise, t


@pytest.mark.parametrize(
    'kernel_size,ae,proj_bn,size',
    [
        (3, 8, True, 5),  # features with AE (the ImageNet layer4 setting, scaled down)
        (3, None, True, 4),
        (1, None, True, 1),  # logits as (B, C, 1, 1)
        (3, None, False, 3),  # first official release: bare conv1x1 output projection
    ])
def test_parity_with_restated_official_math(kernel_size, ae, proj_bn, size):
    torch.manual_seed(1)
    ref = OfficialLayoutDiffKD(8, 16, kernel_size, ae, proj_bn).train()
    ours = DiffKDBranch(
        8, 16, kernel_size=kernel_size, ae_channels=ae, output_norm=proj_bn,
        target_norm=None).train()
    ours.load_state_dict(convert_official_state_dict(ref.state_dict()), strict=True)
    fs, ft, noise, ddim_noise, t = make_inputs(latent=ae or 16, size=size)
    refined, ddim_loss, target, rec_loss, gate = ref(fs, ft, noise, ddim_noise, t)
    out = ours(fs, ft, noise=noise, diffusion_noise=ddim_noise, timesteps=t)
    torch.testing.assert_close(out.refined, refined, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.target, target, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss_ddim, ddim_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.gate, gate, rtol=1e-5, atol=1e-5)
    if ae:
        torch.testing.assert_close(out.loss_ae, rec_loss, rtol=1e-5, atol=1e-5)
    else:
        assert out.loss_ae is None


def test_same_seed_same_draws_as_official_order():
    """Without explicit noise, both draw eps, then eps', then t: the same seed gives the same
    result."""
    torch.manual_seed(2)
    ref = OfficialLayoutDiffKD(8, 16, 3, 8)
    ours = DiffKDBranch(8, 16, ae_channels=8, target_norm=None)
    ours.load_state_dict(convert_official_state_dict(ref.state_dict()))
    fs, ft, *_ = make_inputs(latent=8)
    torch.manual_seed(3)
    out = ours(fs, ft)
    torch.manual_seed(3)
    noise = torch.randn(3, 8, 5, 5)
    ddim_noise = torch.randn(3, 8, 5, 5)
    t = torch.randint(0, 1000, (3, ))
    refined, ddim_loss, *_ = ref(fs, ft, noise, ddim_noise, t)
    torch.testing.assert_close(out.refined, refined, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss_ddim, ddim_loss, rtol=1e-5, atol=1e-5)
    torch.manual_seed(3)
    again = ours(fs, ft)
    assert torch.equal(again.refined, out.refined) and torch.equal(again.loss_ddim, out.loss_ddim)


def _grads(module):
    return {n: p.grad for n, p in module.named_parameters()}


def _nonzero(grads, prefix):
    selected = [g for n, g in grads.items() if n.startswith(prefix)]
    assert selected, prefix
    return any(g is not None and g.abs().sum() > 0 for g in selected)


def test_gradient_routing():
    torch.manual_seed(0)
    branch = DiffKDBranch(8, 16, ae_channels=8)
    fs, ft, *_ = make_inputs()
    fs.requires_grad_(True)
    ft.requires_grad_(True)  # even a teacher feature that could take gradients never gets any
    out = branch(fs, ft)
    kd = torch.nn.functional.mse_loss(out.refined, out.target)
    assert not out.target.requires_grad  # the AE latent is detached

    kd.backward(retain_graph=True)
    g = _grads(branch)
    assert fs.grad is not None and fs.grad.abs().sum() > 0
    for part in ('student_proj', 'noise_adapter', 'noise_predictor', 'output_proj'):
        assert _nonzero(g, f'denoiser.{part}'), part
    assert not _nonzero(g, 'target.autoencoder')
    branch.zero_grad()

    out.loss_ddim.backward(retain_graph=True)
    g = _grads(branch)
    assert _nonzero(g, 'denoiser.noise_predictor')
    for part in ('denoiser.student_proj', 'denoiser.noise_adapter', 'denoiser.output_proj',
                 'target.autoencoder'):
        assert not _nonzero(g, part), part
    branch.zero_grad()

    out.loss_ae.backward()
    g = _grads(branch)
    assert _nonzero(g, 'target.autoencoder.encoder') and _nonzero(g, 'target.autoencoder.decoder')
    assert not _nonzero(g, 'denoiser.noise_predictor')
    assert ft.grad is None


def test_denoising_loop_runs_inference_steps_plus_one_predictor_calls():
    branch = DiffKDBranch(4, 8, inference_steps=3)
    calls = []
    branch.denoiser.noise_predictor.register_forward_hook(lambda *a: calls.append(1))
    branch(torch.randn(2, 4, 3, 3), torch.randn(2, 8, 3, 3))
    assert len(calls) == 3 + 1  # 3 DDIM steps + the diffusion loss


def test_activation_checkpointing_gives_identical_gradients():
    torch.manual_seed(0)
    plain = DiffKDBranch(8, 16, ae_channels=8)
    cp = DiffKDBranch(8, 16, ae_channels=8, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    fs, ft, noise, ddim_noise, t = make_inputs(latent=8)
    for m in (plain, cp):
        out = m(fs, ft, noise=noise, diffusion_noise=ddim_noise, timesteps=t)
        (torch.nn.functional.mse_loss(out.refined, out.target) + out.loss_ddim).backward()
    for (n, a), b in zip(plain.named_parameters(), cp.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=n)


def test_bf16_autocast_on_cpu():
    branch = DiffKDBranch(8, 16, ae_channels=8)
    fs, ft, *_ = make_inputs()
    fs.requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = branch(fs, ft)
        loss = torch.nn.functional.mse_loss(out.refined.float(), out.target.float()) + \
            out.loss_ddim + out.loss_ae
    loss.backward()
    assert torch.isfinite(loss)
    # The convolutions ran in bf16 and the DDIM arithmetic kept that dtype (no float32 upcast).
    assert out.refined.dtype == torch.bfloat16 and out.student.dtype == torch.bfloat16
    assert fs.grad is not None and torch.isfinite(fs.grad).all()


def test_denoising_reads_no_tensor_value_on_the_host():
    """No host-device synchronisation: the whole fwd+bwd runs on the meta device, where any
    `.item()`, `bool(tensor)` or `.tolist()` of a computed value raises."""
    branch = DiffKDBranch(8, 16, ae_channels=8).to('meta').train()
    fs = torch.randn(2, 8, 5, 5, device='meta', requires_grad=True)
    out = branch(fs, torch.randn(2, 16, 5, 5, device='meta'))
    (out.refined.square().mean() + out.loss_ddim + out.loss_ae).backward()
    assert fs.grad.shape == fs.shape


@pytest.mark.parametrize('kwargs,match', [
    (dict(kernel_size=5), 'kernel_size must be 1'),
    (dict(student_channels=0), 'student_channels'),
    (dict(ae_channels=2.5), 'ae_channels'),
    (dict(inference_steps=0), 'inference_steps'),
    (dict(teacher_channels=4), 'latent has 4 channels'),
    (dict(ae_channels=6), 'latent has 6 channels'),
])
def test_bad_arguments(kwargs, match):
    args = dict(student_channels=4, teacher_channels=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DiffKDBranch(**args)


def test_converter_rejects_a_wrong_prefix():
    with pytest.raises(KeyError, match='prefix'):
        convert_official_state_dict({'trans.weight': torch.zeros(1)}, prefix='_diff.layer4.')
