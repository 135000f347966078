"""DiffKD for one (student feature, teacher feature) pair: the student and the teacher side."""
from typing import NamedTuple, Optional

import torch
from torch import nn

from .denoiser import DiffKDDenoiser
from .legacy_keys import register_legacy_keys
from .settings import split_settings
from .target import DiffKDTarget

#: Parameter names before the branch was composed of its two sides.
LEGACY_BRANCH_KEYS = (
    (r'^(student_proj|noise_predictor|noise_adapter|output_proj)\.', r'denoiser.\1.'),
    (r'^autoencoder\.', 'target.autoencoder.'),
)


class DiffKDOutput(NamedTuple):
    """What one DiffKD branch produces for a feature pair.

    Attributes:
        refined (Tensor): Denoised, projected student feature, (B, L, H, W).
        target (Tensor): Teacher target: the detached AE latent, or the teacher feature,
            (B, L, H, W).
        loss_ddim (Tensor): Noise-prediction loss of :math:`\\epsilon_\\theta` on the target, ().
        loss_ae (Tensor, optional): AE reconstruction loss, (); None without AE.
        gate (Tensor): Noise-adapter weight ``g`` of the student feature per sample, (B,).
        student (Tensor): Projected student feature before denoising, (B, L, H, W) (for
            pictures and diagnostics; the losses do not use it).
    """
    refined: torch.Tensor
    target: torch.Tensor
    loss_ddim: torch.Tensor
    loss_ae: Optional[torch.Tensor]
    gate: torch.Tensor
    student: torch.Tensor


class DiffKDBranch(nn.Module):
    """Both sides of DiffKD on one feature pair: :class:`DiffKDTarget` then :class:`DiffKDDenoiser`.

    The target side gives ``z`` (and ``loss_ae``), the student side the refined student feature
    and the diffusion loss on ``z``. Random draws happen in the official order (``eps`` of the
    start point, then ``eps'`` and ``t`` of the diffusion loss), so under the same seed this
    module and the official ``DiffKD`` see the same noise. Weights saved before the branch was
    split into its two sides (``student_proj.*``, ``autoencoder.*``, ...) still load.

    Args:
        student_channels (int): ``Cs``.
        teacher_channels (int): ``Ct``.
        **settings: The teacher side's (``ae_channels``, ``target_norm``: see
            :class:`DiffKDTarget`) and the student side's (``kernel_size``, ``inference_steps``,
            ``num_train_timesteps``, ``schedule_steps``, ``output_norm``, ``with_cp``,
            ``kd_trains_predictor``, ``kd_predictor_ema``, ``start_noise``: see
            :class:`DiffKDDenoiser`).
    """

    def __init__(self, student_channels: int, teacher_channels: int, **settings) -> None:
        super().__init__()
        target_settings, denoiser_settings = split_settings(type(self).__name__, settings)
        self.target = DiffKDTarget(teacher_channels, **target_settings)
        self.denoiser = DiffKDDenoiser(student_channels, self.target.latent_channels,
                                       **denoiser_settings)
        register_legacy_keys(self, LEGACY_BRANCH_KEYS)

    def forward(self,
                student_feat: torch.Tensor,
                teacher_feat: torch.Tensor,
                noise: Optional[torch.Tensor] = None,
                diffusion_noise: Optional[torch.Tensor] = None,
                timesteps: Optional[torch.Tensor] = None) -> DiffKDOutput:
        """Run DiffKD on one feature pair.

        Args:
            student_feat (Tensor): (B, Cs, H, W).
            teacher_feat (Tensor): (B, Ct, H, W); gradients never flow into it.
            noise (Tensor, optional): ``eps`` of the start point, (B, L, H, W).
            diffusion_noise (Tensor, optional): ``eps'`` of the diffusion loss, (B, L, H, W).
            timesteps (Tensor, optional): ``t`` of the diffusion loss, int64 (B,).
                The three optional inputs make the forward deterministic for tests.

        Returns:
            DiffKDOutput: refined student feature, target, loss_ddim, loss_ae, gate and the
            projected student feature.
        """
        refined, gate, projected = self.denoiser(student_feat, noise)
        target, loss_ae = self.target(teacher_feat)
        loss_ddim = self.denoiser.diffusion_loss(target, diffusion_noise, timesteps)
        return DiffKDOutput(refined, target, loss_ddim, loss_ae, gate, projected)
