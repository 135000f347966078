"""DiffKD's student side: project a student feature into the teacher's latent and denoise it."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from .batch_norm import BatchNorm2d
from .checks import check_flag, check_positive_int
from .ddim_scheduler import DDIMScheduler
from .noise_adapter import NoiseAdapter
from .noise_predictor import NoisePredictor, check_kernel_size

#: ``start_noise``: the official learned adapter, or variance-preserving noising at ``t_0``.
START_NOISES = ('adaptive', 'vp')


class PredictorAverage(nn.Module):
    """An exponential moving average of a module's parameters, kept as buffers.

    Buffers, not parameters: the optimizer never sees them, checkpoints carry them and they
    follow the module across devices. ``initialized`` tells the first update to copy.

    Args:
        module (nn.Module): The module whose parameters are averaged (not kept).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        #: parameter name -> buffer name (buffer names cannot hold dots).
        self._buffers_of = {name: name.replace('.', '__') for name, _ in module.named_parameters()}
        for name, weight in module.named_parameters():
            self.register_buffer(self._buffers_of[name], weight.detach().clone())
        self.register_buffer('initialized', torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, module: nn.Module, momentum: float) -> Dict[str, torch.Tensor]:
        """``avg <- momentum * avg + (1 - momentum) * weights``; the first call copies.

        One fused update for all weights (on a GPU, one launch instead of one per tensor), and
        nothing read back to the host: the new weights' share is ``1 - momentum`` once
        ``initialized`` is set and 1 (a copy) before, chosen on the device.

        Returns:
            dict[str, Tensor]: the new averages as new tensors, for this call's loop; they are
            also copied into the buffers. The buffers keep their storage (a captured graph's
            static inputs, updated in place), and what autograd saves from this call's loop is
            not changed by the next update: a shared denoiser runs once per level.
        """
        params = list(module.named_parameters())
        averages = [getattr(self, self._buffers_of[name]) for name, _ in params]
        weights = [weight.detach() for _, weight in params]
        share = torch.where(self.initialized, 1.0 - momentum, 1.0).to(averages[0].dtype)
        new = torch._foreach_lerp(averages, weights, [share] * len(averages))
        torch._foreach_copy_(averages, new)
        self.initialized.fill_(True)
        return {name: average for (name, _), average in zip(params, new)}

    def weights(self) -> Dict[str, torch.Tensor]:
        """``{parameter name: average}``, for ``torch.func.functional_call``."""
        return {name: getattr(self, buffer) for name, buffer in self._buffers_of.items()}


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
        kd_predictor_ema (float, optional): Momentum ``m`` of an exponential moving average of
            the noise predictor's weights that the DDIM loop uses instead of the weights
            themselves: ``ema <- m * ema + (1 - m) * weights`` once per training forward (the
            first copies the weights, so a warm-up's weights are where it starts; a denoiser
            shared by the levels, ``share_branch=True``, runs once per level). The diffusion
            loss still trains the live weights. Needs ``kd_trains_predictor=False``: the KD term
            can then reshape neither the weights nor, through them, their average. None (default,
            official): the loop uses the live weights.
        start_noise (str): How the DDIM loop's start point mixes the student feature with noise.
            ``'adaptive'`` (default, official): the learned noise adapter's
            ``x = g * s + (1 - g) * eps``. ``'vp'``: no adapter; the variance-preserving forward
            process at the loop's first timestep ``t_0``,
            ``x = sqrt(ab_t0) * s + sqrt(1 - ab_t0) * eps`` (``t_0 = 400`` by default), so the
            noise level the loop expects is the one it gets and the KD term cannot learn to drop
            the noise; ``g`` is then the constant ``sqrt(ab_t0)``.
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
                 kd_trains_predictor: bool = True,
                 kd_predictor_ema: Optional[float] = None,
                 start_noise: str = 'adaptive') -> None:
        super().__init__()
        owner = type(self).__name__
        check_kernel_size(kernel_size, owner)
        check_positive_int(student_channels, 'student_channels', owner)
        check_positive_int(latent_channels, 'latent_channels', owner)
        check_flag(output_norm, 'output_norm', owner)
        check_flag(with_cp, 'with_cp', owner)
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
        if kd_predictor_ema is not None:
            if (isinstance(kd_predictor_ema, bool) or not isinstance(kd_predictor_ema, float)
                    or not 0.0 < kd_predictor_ema < 1.0):
                raise ValueError(f'{owner}: kd_predictor_ema must be a float in (0, 1) (the '
                                 f'momentum, e.g. 0.999) or None, got {kd_predictor_ema!r}.')
            if kd_trains_predictor:
                raise ValueError(f'{owner}: kd_predictor_ema={kd_predictor_ema} needs '
                                 'kd_trains_predictor=False: the DDIM loop then runs on the '
                                 'average, which the KD gradient cannot reach.')
        if start_noise not in START_NOISES:
            raise ValueError(f'{owner}: start_noise must be one of {START_NOISES}, '
                             f'got {start_noise!r}.')
        self.with_cp = with_cp
        self.kd_trains_predictor = kd_trains_predictor
        self.kd_predictor_ema = kd_predictor_ema
        self.start_noise = start_noise
        self.student_proj = nn.Conv2d(student_channels, latent_channels, 1)
        self.noise_predictor = NoisePredictor(latent_channels, kernel_size)
        # With 'vp' noising no adapter is built: a module outside every loss would leave DDP
        # with parameters that never receive a gradient.
        self.noise_adapter = (
            NoiseAdapter(latent_channels, kernel_size) if start_noise == 'adaptive' else None)
        self.predictor_ema = (
            PredictorAverage(self.noise_predictor) if kd_predictor_ema is not None else None)
        self.scheduler = DDIMScheduler(
            num_train_timesteps=num_train_timesteps,
            inference_steps=inference_steps,
            schedule_steps=schedule_steps)
        self.output_proj = nn.Sequential(nn.Conv2d(latent_channels, latent_channels, 1))
        if output_norm:
            self.output_proj.append(BatchNorm2d(latent_channels))

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
        x, gate = self._start_point(student_latent, noise)
        predictor, embedding_table = self._predictor_for_kd()
        # Every step's time embedding in one lookup, (S, L, 1, 1), broadcast over the batch;
        # unbind, whose backward is one stack, not one scatter per step.
        time_embs = F.embedding(self.scheduler.timesteps, embedding_table)
        time_embs = time_embs[:, :, None, None].unbind(0)
        use_cp = self.with_cp and torch.is_grad_enabled()
        for k in range(self.scheduler.inference_steps):
            if use_cp:
                eps = checkpoint(predictor, x, time_embs[k], use_reentrant=False)
            else:
                eps = predictor(x, time_embs[k])
            x = self.scheduler.step(eps, k, x)
        return x, gate

    def _start_point(self, student_latent: torch.Tensor,
                     noise: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Step 2: the loop's start point and ``g`` (B,), the weight of the student feature."""
        if self.noise_adapter is None:  # 'vp': the forward process at the loop's first t
            signal, spread = self.scheduler.start_factors
            gate = student_latent.new_full((student_latent.shape[0], ), signal, dtype=torch.float32)
            return signal * student_latent + spread * noise, gate
        gate = self.noise_adapter(student_latent)
        g = gate.view(-1, *(1, ) * (student_latent.dim() - 1)).to(student_latent.dtype)
        # g * s + (1 - g) * eps as one lerp, eps + g * (s - eps): one kernel instead of four
        # (mul, rsub, mul, add), and a shorter backward; equal up to rounding.
        return torch.lerp(noise, student_latent, g), gate

    def _predictor_for_kd(self):
        """The noise predictor as the DDIM loop calls it, ``(x, time_emb) -> eps``, and the
        time-embedding table of the weights it runs on.

        With ``kd_trains_predictor=False`` it runs on detached copies of its weights, or with
        ``kd_predictor_ema`` on their moving average (updated here, once per training forward):
        the same kind of function of ``x`` (gradients reach ``x``), but nothing reaches the
        weights. Its buffers (BN running statistics) are the module's own and are updated as
        usual.
        """
        if self.kd_trains_predictor or not torch.is_grad_enabled():
            return ((lambda x, emb: self.noise_predictor(x, time_emb=emb)),
                    self.noise_predictor.time_embedding.weight)
        if self.predictor_ema is not None:
            if self.training:
                weights = self.predictor_ema.update(self.noise_predictor, self.kd_predictor_ema)
            else:
                weights = self.predictor_ema.weights()
        else:
            weights = {
                name: weight.detach()
                for name, weight in self.noise_predictor.named_parameters()
            }

        def predictor(x, emb):
            return functional_call(self.noise_predictor, weights, (x, ), dict(time_emb=emb))

        return predictor, weights['time_embedding.weight']

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
