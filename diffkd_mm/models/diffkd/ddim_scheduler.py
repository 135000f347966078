r"""Deterministic DDIM over a linear beta schedule, in the form DiffKD uses it.

Symbols follow DDPM (Ho et al., 2020) and DDIM (Song et al., 2021):

* :math:`\beta_t`: linear from ``beta_start`` to ``beta_end`` over
  :math:`t = 0 \dots T-1`.
* :math:`\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)`, ``alphas_cumprod``.
* Forward process (training the noise predictor):
  :math:`x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon`.
* DDIM step with :math:`\eta = 0` (DDIM eq. 12), from :math:`t` to its predecessor
  :math:`t'` in the sampling sub-sequence, given :math:`\hat\epsilon = \epsilon_\theta(x_t, t)`:

  .. math::
      \hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon}{\sqrt{\bar\alpha_t}}, \qquad
      x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t'}}\,\hat\epsilon,

  with :math:`\bar\alpha_{t'} = 1` after the last step (``set_alpha_to_one``). Substituting
  :math:`\hat x_0`, each step is one fused affine update
  :math:`x_{t'} = c_x x_t + c_\epsilon \hat\epsilon` with

  .. math::
      c_x = \sqrt{\bar\alpha_{t'} / \bar\alpha_t}, \qquad
      c_\epsilon = \sqrt{1-\bar\alpha_{t'}} - \sqrt{\bar\alpha_{t'}(1-\bar\alpha_t)/\bar\alpha_t}.

DiffKD's sampling sub-sequence: the official code calls ``set_timesteps(2 * S)`` for ``S``
inference steps ("leading" spacing, ratio :math:`r = T // 2S`) and runs only the second half,
so the student feature enters at a mid-level noise: :math:`t = (S-1) r, \dots, r, 0`
(400, 300, 200, 100, 0 for S = 5, T = 1000).

Every constant lives in a buffer computed once at construction: the loop does no host-device
synchronisation, no numpy, and follows the module across devices. The buffers are not
persistent: they derive from the arguments, so checkpoints do not carry them.
"""
from typing import Optional

import torch
from torch import nn

from .checks import is_positive_int


