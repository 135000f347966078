from .diffkd_diffusion_loss import DiffKDDiffusionLoss
from .diffkd_loss import DiffKDLoss
from .multi_term import MultiTermLoss

__all__ = ['DiffKDDiffusionLoss', 'DiffKDLoss', 'MultiTermLoss']
