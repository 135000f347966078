"""DiffKD for one (student feature, teacher feature) pair: everything between the two records."""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .autoencoder import LinearAutoEncoder
from .ddim_scheduler import DDIMScheduler
from .noise_adapter import NoiseAdapter
from .noise_predictor import NoisePredictor, check_kernel_size
from .target import check_target_norm, encode_target


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
    """Project, denoise and refine a student feature; train the denoiser on the teacher's.

    For a student feature ``fs`` (B, Cs, H, W) and a teacher feature ``ft`` (B, Ct, H, W):

    1. ``z = stopgrad(BN(conv1x1(ft)))`` with the optional linear AE (else ``z = ft``), and
       ``loss_ae = mse(decoder(z), ft)``, where ``ft`` is first standardised per channel with
       ``target_norm='channel'``;
    2. ``s = conv1x1(fs)`` (Cs -> L), the student projection;
    3. ``g = adapter(s)`` and the start point ``x = g * s + (1 - g) * eps``;
    4. ``S`` deterministic DDIM steps ``x <- c_x x + c_eps eps_theta(x, t)``, gradients through all;
    5. ``refined = BN(conv1x1(x))``;
    6. ``loss_ddim = mse(eps_theta(sqrt(ab_t) z + sqrt(1 - ab_t) eps', t), eps')``, t ~ U{0..T-1}.

    Random draws happen in the official order (``eps``, then ``eps'``, then ``t``), so under the
    same seed this module and the official ``DiffKD`` see the same noise.

    Args:
        student_channels (int): ``Cs``.
        teacher_channels (int): ``Ct``.
        kernel_size (int): 3 for spatial features, 1 for logits. Defaults to 3.
        ae_channels (int, optional): Latent channels ``L`` of the linear AE; None (default)
            disables the AE and ``L = Ct``.
        inference_steps (int): DDIM steps ``S`` on the student feature. Defaults to 5.
        num_train_timesteps (int): ``T``. Defaults to 1000.
        schedule_steps (int, optional): See :class:`DDIMScheduler`. Defaults to ``2 * S``.
        output_norm (bool): BN after the output conv1x1. Defaults to True (the paper and the
            published implementation); False gives the bare conv1x1 of the official repository's
            first commit (2393a4a).
        with_cp (bool): Activation checkpointing of each noise-predictor call of the DDIM loop:
            identical gradients, less memory, one more predictor forward per step. BN running
            statistics are updated again by the recomputation (they are never used: nothing of
            DiffKD runs at inference). Defaults to False.
        target_norm (str, optional): ``'channel'`` standardises the teacher feature per channel
            (over batch and positions) before the AE or as the target, so every DiffKD term is
            on a unit scale whatever the teacher's; None (default) keeps the teacher's scale, as
            the official module does. See :func:`standardize_channels`.
    """

    def __init__(self,
                 student_channels: int,
                 teacher_channels: int,
                 kernel_size: int = 3,
                 ae_channels: Optional[int] = None,
                 inference_steps: int = 5,
                 num_train_timesteps: int = 1000,
                 schedule_steps: Optional[int] = None,
                 output_norm: bool = True,
                 with_cp: bool = False,
                 target_norm: Optional[str] = None) -> None:
        super().__init__()
        self.target_norm = check_target_norm(target_norm, 'DiffKDBranch')
        check_kernel_size(kernel_size, 'DiffKDBranch')
        for name, value in (('student_channels', student_channels),
                            ('teacher_channels', teacher_channels), ('ae_channels', ae_channels)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f'DiffKDBranch: {name} must be a positive int, got {value!r}.')
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.with_cp = with_cp
        latent = teacher_channels
        if ae_channels is not None:
            self.autoencoder = LinearAutoEncoder(teacher_channels, ae_channels)
            latent = ae_channels
        else:
            self.autoencoder = None
        if kernel_size == 3 and latent < 8:
            raise ValueError(
                f'DiffKDBranch: the latent has {latent} channels (ae_channels, else '
                'teacher_channels); kernel_size=3 needs at least 8, because the noise adapter\'s '
                'bottleneck divides them by 8.')
        self.student_proj = nn.Conv2d(student_channels, latent, 1)
        self.noise_predictor = NoisePredictor(latent, kernel_size)
        self.noise_adapter = NoiseAdapter(latent, kernel_size)
        self.scheduler = DDIMScheduler(
            num_train_timesteps=num_train_timesteps,
            inference_steps=inference_steps,
            schedule_steps=schedule_steps)
        self.output_proj = nn.Sequential(nn.Conv2d(latent, latent, 1))
        if output_norm:
            self.output_proj.append(nn.BatchNorm2d(latent))

    def encode_teacher(self, teacher_feat: torch.Tensor):
        """Returns ``(z, loss_ae)``: the detached target and the AE loss (None without AE)."""
        return encode_target(self.autoencoder, teacher_feat, self.target_norm)

    def denoise(self, student_latent: torch.Tensor, noise: Optional[torch.Tensor] = None):
        """Noise-adapted start point, then the DDIM loop. Returns ``(x_0, g)``.

        Args:
            student_latent (Tensor): Projected student feature ``s``, (B, L, H, W).
            noise (Tensor, optional): ``eps`` of the start point; drawn when None.

        Returns:
            tuple[Tensor, Tensor]: Denoised feature (B, L, H, W) and ``g`` (B,).
        """
        if noise is None:
            noise = torch.randn_like(student_latent)
        gate = self.noise_adapter(student_latent)
        g = gate.view(-1, *(1, ) * (student_latent.dim() - 1)).to(student_latent.dtype)
        x = g * student_latent + (1 - g) * noise
        use_cp = self.with_cp and torch.is_grad_enabled()
        for k in range(self.scheduler.inference_steps):
            # One t per sample, as in the diffusion loss: one predictor signature for both.
            t = self.scheduler.timesteps[k].repeat(x.shape[0])
            if use_cp:
                eps = checkpoint(self.noise_predictor, x, t, use_reentrant=False)
            else:
                eps = self.noise_predictor(x, t)
            x = self.scheduler.step(eps, k, x)
        return x, gate

    def refine_student(self,
                       student_feat: torch.Tensor,
                       noise: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Steps 2-5: project, noise-adapt, denoise and refine a student feature.

        Args:
            student_feat (Tensor): (B, Cs, H, W).
            noise (Tensor, optional): ``eps`` of the start point, (B, L, H, W).

        Returns:
            tuple[Tensor, Tensor]: the refined feature (B, L, H, W) and ``g`` (B,).
        """
        denoised, gate = self.denoise(self.student_proj(student_feat), noise)
        return self.output_proj(denoised), gate

    def diffusion_loss(self,
                       target: torch.Tensor,
                       noise: Optional[torch.Tensor] = None,
                       timesteps: Optional[torch.Tensor] = None) -> torch.Tensor:
        """DDPM noise-prediction loss of the noise predictor on the (detached) teacher target."""
        if noise is None:
            noise = torch.randn_like(target)
        if timesteps is None:
            timesteps = torch.randint(
                0, self.scheduler.num_train_timesteps, (target.shape[0], ), device=target.device)
        noisy = self.scheduler.add_noise(target, noise, timesteps)
        return F.mse_loss(self.noise_predictor(noisy, timesteps), noise)

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
        projected = self.student_proj(student_feat)
        denoised, gate = self.denoise(projected, noise)
        refined = self.output_proj(denoised)
        target, loss_ae = self.encode_teacher(teacher_feat)
        loss_ddim = self.diffusion_loss(target, diffusion_noise, timesteps)
        return DiffKDOutput(refined, target, loss_ddim, loss_ae, gate, projected)
