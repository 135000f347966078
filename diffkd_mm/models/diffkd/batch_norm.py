"""The BatchNorm of DiffKD's modules: torch's, without a counter that nothing reads."""
import torch
import torch.nn.functional as F
from torch import nn


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that does not increment ``num_batches_tracked`` while training.

    The counter only sets the running-average factor when ``momentum`` is None; with a momentum
    (0.1, the default, as everywhere in DiffKD) nothing reads it, yet every training call spends
    one extra kernel launch on it (a DiffKD iteration on a five-level FPN calls BN 165 times).
    Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d``, so checkpoints load both
    ways; the counter simply stays where it was. With ``momentum=None`` it is ``nn.BatchNorm2d``.

    Shapes:
        (B, C, H, W) -> (B, C, H, W)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.momentum is None:
            return super().forward(x)
        self._check_input_dim(x)
        # The rest as nn.BatchNorm2d decides it: batch statistics in training (and in eval when
        # none are kept); the running ones are passed where they are updated or used.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        pass_running = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if pass_running else None,
                            self.running_var if pass_running else None, self.weight, self.bias,
                            use_batch_stats, self.momentum, self.eps)
