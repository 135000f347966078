"""The noise-prediction network :math:`\\epsilon_\\theta(x_t, t)` of DiffKD."""
from typing import Optional

import torch
from torch import nn

from .batch_norm import BatchNorm2d
from .bottleneck import Bottleneck

KERNEL_SIZES = (1, 3)


def check_kernel_size(kernel_size, owner: str) -> None:
    if isinstance(kernel_size, bool) or kernel_size not in KERNEL_SIZES:
        raise ValueError(f'{owner}: kernel_size must be 1 (logits, 1x1 features) or 3 '
                         f'(spatial features), got {kernel_size!r}.')


class NoisePredictor(nn.Module):
    """A light noise predictor: a learned time embedding added to the input, then a small CNN.

    ``kernel_size=3`` (spatial features): Bottleneck(C, r=4), Bottleneck(C, r=4), conv1x1, BN.
    ``kernel_size=1`` (logits as (B, C, 1, 1)): conv1x1 C->4C, BN, ReLU, conv1x1 4C->C, BN,
    conv1x1 C->4C, BN, ReLU, conv1x1 4C->C, without residual, as in the official code.

    Args:
        channels (int): Feature channels ``C`` (the teacher latent's).
        kernel_size (int): 3 or 1, see above. Defaults to 3.
        num_time_embeddings (int): Rows of the time embedding table; must exceed every
            timestep. Defaults to 1280 (official).

    Shapes:
        x: (B, C, H, W); t: int64 (B,) or a 0-dim tensor shared by the batch -> (B, C, H, W)
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int = 3,
                 num_time_embeddings: int = 1280) -> None:
        super().__init__()
        check_kernel_size(kernel_size, 'NoisePredictor')
        self.time_embedding = nn.Embedding(num_time_embeddings, channels)
        if kernel_size == 3:
            self.layers = nn.Sequential(
                Bottleneck(channels, reduction=4),
                Bottleneck(channels, reduction=4),
                nn.Conv2d(channels, channels, 1),
                BatchNorm2d(channels),
            )
        else:
            wide = channels * 4
            self.layers = nn.Sequential(
                nn.Conv2d(channels, wide, 1),
                BatchNorm2d(wide),
                nn.ReLU(inplace=True),
                nn.Conv2d(wide, channels, 1),
                BatchNorm2d(channels),
                nn.Conv2d(channels, wide, 1),
                BatchNorm2d(wide),
                nn.ReLU(inplace=True),
                nn.Conv2d(wide, channels, 1),
            )

    def forward(self,
                x: torch.Tensor,
                t: Optional[torch.Tensor] = None,
                *,
                time_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Predict the noise in ``x`` at timestep ``t``.

        Args:
            x (Tensor): (B, C, H, W).
            t (Tensor, optional): Timesteps, int64 (B,) or 0-dim.
            time_emb (Tensor, optional): The embedding of ``t``, (C, 1, 1) or (B, C, 1, 1), looked
                up beforehand (a DDIM loop looks its timesteps up once, not once per step);
                exactly one of ``t`` and ``time_emb``.
        """
        if (t is None) == (time_emb is None):
            raise ValueError('NoisePredictor: pass exactly one of t and time_emb.')
        if time_emb is None:
            # (B, C) or (C,) embedding, broadcast over the spatial dimensions.
            time_emb = self.time_embedding(t.long())[..., None, None]
        return self.layers(x + time_emb.to(x.dtype))
