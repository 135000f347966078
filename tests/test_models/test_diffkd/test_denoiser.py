"""DiffKDDenoiser's kd_trains_predictor: who the KD term's gradient trains."""
import copy

import pytest
import torch

from diffkd_mm.models.connectors import DiffKDStudentConnector
from diffkd_mm.models.diffkd import DiffKDDenoiser
from diffkd_mm.models.losses import DiffKDLoss


def kd_and_diffusion_grads(kd_trains_predictor, with_cp=False, kernel_size=3, size=4):
    """Gradients of a KD term and of the diffusion loss, for one denoiser and fixed draws."""
    torch.manual_seed(0)
    denoiser = DiffKDDenoiser(6, 16, kernel_size=kernel_size, with_cp=with_cp).train()
    denoiser.kd_trains_predictor = kd_trains_predictor  # same weights for both settings
    g = torch.Generator().manual_seed(1)
    student = torch.randn(3, 6, size, size, generator=g, requires_grad=True)
    teacher = torch.randn(3, 16, size, size, generator=g)
    noise = torch.randn(3, 16, size, size, generator=g)
    refined, _, _ = denoiser(student, noise)
    kd = (refined - teacher).pow(2).mean()
    params = dict(denoiser.named_parameters())
    kd_grads = torch.autograd.grad(kd, [student, *params.values()], allow_unused=True)
    ddim = denoiser.diffusion_loss(teacher, torch.randn(3, 16, size, size, generator=g),
                                   torch.tensor([3, 500, 999]))
    ddim_grads = torch.autograd.grad(ddim, list(params.values()), allow_unused=True)
    names = ['student_feat', *params]
    return dict(zip(names, kd_grads)), dict(zip(params, ddim_grads)), float(kd.detach())


@pytest.mark.parametrize('with_cp,kernel_size,size', [(False, 3, 4), (True, 3, 4), (False, 1, 1)])
def test_stopped_kd_gradient_leaves_predictor_to_its_diffusion_loss(with_cp, kernel_size, size):
    official, official_ddim, official_kd = kd_and_diffusion_grads(True, with_cp, kernel_size, size)
    stopped, stopped_ddim, stopped_kd = kd_and_diffusion_grads(False, with_cp, kernel_size, size)
    assert stopped_kd == pytest.approx(official_kd, rel=1e-6)  # the same forward
    predictor = [name for name in official if name.startswith('noise_predictor.')]
    others = [name for name in official if name not in predictor]
    assert predictor and {'student_feat', 'student_proj.weight', 'output_proj.0.weight'
                          } <= set(others) and any(
                              name.startswith('noise_adapter.') for name in others)
    # The KD term trains the predictor officially, not when stopped ...
    assert sum(
        float(official[name].abs().sum()) for name in predictor if official[name] is not None) > 0
    assert all(stopped[name] is None for name in predictor)
    # ... while the student, its projection, the adapter and the output projection get the
    # official gradient, and the diffusion loss trains the predictor as before.
    for name in others:
        torch.testing.assert_close(stopped[name], official[name], rtol=1e-5, atol=1e-7)
    for name in predictor:
        if official_ddim[name] is not None:
            torch.testing.assert_close(stopped_ddim[name], official_ddim[name])


def test_stopped_predictor_still_updates_its_running_statistics():
    torch.manual_seed(0)
    denoiser = DiffKDDenoiser(6, 16, kd_trains_predictor=False).train()
    before = copy.deepcopy(denoiser.noise_predictor.layers[-1].running_mean)
    denoiser(torch.randn(2, 6, 4, 4))
    assert not torch.equal(denoiser.noise_predictor.layers[-1].running_mean, before)


def test_setting_reaches_every_face_and_is_checked():
    loss = DiffKDLoss(student_channels=6, teacher_channels=16, kd_trains_predictor=False)
    assert loss.branches[0].denoiser.kd_trains_predictor is False
    connector = DiffKDStudentConnector(
        student_channels=6, latent_channels=16, num_levels=2, kd_trains_predictor=False)
    assert [branch.kd_trains_predictor for branch in connector.denoisers] == [False, False]
    assert DiffKDLoss(
        student_channels=6, teacher_channels=16).branches[0].denoiser.kd_trains_predictor
    with pytest.raises(ValueError, match='kd_trains_predictor must be True .official. or False'):
        DiffKDLoss(student_channels=6, teacher_channels=16, kd_trains_predictor='no')
