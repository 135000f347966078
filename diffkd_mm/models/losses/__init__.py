from .diffkd_loss import DiffKDLoss

__all__ = ['DiffKDLoss']
