"""The residual bottleneck that DiffKD's noise predictor and noise adapter are made of."""
import torch
from torch import nn

from .batch_norm import BatchNorm2d


class Bottleneck(nn.Module):
    """``x + BN(conv1x1(ReLU(BN(conv3x3(ReLU(BN(conv1x1(x))))))))``, no ReLU after the sum.

    Args:
        channels (int): Input and output channels ``C``.
        reduction (int): The hidden width is ``C // reduction``. Defaults to 4.

    Shapes:
        (B, C, H, W) -> (B, C, H, W)
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f'Bottleneck: channels={channels} is smaller than '
                             f'reduction={reduction}; the hidden width would be 0.')
        # Indices 0..7 follow the official DiffKD layout, so its checkpoints convert by renaming.
        self.layers = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + x
