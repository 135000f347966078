"""The linear autoencoder that compresses the teacher feature into DiffKD's latent space."""
from typing import Tuple

import torch
from torch import nn

from .batch_norm import BatchNorm2d


class LinearAutoEncoder(nn.Module):
    """``z = BN(conv1x1(x))`` (C -> L), ``rec = conv1x1(z)`` (L -> C, with bias, no BN).

    Trained only by its reconstruction loss ``mse(rec, x)``; callers detach ``z`` before using it
    as the distillation target, so the KD and diffusion losses never shape the latent space.

    Args:
        channels (int): Teacher feature channels ``C``.
        latent_channels (int): Latent channels ``L``.

    Shapes:
        (B, C, H, W) -> z: (B, L, H, W), rec: (B, C, H, W)
    """

    def __init__(self, channels: int, latent_channels: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, latent_channels, 1), BatchNorm2d(latent_channels))
        self.decoder = nn.Sequential(nn.Conv2d(latent_channels, channels, 1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        latent = self.encoder(x)
        return latent, self.decoder(latent)
