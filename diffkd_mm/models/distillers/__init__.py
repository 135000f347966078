from .diffkd_distiller import DiffKDDistiller

__all__ = ['DiffKDDistiller']
