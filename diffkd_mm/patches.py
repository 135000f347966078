"""Every change diffkd_mm makes to code that is not its own, in one place.

Nothing outside this module assigns to an attribute of torch, mmengine, mmrazor, the OpenMMLab
task packages or ``sys`` (a test checks the package's source for it). Each change below says
what it does, why, when it is in force and how to do without it.

**1. ``mmrazor-quantization-standin``: mmrazor's quantization backend configs**
(:func:`apply`; at ``import diffkd_mm``, and only when mmrazor's own import fails).
*What*: mmrazor 1.0.0 (its last release, 2023) imports its quantization backend configurations
eagerly: ``mmrazor.structures.quantization.backend_config`` pulls ``reverse2``, ``reverse3`` and
``reverse_sequential_wrapper2`` from ``torch.ao.quantization.fuser_method_mappings`` and calls
``BackendPatternConfig._set_overwrite_output_fake_quantize``; torch 2.x removed all of them.
Because ``mmrazor.structures`` imports that sub-package first, the failure takes
``mmrazor.models``, ``mmrazor.engine`` and ``register_all_modules`` down with it, although
distillation never quantizes (mmrazor catches the ``ImportError`` and swaps in placeholders, so
what surfaces is ``ImportError: `torch>=1.13` is not installed properly`` at the first use).
:func:`apply` tries the real import first and changes nothing when it works. Only when it fails
does it register a stand-in for the backend-config module alone (``sys.modules``); the rest of
mmrazor is imported unchanged, and any use of the stand-in raises
:class:`MMRazorQuantizationUnavailable` naming the original import error. Checked on torch 2.1.2
and 2.14.1 (both lack ``reverse2``), so it is active on both stacks.
*Why here*: without it, no mmrazor distiller can be built on torch 2.x.
*Without it*: torch < 2.0, where mmrazor imports as it is; :data:`QUANTIZATION_IMPORT_ERROR`
then stays None and nothing is changed.

**2. ``checkpoint-guard``: safe checkpoint loading and atomic saving**
(``diffkd_mm.engine.CheckpointGuard``; only inside its ``with`` block, which ``tools/train.py``,
``tools/test.py``, the demo and the denoising visualiser enter; importing diffkd_mm or
building its modules never does).
*What*: for the block, :func:`swapped` replaces ``torch.load`` (``weights_only=True`` with an
allow-list), ``mmengine.runner.checkpoint.CheckpointLoader.load_checkpoint`` and
``load_state_dict`` (name the config key of a checkpoint; refuse one that loads almost none of
the model's weights), ``torch.hub.download_url_to_file`` (a failed download names the key and
where to put the file), mmengine's ``save_checkpoint`` under its three import names (write to a
temporary file, then rename) and ``CheckpointHook._save_checkpoint_with_step`` (remove the
checkpoint that ``max_keep_ckpts`` drops only after the new one is saved).
*Why*: a checkpoint a user loads must not run code; a kill or a full disk must not leave a
half-written or no checkpoint; mmengine offers no hook for either.
*Without it*: call mmengine's Runner from your own script (the registered modules work the
same); ``DIFFKD_TRUST_CHECKPOINTS=1`` lifts only the unpickling restriction.

**3. ``console``: the demo's console** (``diffkd_mm.demo.console.Console``; only inside
``tools/run_demo.py``).
*What*: ``sys.stdout`` and ``sys.stderr`` become a switch that sends a training run's output
to its folder's ``console.log`` and one progress line to the terminal.
*Why*: mmengine prints every config and logged iteration; the person running the job reads one
line per run. *Without it*: ``run_demo.py --verbose`` streams everything and swaps nothing.

**4. ``simulated-full-disk``: a full disk, simulated**
(``diffkd_mm.testing.simulated_full_disk``; tests only).
*What*: ``open`` inside :mod:`diffkd_mm.fileio` (a module attribute shadowing the builtin, in
diffkd_mm's own module) returns files whose writes fail with ``ENOSPC``.
*Why*: to show that every writer survives a full disk. *Without it*: never imported by the
package.

**5. ``official-code-on-cpu``: the official DiffKD code on a machine without CUDA**
(``tools/analysis_tools/recipe_parity.py`` only, while it builds the official training setup).
*What*: ``torch.nn.Module.cuda`` returns the module unchanged.
*Why*: the official loss wrapper moves its DiffKD modules with a hard-coded ``.cuda()``; the
parity check compares on CPU. *Without it*: run the tool on a machine with CUDA, where nothing
is swapped.

Not patched: how DiffKD's losses learn their entry name in ``distill_losses`` (for their
per-term logs). ``DiffKDDistiller`` tells them; in any other mmrazor distiller the
:class:`~diffkd_mm.engine.DistillLossNamesHook` does, when the config asks for it
(``custom_hooks``). mmrazor's own classes are left as they are.
"""
import contextlib
import importlib
import sys
import types
from collections.abc import Mapping
from typing import Iterator, Optional

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
            'replaced them with a stand-in so that distillation works (diffkd_mm/patches.py). '
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
    module = types.ModuleType(
        BACKEND_CONFIG_MODULE, 'diffkd_mm stand-in for mmrazor\'s quantization backend '
        'configs, which do not import on this torch (see diffkd_mm.patches)')
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


#: The names of the changes above (:func:`swapped` takes one of them for each swap it makes).
PATCHES = ('mmrazor-quantization-standin', 'checkpoint-guard', 'console', 'simulated-full-disk',
           'official-code-on-cpu')

_MISSING = object()


@contextlib.contextmanager
def swapped(owner, name: str, value, patch: str) -> Iterator[None]:
    """Set ``owner.name = value`` for the block, then put back exactly what was there.

    The one way diffkd_mm swaps an attribute of code that is not its own; ``patch`` names the
    entry of this module's list that documents the swap.

    Args:
        owner (object): A module, a class or an object.
        name (str): The attribute. One that ``owner`` lacks (e.g. a builtin that a module
            attribute shadows) is deleted again at the end.
        value: What the attribute is inside the block.
        patch (str): One of :data:`PATCHES`.
    """
    if patch not in PATCHES:
        raise ValueError(f'swapped: patch must be one of {PATCHES} (each documented in '
                         f'diffkd_mm.patches), got {patch!r}.')
    # A class's own attribute, not an inherited or descriptor-bound one, is what is put back.
    original = vars(owner).get(name, _MISSING) if isinstance(owner, type) else getattr(
        owner, name, _MISSING)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if original is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, original)
