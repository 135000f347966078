"""The one place that adapts mmrazor 1.0.0 to today's torch.

mmrazor 1.0.0 (its last release, 2023) imports its quantization backend
configurations eagerly: ``mmrazor.structures.quantization.backend_config`` pulls
``reverse2``, ``reverse3`` and ``reverse_sequential_wrapper2`` from
``torch.ao.quantization.fuser_method_mappings`` and calls
``BackendPatternConfig._set_overwrite_output_fake_quantize``; torch 2.x removed
all of them (open-mmlab/mmrazor#632). Because ``mmrazor.structures`` imports that
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
"""
import importlib
import sys
import types
from collections.abc import Mapping
from typing import Optional

BACKEND_CONFIG_MODULE = 'mmrazor.structures.quantization.backend_config'
_BACKEND_CONFIG_FUNCTIONS = (
    'get_native_backend_config', 'get_native_backend_config_dict',
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
            'Quantization with mmrazor needs torch<2.0 (see open-mmlab/mmrazor#632).')


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
    module = types.ModuleType(BACKEND_CONFIG_MODULE, 'diffkd_mm stand-in: ' + __doc__.split('\n')[0])
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


# ---------------------------------------------------------------------------------------------
# torch-version-dependent behaviour of diffkd_mm itself. CI runs two stacks, torch 2.1.2 (the
# torch of OpenMMLab's install guide and prebuilt mmcv wheels) and torch 2.14.1; what differs
# between them is decided here and nowhere else.
# ---------------------------------------------------------------------------------------------

#: First torch where a ``torch.compile``'d function may run inside non-reentrant activation
#: checkpointing (``torch.utils.checkpoint(..., use_reentrant=False)``), i.e. DiffKD's
#: ``compile_predictor`` together with ``with_cp``. On torch 2.1.2 the first call compiles inside
#: the checkpointed region, checkpoint's saved-tensor hooks see the compiler's tracing, and inductor
#: fails ("Detected that you are using FX to symbolically trace a dynamo-optimized function");
#: worse, the aborted checkpoint leaves torch's checkpoint state behind, so later, unrelated
#: checkpointed calls fail ("A different number of tensors was saved during the original forward
#: and recomputation"). Checked: 2.1.2 fails, 2.14.1 works (same math as eager within 1e-5);
#: versions in between were not tried, so they are refused too. Lower this once one is verified.
COMPILE_UNDER_CHECKPOINT_MIN_TORCH = (2, 14)


def torch_version_tuple() -> tuple:
    """``(major, minor)`` of the installed torch, e.g. ``(2, 1)`` for ``2.1.2+cu121``."""
    import torch
    major, minor = torch.__version__.split('+')[0].split('.')[:2]
    return int(major), int(minor)


def check_compile_under_checkpoint(owner: str) -> None:
    """Refuse ``torch.compile`` inside activation checkpointing on a torch that cannot run it.

    Called where both options are set, at construction, so that no training step starts (and no
    checkpoint state is corrupted) before the problem is reported.

    Raises:
        RuntimeError: naming ``owner``, the torch version and the two ways out.
    """
    if torch_version_tuple() >= COMPILE_UNDER_CHECKPOINT_MIN_TORCH:
        return
    need = '.'.join(map(str, COMPILE_UNDER_CHECKPOINT_MIN_TORCH))
    raise RuntimeError(
        f'{owner}: compile_predictor with with_cp=True needs torch >= {need} (torch.compile '
        f'inside torch.utils.checkpoint(use_reentrant=False)); this is torch {_torch_version()}, '
        'where it fails and corrupts later checkpointed calls. Use one of the two options '
        '(with_cp alone saves the memory, compile_predictor alone the time), or a newer torch. '
        'See diffkd_mm/compat.py.')
