"""DiffKD's teacher side: the target, the teacher feature optionally standardised and encoded."""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import LinearAutoEncoder
from .checks import check_positive_int

#: ``'auto'`` standardises maps and keeps vectors (logits) on their scale; ``'channel'`` always
#: standardises each channel; ``None`` keeps the teacher's scale (official).
TARGET_NORMS = ('auto', 'channel', None)


def check_target_norm(value, owner: str, key: str = 'target_norm') -> Optional[str]:
    """Return ``value`` if it is one of :data:`TARGET_NORMS`, else raise naming ``key``."""
    if value not in TARGET_NORMS:
        raise ValueError(f'{owner}: {key} must be one of {TARGET_NORMS}, got {value!r}.')
    return value


def resolve_target_norm(target_norm: Optional[str], teacher_map: torch.Tensor) -> Optional[str]:
    """The normalisation applied to one teacher map: ``'auto'`` resolved, the rest as given.

    ``'auto'`` is ``'channel'`` for a map with more than one position (features, token grids)
    and None for one without extent: logits, seen as (B, C, 1, 1), whose scale the KL
    temperature sets, and which standardising over the batch alone would distort.
    """
    if target_norm == 'auto':
        return 'channel' if math.prod(teacher_map.shape[2:]) > 1 else None
    return target_norm


def standardize_channels(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Standardise each channel of a (B, C, H, W) map over batch and positions.

    ``(x - mean_c) / sqrt(var_c + eps)`` with the statistics of channel ``c`` over (B, H, W),
    as mmrazor's ``PKDLoss`` normalises features, but without parameters or running statistics:
    the target keeps its spatial and per-sample structure and loses only the teacher's scale,
    which varies by orders of magnitude between networks (an untrained ResNet-101's FPN reaches
    1e5). The DDPM schedule assumes unit-variance data, and the refined student feature leaves a
    BatchNorm with unit scale: on this scale both meet the target.
    """
    if x.numel() == x.shape[1]:  # one value per channel: it is its own mean
        return x - x
    # Batch normalisation without affine parameters or running statistics computes exactly
    # this, in one kernel (forward and backward) instead of five.
    return F.batch_norm(x, None, None, training=True, eps=eps)


class DiffKDTarget(nn.Module):
    """The detached target a student feature is denoised towards, and the AE's loss.

    For a teacher feature ``ft`` (B, Ct, H, W):

    1. ``ft`` is detached: no DiffKD term trains the teacher, even with
       ``teacher_trainable=True`` (the official code relies on the teacher being frozen);
    2. with ``target_norm``, each channel is standardised over batch and positions
       (:func:`standardize_channels`), so the AE reconstructs the standardised feature;
    3. with ``ae_channels``: ``z = stopgrad(BN(conv1x1(ft)))`` and
       ``loss_ae = mse(decoder(z), ft)``; without: ``z = ft``.

    This class declares and documents DiffKD's target settings; ``DiffKDLoss`` and
    ``DiffKDTeacherConnector`` take them as they are.

    Args:
        teacher_channels (int): ``Ct``.
        ae_channels (int, optional): Latent channels ``L`` of the linear AE; None (default)
            uses no AE and ``L = Ct``.
        target_norm (str, optional): ``'auto'`` (default) standardises every teacher map with
            more than one position and keeps logits on their scale (:func:`resolve_target_norm`);
            ``'channel'`` standardises always; None keeps the teacher's scale, as the official
            code does. Standardising is our deviation: see docs/method.md.
    """

    def __init__(self,
                 teacher_channels: int,
                 ae_channels: Optional[int] = None,
                 target_norm: Optional[str] = 'auto') -> None:
        super().__init__()
        owner = type(self).__name__
        self.target_norm = check_target_norm(target_norm, owner)
        check_positive_int(teacher_channels, 'teacher_channels', owner)
        if ae_channels is not None:
            check_positive_int(ae_channels, 'ae_channels', owner)
        self.teacher_channels = teacher_channels
        self.autoencoder = None if ae_channels is None else LinearAutoEncoder(
            teacher_channels, ae_channels)
        #: ``L``: the channels of the target, and of the student's latent.
        self.latent_channels = teacher_channels if ae_channels is None else ae_channels

    def _normalized(self, teacher_feat: torch.Tensor) -> torch.Tensor:
        teacher_feat = teacher_feat.detach()
        if resolve_target_norm(self.target_norm, teacher_feat) == 'channel':
            teacher_feat = standardize_channels(teacher_feat.float()).to(teacher_feat.dtype)
        return teacher_feat

    def forward(self, teacher_feat: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Steps 1-3.

        Args:
            teacher_feat (Tensor): (B, Ct, H, W).

        Returns:
            tuple: the detached target ``z`` (B, L, H, W) and ``mse(rec, ft)`` (), or None
            without an AE.
        """
        teacher_feat = self._normalized(teacher_feat)
        if self.autoencoder is None:
            return teacher_feat, None
        latent, reconstruction = self.autoencoder(teacher_feat)
        return latent.detach(), F.mse_loss(reconstruction, teacher_feat)
