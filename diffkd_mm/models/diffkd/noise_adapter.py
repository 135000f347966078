"""The adaptive noise adapter: how much of the student feature to keep before denoising."""
import torch
from torch import nn

from .batch_norm import BatchNorm2d
from .bottleneck import Bottleneck
from .noise_predictor import check_kernel_size


class NoiseAdapter(nn.Module):
    """Predicts the per-sample weight ``g`` of the student feature in the noisy start point.

    ``g = softmax(Linear(C, 2)(GAP(features(s))))[:, 0]``, where ``features`` is
    Bottleneck(C, r=8) for ``kernel_size=3`` and conv1x1 C->2C, BN, ReLU, conv1x1 2C->C, BN for
    ``kernel_size=1``. The denoising then starts from ``x = g * s + (1 - g) * eps``: a linear mix,
    not a variance-preserving one, as in the official code.

    The global average pool is applied for both kernel sizes: for the official kernel-1 use
    (logits, 1x1 maps) it is the identity, and it lets kernel 1 run on spatial maps as well.

    Args:
        channels (int): Feature channels ``C``.
        kernel_size (int): 3 or 1. Defaults to 3.

    Shapes:
        (B, C, H, W) -> g: (B,), in (0, 1)
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        check_kernel_size(kernel_size, 'NoiseAdapter')
        if kernel_size == 3:
            self.features = nn.Sequential(Bottleneck(channels, reduction=8))
        else:
            self.features = nn.Sequential(
                nn.Conv2d(channels, channels * 2, 1),
                BatchNorm2d(channels * 2),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels * 2, channels, 1),
                BatchNorm2d(channels),
            )
        self.gate = nn.Linear(channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        return self.gate(pooled).softmax(dim=1)[:, 0]