class DDIMScheduler(nn.Module):
    """Linear-beta DDPM noise schedule with a fixed deterministic DDIM sampling sequence.

    Args:
        num_train_timesteps (int): :math:`T`, the length of the training chain. Defaults to 1000.
        beta_start (float): :math:`\\beta_0`. Defaults to 1e-4.
        beta_end (float): :math:`\\beta_{T-1}`. Defaults to 0.02.
        inference_steps (int): ``S``, the DDIM steps applied to the student feature. Defaults to 5.
        schedule_steps (int, optional): Length of the DDIM schedule whose last ``S`` steps are run.
            Defaults to None: ``2 * S``, as in the official DiffKD code. ``schedule_steps = S``
            denoises from the top of the chain instead.

    Buffers:
        alphas_cumprod (T,), sqrt_alphas_cumprod (T,),
        sqrt_one_minus_alphas_cumprod (T,): float32 schedule constants.
        timesteps (S,): int64, the sampled :math:`t`, in the order they are visited.
        step_coefs (S, 2): float32 :math:`(c_x, c_\\epsilon)` of each step.
        noising_coefs (T, 2): float32 :math:`(\\sqrt{\\bar\\alpha_t}, \\sqrt{1-\\bar\\alpha_t})`,
            gathered by the forward process with one index.
    """

    def __init__(self,
                 num_train_timesteps: int = 1000,
                 beta_start: float = 1e-4,
                 beta_end: float = 0.02,
                 inference_steps: int = 5,
                 schedule_steps: Optional[int] = None) -> None:
        super().__init__()
        if not is_positive_int(num_train_timesteps) or num_train_timesteps < 2:
            raise ValueError('DDIMScheduler: num_train_timesteps must be an int >= 2, '
                             f'got {num_train_timesteps!r}.')
        if schedule_steps is None:
            schedule_steps = 2 * inference_steps if is_positive_int(inference_steps) else None
        if (not is_positive_int(inference_steps) or not is_positive_int(schedule_steps)
                or not 1 <= inference_steps <= schedule_steps <= num_train_timesteps):
            raise ValueError(
                'DDIMScheduler: need 1 <= inference_steps <= schedule_steps <= '
                f'num_train_timesteps, got inference_steps={inference_steps!r}, '
                f'schedule_steps={schedule_steps!r}, num_train_timesteps={num_train_timesteps!r}.')
        if not 0.0 < beta_start < beta_end < 1.0:
            raise ValueError('DDIMScheduler: need 0 < beta_start < beta_end < 1, '
                             f'got beta_start={beta_start}, beta_end={beta_end}.')
        self.num_train_timesteps = num_train_timesteps
        self.inference_steps = inference_steps
        self.schedule_steps = schedule_steps

        # float32 linspace and cumprod, as diffusers and the official code compute them, so that
        # alpha_bar agrees bit for bit; the derived coefficients are then formed in float64.
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        ab = alphas_cumprod.double()
        self.register_buffer('alphas_cumprod', alphas_cumprod, persistent=False)
        self.register_buffer('sqrt_alphas_cumprod', ab.sqrt().float(), persistent=False)
        self.register_buffer(
            'sqrt_one_minus_alphas_cumprod', (1 - ab).sqrt().float(), persistent=False)

        # "leading" spacing: t_k = k * r, r = T // schedule_steps; keep the last S of them.
        ratio = num_train_timesteps // schedule_steps
        timesteps = torch.arange(inference_steps - 1, -1, -1, dtype=torch.int64) * ratio
        ab_t = ab[timesteps]
        prev = timesteps - ratio
        ab_prev = torch.where(prev >= 0, ab[prev.clamp(min=0)], torch.ones_like(ab_t))
        c_x = (ab_prev / ab_t).sqrt()
        c_eps = (1 - ab_prev).sqrt() - (ab_prev * (1 - ab_t) / ab_t).sqrt()
        self.register_buffer('timesteps', timesteps, persistent=False)
        self.register_buffer(
            'step_coefs', torch.stack([c_x, c_eps], dim=1).float(), persistent=False)
        # The same coefficients as Python numbers (float32 values): a step multiplies by them
        # without indexing a buffer, and a scalar factor lets the add fold one of them in.
        self._step_factors = [tuple(row) for row in self.step_coefs.tolist()]
        # (sqrt(ab_t), sqrt(1 - ab_t)) side by side: the forward process indexes them once.
        self.register_buffer(
            'noising_coefs',
            torch.stack([self.sqrt_alphas_cumprod, self.sqrt_one_minus_alphas_cumprod], dim=1),
            persistent=False)
        #: ``(sqrt(ab_t0), sqrt(1 - ab_t0))`` at the loop's first timestep as Python numbers
        #: (float32 values), for a variance-preserving start point: no buffer indexed by a
        #: buffer, which would read the index back to the host (and break a captured graph).
        self.start_factors = tuple(self.noising_coefs[int(timesteps[0])].tolist())

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """Forward process
        :math:`x_t = \\sqrt{\\bar\\alpha_t} x_0 + \\sqrt{1-\\bar\\alpha_t}\\epsilon`.

        Args:
            x0 (Tensor): Clean sample, (B, C, H, W).
            noise (Tensor): :math:`\\epsilon`, same shape as ``x0``.
            timesteps (Tensor): :math:`t` per sample, int64 (B,).

        Returns:
            Tensor: :math:`x_t`, (B, C, H, W), in the dtype of ``x0``.
        """
        # One gather of both coefficients, (B, 2, 1, ...): views of it broadcast over the sample.
        coefs = self.noising_coefs[timesteps].to(x0.dtype)
        a, s = coefs.view(coefs.shape + (1, ) * (x0.dim() - 1)).unbind(1)
        return torch.addcmul(a * x0, s, noise)

    def step(self, noise_pred: torch.Tensor, step_index: int, sample: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step
        :math:`x_t \\to x_{t'} = c_x x_t + c_\\epsilon \\hat\\epsilon`.

        Args:
            noise_pred (Tensor): :math:`\\hat\\epsilon = \\epsilon_\\theta(x_t, t)`, (B, C, H, W).
            step_index (int): Position ``k`` in :attr:`timesteps` (0 is the noisiest).
            sample (Tensor): :math:`x_t`, (B, C, H, W).

        Returns:
            Tensor: :math:`x_{t'}`, (B, C, H, W).
        """
        c_x, c_eps = self._step_factors[step_index]
        # Python-number factors take part in type promotion as scalars, so the result keeps the
        # sample's dtype under fp16/bf16 autocast; two kernels: c_x * x_t, then + c_eps * eps.
        return torch.add(sample * c_x, noise_pred, alpha=c_eps)

    def extra_repr(self) -> str:
        return (f'num_train_timesteps={self.num_train_timesteps}, '
                f'inference_steps={self.inference_steps}, schedule_steps={self.schedule_steps}, '
                f'timesteps={self.timesteps.tolist()}')
