"""diffkd_mm: DiffKD (Knowledge Diffusion for Distillation) for OpenMMLab 2.x, via mmrazor.

Importing the package first makes mmrazor 1.0.0 importable on today's torch (the one change made
at import, documented with every other in :mod:`diffkd_mm.patches`), then registers DiffKD's
modules in ``mmrazor.registry.MODELS``.
"""
from . import patches
from .version import __version__

patches.apply()

from . import engine, models  # noqa: E402,F401  (registers the modules; needs the stand-in first)

__all__ = ['__version__', 'engine', 'models', 'patches']
