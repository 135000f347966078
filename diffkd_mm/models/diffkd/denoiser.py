"""DiffKD's student side: project a student feature into the teacher's latent and denoise it."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from .ddim_scheduler import DDIMScheduler
from .noise_adapter import NoiseAdapter
from .noise_predictor import NoisePredictor, check_kernel_size


class DiffKDDenoiser(nn.Module):
    """Project, noise-adapt, denoise and refine a student feature; train the denoiser.

    For a student feature ``fs`` (B, Cs, H, W) and the teacher target ``z`` (B, L, H, W):

    1. ``s = conv1x1(fs)`` (Cs -> L), the student projection;
    2. ``g = adapter(s)`` and the start point ``x = g * s + (1 - g) * eps``;
    3. ``S`` deterministic DDIM steps ``x <- c_x x + c_eps eps_theta(x, t)``, gradients through all;
    4. ``refined = BN(conv1x1(x))``;
    5. ``loss_ddim = mse(eps_theta(sqrt(ab_t) z + sqrt(1 - ab_t) eps', t), eps')``, t ~ U{0..T-1}
       (:meth:`diffusion_loss`, on the detached target of :class:`DiffKDTarget`).

    This class declares and documents DiffKD's denoising settings; ``DiffKDLoss`` and
    ``DiffKDStudentConnector`` take them as they are (``**denoiser_settings``).

    Args:
        student_channels (int): ``Cs``.
        latent_channels (int): ``L``, the channels of the teacher target: the AE's latent, else
            the teacher's channels.
        kernel_size (int): 3 for spatial features, 1 for logits. Defaults to 3.
        inference_steps (int): DDIM steps ``S`` on the student feature. Defaults to 5.
        num_train_timesteps (int): Diffusion chain length ``T``. Defaults to 1000.
        schedule_steps (int, optional): DDIM schedule length, see :class:`DDIMScheduler`.
            None (default) means ``2 * S`` (official).
        output_norm (bool): BN after the output conv1x1. Defaults to True (the paper and the
            published implementation); False gives the bare conv1x1 of the official repository's
            first commit (2393a4a).
        with_cp (bool): Activation checkpointing of each noise-predictor call of the DDIM loop:
            identical gradients, less memory, one more predictor forward per step. BN running
            statistics are updated again by the recomputation (they are never used: nothing of
            DiffKD runs at inference). Defaults to False.
        kd_trains_predictor (bool): Whether the gradient of the matching (KD) loss, which flows
            back through the DDIM loop, also trains the noise predictor's weights. True (default)
            is the paper and the official code: the predictor learns from its diffusion loss and
            from the KD loss, and can absorb part of the student-teacher mismatch. False: the
            predictor's weights learn from the diffusion loss only; the KD gradient still passes
            through the predictor to the student, its projection, the noise adapter and the
            output projection, unchanged.
    """

    def __init__(self,
                 student_channels: int,
                 latent_channels: int,
                 kernel_size: int = 3,
                 inference_steps: int = 5,
                 num_train_timesteps: int = 1000,
                 schedule_steps: Optional[int] = None,
                 output_norm: bool = True,
                 with_cp: bool = False,
                 kd_trains_predictor: bool = True) -> None:
        super().__init__()
        owner = type(self).__name__
        check_kernel_size(kernel_size, owner)
        for name, value in (('student_channels', student_channels), ('latent_channels',
                                                                     latent_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{owner}: {name} must be a positive int, got {value!r}.')
        if kernel_size == 3 and latent_channels < 8:
            raise ValueError(
                f'{owner}: the latent has {latent_channels} channels (ae_channels, else '
                'teacher_channels); kernel_size=3 needs at least 8, because the noise adapter\'s '
                'bottleneck divides them by 8.')
        self.student_channels = student_channels
        self.latent_channels = latent_channels
        if not isinstance(kd_trains_predictor, bool):
            raise ValueError(f'{owner}: kd_trains_predictor must be True (official) or False, '
                             f'got {kd_trains_predictor!r}.')
        self.with_cp = with_cp
        self.kd_trains_predictor = kd_trains_predictor
        self.student_proj = nn.Conv2d(student_channels, latent_channels, 1)
        self.noise_predictor = NoisePredictor(latent_channels, kernel_size)
        self.noise_adapter = NoiseAdapter(latent_channels, kernel_size)
        self.scheduler = DDIMScheduler(
            num_train_timesteps=num_train_timesteps,
            inference_steps=inference_steps,
            schedule_steps=schedule_steps)
        self.output_proj = nn.Sequential(nn.Conv2d(latent_channels, latent_channels, 1))
        if output_norm:
            self.output_proj.append(nn.BatchNorm2d(latent_channels))

    def denoise(self, student_latent: torch.Tensor, noise: Optional[torch.Tensor] = None):
        """Steps 2-3: the noise-adapted start point, then the DDIM loop. Returns ``(x_0, g)``.

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
        predictor = self._predictor_for_kd()
        use_cp = self.with_cp and torch.is_grad_enabled()
        for k in range(self.scheduler.inference_steps):
            # One t per sample, as in the diffusion loss: one predictor signature for both.
            t = self.scheduler.timesteps[k].repeat(x.shape[0])
            if use_cp:
                eps = checkpoint(predictor, x, t, use_reentrant=False)
            else:
                eps = predictor(x, t)
            x = self.scheduler.step(eps, k, x)
        return x, gate

    def _predictor_for_kd(self):
        """The noise predictor as the DDIM loop calls it: ``(x, t) -> eps``.

        With ``kd_trains_predictor=False`` it runs on detached copies of its weights: the same
        function of ``x`` (gradients reach ``x``), but nothing reaches the weights. Its buffers
        (BN running statistics) are the module's own and are updated as usual.
        """
        if self.kd_trains_predictor or not torch.is_grad_enabled():
            return self.noise_predictor
        weights = {
            name: weight.detach()
            for name, weight in self.noise_predictor.named_parameters()
        }
        return lambda x, t: functional_call(self.noise_predictor, weights, (x, t))

    def forward(
            self,
            student_feat: torch.Tensor,
            noise: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Steps 1-4 on a student feature.

        Args:
            student_feat (Tensor): (B, Cs, H, W).
            noise (Tensor, optional): ``eps`` of the start point, (B, L, H, W); drawn when None.

        Returns:
            tuple[Tensor, Tensor, Tensor]: the refined feature (B, L, H, W), ``g`` (B,) and the
            projected feature before denoising (B, L, H, W).
        """
        projected = self.student_proj(student_feat)
        denoised, gate = self.denoise(projected, noise)
        return self.output_proj(denoised), gate, projected

    def diffusion_loss(self,
                       target: torch.Tensor,
                       noise: Optional[torch.Tensor] = None,
                       timesteps: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Step 5: the noise predictor's DDPM loss on the (detached) teacher target.

        Args:
            target (Tensor): ``z``, (B, L, H, W).
            noise (Tensor, optional): ``eps'``, (B, L, H, W); drawn when None.
            timesteps (Tensor, optional): ``t``, int64 (B,); drawn when None (after ``eps'``).

        Returns:
            Tensor: ``mse(eps_theta(x_t, t), eps')``, ().
        """
        if noise is None:
            noise = torch.randn_like(target)
        if timesteps is None:
            timesteps = torch.randint(
                0, self.scheduler.num_train_timesteps, (target.shape[0], ), device=target.device)
        noisy = self.scheduler.add_noise(target, noise, timesteps)
        return F.mse_loss(self.noise_predictor(noisy, timesteps), noise)
