"""DiffKD's target: the teacher feature, optionally standardised, optionally encoded by the AE."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .autoencoder import LinearAutoEncoder

#: ``None`` keeps the teacher's scale (official); ``'channel'`` standardises each channel.
TARGET_NORMS = (None, 'channel')


def check_target_norm(value, owner: str, key: str = 'target_norm') -> Optional[str]:
    """Return ``value`` if it is one of :data:`TARGET_NORMS`, else raise naming ``key``."""
    if value not in TARGET_NORMS:
        raise ValueError(f'{owner}: {key} must be one of {TARGET_NORMS}, got {value!r}.')
    return value


def standardize_channels(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Standardise each channel of a (B, C, H, W) map over batch and positions.

    ``(x - mean_c) / sqrt(var_c + eps)`` with the statistics of channel ``c`` over (B, H, W),
    as mmrazor's ``PKDLoss`` normalises features, but without parameters or running statistics:
    the target keeps its spatial and per-sample structure and loses only the teacher's scale,
    which varies by orders of magnitude between networks (an untrained ResNet-101's FPN reaches
    1e5). The DDPM schedule assumes unit-variance data, and the refined student feature leaves a
    BatchNorm with unit scale: on this scale both meet the target.
    """
    var, mean = torch.var_mean(x, dim=(0, 2, 3), keepdim=True, unbiased=False)
    return (x - mean) * torch.rsqrt(var + eps)


def encode_target(autoencoder: Optional[LinearAutoEncoder],
                  teacher_feat: torch.Tensor,
                  target_norm: Optional[str] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """DiffKD's target for a teacher feature, and the AE's reconstruction loss.

    The teacher feature is detached first: no DiffKD term trains the teacher, even with
    ``teacher_trainable=True`` (the official code relies on the teacher being frozen). With
    ``target_norm='channel'`` it is standardised before anything else, so the AE reconstructs
    (and its loss is measured on) the standardised feature.

    Args:
        autoencoder (LinearAutoEncoder, optional): None uses the (standardised) teacher feature.
        teacher_feat (Tensor): (B, C, H, W).
        target_norm (str, optional): One of :data:`TARGET_NORMS`. Defaults to None.

    Returns:
        tuple: the detached target ``z`` (B, L, H, W) and ``mse(rec, ft)`` (), or None
        without an autoencoder.
    """
    teacher_feat = teacher_feat.detach()
    if target_norm == 'channel':
        teacher_feat = standardize_channels(teacher_feat.float()).to(teacher_feat.dtype)
    if autoencoder is None:
        return teacher_feat, None
    latent, reconstruction = autoencoder(teacher_feat)
    return latent.detach(), F.mse_loss(reconstruction, teacher_feat)
