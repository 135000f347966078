"""The one place that adapts mmrazor 1.0.0: to today's torch, and to losses with several terms.

**Quantization imports.**
mmrazor 1.0.0 (its last release, 2023) imports its quantization backend
configurations eagerly: ``mmrazor.structures.quantization.backend_config`` pulls
``reverse2``, ``reverse3`` and ``reverse_sequential_wrapper2`` from
``torch.ao.quantization.fuser_method_mappings`` and calls
``BackendPatternConfig._set_overwrite_output_fake_quantize``; torch 2.x removed
all of them. Because ``mmrazor.structures`` imports that
sub-package first, the failure takes ``mmrazor.models``, ``mmrazor.engine`` and
``register_all_modules`` down with it, although distillation never quantizes.
mmrazor wraps those imports in ``try/except ImportError`` and swaps in
placeholders, so what surfaces is the first use of one: ``ImportError: `torch>=1.13`
is not installed properly``. Checked to read the same on torch 2.1.2 and 2.14.1
(both lack ``reverse2``), so the stand-in is active on both stacks.

:func:`apply` tries the real import first and changes nothing when it works.
Only when it fails does it register a stand-in for the backend-config module
alone; the rest of mmrazor (``QConfigHandler`` included) is imported unchanged.
Any use of the stand-in raises :class:`MMRazorQuantizationUnavailable` naming
the original import error. No mmrazor code is copied here.

**Loss entry names.** ``ConfigurableDistiller`` builds each entry of ``distill_losses`` and
stores it under its key, but never tells the loss that key, and calls it with its inputs only;
mmrazor offers no other way for a loss to learn it. DiffKD's losses log each term under the
entry's name (``distill.loss_diffkd_kd``, ...), so :func:`name_distill_losses` wraps
``ConfigurableDistiller.build_distill_losses`` to hand each built loss its key.
"""
import functools
import importlib
import sys
import types
from collections.abc import Mapping
from typing import Optional

BACKEND_CONFIG_MODULE = 'mmrazor.structures.quantization.backend_config'
_BACKEND_CONFIG_FUNCTIONS = ('get_native_backend_config', 'get_native_backend_config_dict',
                             'get_academic_backend_config', 'get_academic_backend_config_dict',
                             'get_openvino_backend_config', 'get_openvino_backend_config_dict',
                             'get_tensorrt_backend_config', 'get_tensorrt_backend_config_dict')

#: The import error that made :func:`apply` install the stand-in, else None.
QUANTIZATION_IMPORT_ERROR: Optional[BaseException] = None


class MMRazorQuantizationUnavailable(ImportError):
    """Raised when code reaches mmrazor's quantization backends on a torch that lacks them."""


def _unavailable_message(what: str) -> str:
    return (f'{what} is unavailable: mmrazor 1.0.0\'s quantization backend configs do not '
            f'import on torch {_torch_version()} ({QUANTIZATION_IMPORT_ERROR!r}). diffkd_mm '
            'replaced them with a stand-in so that distillation works (diffkd_mm/compat.py). '
            'Quantization with mmrazor needs torch<2.0.')


def _torch_version() -> str:
    try:
        import torch
        return torch.__version__
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return '?'


class _UnavailableBackendConfigs(Mapping):
    """Stand-in for ``BackendConfigs``: looks like a mapping, refuses every lookup."""

    def __getitem__(self, key):
        raise MMRazorQuantizationUnavailable(
            _unavailable_message(f'mmrazor quantization backend {key!r}'))

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0


def _unavailable_function(name: str):

    def fn(*args, **kwargs):
        raise MMRazorQuantizationUnavailable(_unavailable_message(f'mmrazor.{name}()'))

    fn.__name__ = name
    return fn


def _make_backend_config_standin() -> types.ModuleType:
    module = types.ModuleType(BACKEND_CONFIG_MODULE,
                              'diffkd_mm stand-in: ' + __doc__.split('\n')[0])
    module.__file__ = __file__
    module.BackendConfigs = _UnavailableBackendConfigs()
    for name in _BACKEND_CONFIG_FUNCTIONS:
        setattr(module, name, _unavailable_function(name))
    module.__all__ = ['BackendConfigs', *_BACKEND_CONFIG_FUNCTIONS]
    return module


def _forget(prefix: str) -> None:
    """Drop half-imported modules under ``prefix`` so that the next import starts clean."""
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + '.')]:
        del sys.modules[name]


def apply() -> bool:
    """Make ``mmrazor`` importable on this torch. Idempotent.

    Returns:
        bool: True when the stand-in is in place (the real module failed), False when
        mmrazor's quantization structures imported as they are.
    """
    global QUANTIZATION_IMPORT_ERROR
    if QUANTIZATION_IMPORT_ERROR is not None:
        return True
    try:
        importlib.import_module('mmrazor.structures.quantization')
        return False
    except (ImportError, AttributeError) as err:  # the torch.ao APIs that 2.x removed
        if isinstance(err, ModuleNotFoundError) and err.name in ('mmrazor', 'torch'):
            raise  # not installed at all: nothing to adapt
        QUANTIZATION_IMPORT_ERROR = err
    _forget('mmrazor.structures')
    sys.modules[BACKEND_CONFIG_MODULE] = _make_backend_config_standin()
    importlib.import_module('mmrazor.structures')
    return True


def name_distill_losses() -> None:
    """Tell every loss a ``ConfigurableDistiller`` builds its entry name. Idempotent.

    Wraps ``ConfigurableDistiller.build_distill_losses`` (mmrazor 1.0.0: builds each config of
    ``distill_losses`` and returns them in an ``nn.ModuleDict`` under their keys): after it
    returns, each loss that has a ``bind_entry`` method and no name yet gets its key. Arguments
    and result are unchanged, so every distiller derived from ``ConfigurableDistiller`` names
    its losses too, unless it overrides the method.
    """
    from mmrazor.models.distillers import ConfigurableDistiller
    build = ConfigurableDistiller.build_distill_losses
    if getattr(build, '_names_entries', False):
        return

    @functools.wraps(build)
    def build_and_name(self, *args, **kwargs):
        losses = build(self, *args, **kwargs)
        for name, loss in losses.items():
            if callable(getattr(loss, 'bind_entry', None)) and loss.loss_name is None:
                loss.bind_entry(name)
        return losses

    build_and_name._names_entries = True
    ConfigurableDistiller.build_distill_losses = build_and_name
