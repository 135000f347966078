"""Terms that train the student's projected feature directly, next to DiffKD's denoised match.

DiffKD matches only the *denoised* student feature with the teacher's target; the denoiser
between them (noise adapter, noise predictor, output projection) is trained by that match too and
can absorb the mismatch the student should receive. These terms put signal on the projected
student feature ``s`` itself (see docs/method.md, *Where the KD signal goes*):

* ``student_match``: ``s`` against the target, both standardised per channel (as PKD matches);
* ``denoised_pull``: ``s`` against its own denoised feature, stop-gradient, so that the student
  carries the correction the denoiser found; MSE on standardised maps or, as CWD does, a
  channel-wise KL over positions.
"""
import torch
import torch.nn.functional as F

from .target import standardize_channels

#: ``denoised_pull``: how ``s`` is pulled towards its denoised feature.
PULL_LOSSES = ('mse', 'cwd')


def standardized_mse(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mse(std(student), std(target))``, each channel standardised over (B, H, W).

    Args:
        student (Tensor): (B, L, H, W).
        target (Tensor): (B, L, H, W); gradients flow wherever it has them (callers detach).

    Returns:
        Tensor: (), scale-free: the same for any per-channel scale and shift of either side.
    """
    return F.mse_loss(standardize_channels(student.float()), standardize_channels(target.float()))


def channel_wise_kl(student: torch.Tensor, target: torch.Tensor, tau: float) -> torch.Tensor:
    """CWD's channel-wise distillation term (Shu et al., ICCV 2021).

    Each channel of each sample becomes a distribution over its positions,
    ``p = softmax(x / tau)`` over (H, W); the term is
    ``tau^2 * sum KL(p_target || p_student) / (B * L)``.

    Args:
        student (Tensor): (B, L, H, W).
        target (Tensor): (B, L, H, W).
        tau (float): Temperature.

    Returns:
        Tensor: ().
    """
    b, c = student.shape[:2]
    log_p_s = F.log_softmax(student.float().flatten(2) / tau, dim=2)
    log_p_t = F.log_softmax(target.float().flatten(2) / tau, dim=2)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
    return kl * tau**2 / (b * c)
