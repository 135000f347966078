"""diffkd_mm: DiffKD (Knowledge Diffusion for Distillation) for OpenMMLab 2.x, via mmrazor.

Importing the package first makes mmrazor 1.0.0 importable on today's torch
(:mod:`diffkd_mm.compat`), then registers DiffKD's modules in ``mmrazor.registry.MODELS`` and
lets mmrazor's distillers tell DiffKD's losses their entry names.
"""
from . import compat
from .version import __version__

compat.apply()

from . import engine, models  # noqa: E402,F401  (registers the modules; needs compat first)

compat.name_distill_losses()

__all__ = ['__version__', 'compat', 'engine', 'models']
