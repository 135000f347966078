"""DiffKD's graph mode: each level's branch runs as a captured graph, forward and backward.

On a GPU DiffKD's cost is the number of kernels it launches, not its arithmetic: three DDIM
steps and the diffusion loss run the noise predictor four times per level, each op a small
kernel launched by the host. ``torch.compile(fullgraph=True)`` captures a branch (forward and,
through AOTAutograd, backward) as one graph; with Inductor's ``mode='reduce-overhead'`` the
captured kernels replay as CUDA graphs, one launch per graph, and the noise is drawn inside the
graph (Inductor's Philox RNG). The branch reads nothing back to the host, so the whole branch is
one graph (``tests/test_models/test_diffkd/test_capture.py``).

A captured graph is specialised to its input shapes. Detection batches vary in size, so each
(module, method) keeps at most ``max_shapes`` captured signatures; a new signature past the
bound runs eagerly, with one message that says how to avoid it (pad or bucket the batch shapes,
or raise ``max_shapes``). A setting that cannot be captured (an older ``torch.compile``) runs
eagerly with one message, rather than failing the training. Calls without gradients, in eval
mode or on a module with forward hooks run eagerly: graph mode is for the training forward.

The config value, on :class:`~diffkd_mm.models.losses.DiffKDLoss` and the DiffKD connectors::

    graph_mode=None                      # eager (the default)
    graph_mode=True                      # dict(backend='inductor', mode='reduce-overhead',
                                         #      max_shapes=8)
    graph_mode=dict(backend='cudagraphs', max_shapes=4)
"""
import copy
import inspect
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch._dynamo
from mmengine.logging import MMLogger
from torch import nn

from .checks import is_positive_int

#: Raised when dynamo's recompile limit is hit under ``fullgraph=True`` (torch >= 2.6).
_RECOMPILE_LIMIT = tuple(
    getattr(torch._dynamo.exc, name) for name in ('FailOnRecompileLimitHit', )
    if hasattr(torch._dynamo.exc, name))
#: What ``graph_mode=True`` means.
GRAPH_MODE_DEFAULTS = dict(backend='inductor', mode='reduce-overhead', max_shapes=8)
#: Inductor's modes (``torch.compile(mode=...)``); other backends take none.
INDUCTOR_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')


def parse_graph_mode(value: Any, owner: str) -> Optional[Dict[str, Any]]:
    """The checked ``graph_mode`` setting: None (eager) or ``dict(backend, mode, max_shapes)``.

    Args:
        value (None | bool | dict): The config value.
        owner (str): Who takes it, for error messages.

    Raises:
        ValueError: naming ``graph_mode`` and what it expects.
    """
    if value is None or value is False:
        return None
    if value is True:
        return dict(GRAPH_MODE_DEFAULTS)
    if not isinstance(value, dict):
        raise ValueError(f'{owner}: graph_mode must be None, True or a dict with keys '
                         f'{", ".join(GRAPH_MODE_DEFAULTS)}; got {value!r}.')
    unknown = sorted(set(value) - set(GRAPH_MODE_DEFAULTS))
    if unknown:
        raise ValueError(f'{owner}: graph_mode has unknown key(s) {", ".join(unknown)}; it takes '
                         f'{", ".join(GRAPH_MODE_DEFAULTS)}.')
    backend = value.get('backend', GRAPH_MODE_DEFAULTS['backend'])
    if not (isinstance(backend, str) or callable(backend)):
        raise ValueError(f'{owner}: graph_mode.backend must be a torch.compile backend name '
                         f'such as \'inductor\' or \'cudagraphs\', got {backend!r}.')
    default_mode = GRAPH_MODE_DEFAULTS['mode'] if backend == 'inductor' else None
    mode = value.get('mode', default_mode)
    if mode is not None and (backend != 'inductor' or mode not in INDUCTOR_MODES):
        raise ValueError(f'{owner}: graph_mode.mode applies to backend=\'inductor\' only and '
                         f'must be one of {INDUCTOR_MODES}; got mode={mode!r} with '
                         f'backend={backend!r}.')
    max_shapes = value.get('max_shapes', GRAPH_MODE_DEFAULTS['max_shapes'])
    if not is_positive_int(max_shapes):
        raise ValueError(f'{owner}: graph_mode.max_shapes must be a positive int (input shapes '
                         f'captured per branch before new ones run eagerly), got {max_shapes!r}.')
    return dict(backend=backend, mode=mode, max_shapes=max_shapes)


def _autocast_state() -> Tuple:
    """Autocast on the CPU and on CUDA, with their dtypes, and its cast cache."""
    if hasattr(torch, 'get_autocast_dtype'):  # torch >= 2.4
        devices = tuple(
            (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
            for device in ('cpu', 'cuda'))
    else:
        devices = (torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype(),
                   torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype())
    return devices + (torch.is_autocast_cache_enabled(), )


def _signature(module: nn.Module, args: Tuple) -> Tuple:
    """What a captured graph is specialised to, read on the host (no device sync): the inputs'
    shapes, strides, dtypes and devices, every submodule's train/eval mode, grad mode and
    autocast."""
    inputs = tuple((tuple(a.shape), a.stride(), a.dtype, a.device,
                    a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args)
    modes = tuple(m.training for m in module.modules())
    return inputs, modes, torch.is_grad_enabled(), _autocast_state()


def _runs_eagerly(module: nn.Module) -> bool:
    """Whether this call runs eagerly whatever was captured.

    Graph mode is for training: a call without gradients or in eval mode (the denoising
    pictures) runs eagerly, so that it takes no captured shape and keeps no output in a CUDA
    graph's memory that the next call would reuse. A forward hook on the module (the KD
    diagnostics) needs ``module.__call__``, which the captured ``forward`` bypasses.
    """
    hooks = module._forward_hooks or module._forward_pre_hooks or \
        nn.modules.module._global_forward_hooks
    return not torch.is_grad_enabled() or not module.training or bool(hooks)


#: Options of ``torch.compile`` that keep each captured method's graphs apart (torch >= 2.6):
#: its own recompile limit, not one shared by every function compiled from the same code.
_ISOLATES = 'isolate_recompiles' in inspect.signature(torch.compile).parameters


def _capture_config(limit: int):
    """dynamo's settings while a captured call runs.

    Its DDP graph splitting (``optimize_ddp``) is for compiling a whole DDP-wrapped model,
    bucket by bucket; a branch is a small part of one and stays one graph, which is what
    replays as one CUDA graph. Where ``torch.compile`` cannot isolate recompiles (torch 2.1),
    dynamo's recompile limit, which counts the graphs of every level's branch together (they
    run the same ``forward``), is raised to ``limit`` (never lowered).
    """
    patches = dict(optimize_ddp=False)
    if not _ISOLATES:
        name = 'recompile_limit' if hasattr(torch._dynamo.config, 'recompile_limit') else \
            'cache_size_limit'
        patches[name] = max(getattr(torch._dynamo.config, name), limit)
    return torch._dynamo.config.patch(**patches)


def _capture_blocker(module: nn.Module) -> Optional[str]:
    """Why ``module`` must run eagerly on this torch, or None: torch 2.1's compiler traces
    activation checkpointing into a graph whose backward fails (no exception at capture)."""
    if torch.__version__ < '2.14' and any(getattr(m, 'with_cp', False) for m in module.modules()):
        return (f'activation checkpointing (with_cp=True) is captured from torch 2.14 on, this is '
                f'torch {torch.__version__}')
    return None


class _Captured:
    """One (module, method) in graph mode: its compiled form and the signatures it captured."""

    def __init__(self, function: Callable, settings: Dict[str, Any]) -> None:
        isolate = dict(
            recompile_limit=settings['max_shapes'], isolate_recompiles=True) if _ISOLATES else {}
        self.compiled = torch.compile(
            function,
            fullgraph=True,
            dynamic=False,
            backend=settings['backend'],
            mode=settings['mode'],
            **isolate)
        self.signatures = set()
        self.failed = False


class GraphedCalls:
    """Runs a module's methods as captured graphs, one per input signature, at most
    ``max_shapes`` per (module, method), eagerly beyond that or where capture fails.

    Not a module: it holds no weights and is left out of state dicts; a copy (a model EMA, a
    deep-copied model) starts with no captured graphs.

    Args:
        owner (str): Who runs in graph mode, for its messages.
        backend (str | callable): ``torch.compile`` backend.
        mode (str, optional): Inductor's mode.
        max_shapes (int): Captured signatures per (module, method).
    """

    def __init__(self,
                 owner: str,
                 backend='inductor',
                 mode: Optional[str] = 'reduce-overhead',
                 max_shapes: int = 8) -> None:
        self.owner = owner
        self.settings = dict(backend=backend, mode=mode, max_shapes=max_shapes)
        self._captured: Dict[Tuple[int, str], _Captured] = {}
        self._said = set()

    def __deepcopy__(self, memo) -> 'GraphedCalls':
        return GraphedCalls(self.owner, **copy.deepcopy(self.settings, memo))

    def num_captured(self, module: nn.Module, method: str = 'forward') -> int:
        """Signatures captured for ``module.method`` so far."""
        captured = self._captured.get((id(module), method))
        return 0 if captured is None else len(captured.signatures)

    def __call__(self, module: nn.Module, method: str, *args) -> Any:
        """``getattr(module, method)(*args)``, from a captured graph where one applies."""
        eager = _eager(module, method)
        key = (id(module), method)
        if key not in self._captured:
            self._captured[key] = _Captured(getattr(module, method), self.settings)
            blocker = _capture_blocker(module)
            if blocker is not None:
                self._captured[key].failed = True
                self._say_once(
                    key, f'{self.owner}: graph_mode does not capture '
                    f'{type(module).__name__}.{method} ({blocker}); it runs eagerly.')
        captured = self._captured[key]
        if captured.failed or _runs_eagerly(module):
            return eager(*args)
        signature = _signature(module, args)
        if signature not in captured.signatures:
            if len(captured.signatures) >= self.settings['max_shapes']:
                self._say_once(
                    ('full', ) + key,
                    f'{self.owner}: graph_mode captured {self.settings["max_shapes"]} '
                    f'input signatures of {type(module).__name__}.{method} (graph_mode.max_shapes);'
                    ' inputs of a new shape run eagerly from now on. Pad or bucket the batch '
                    'shapes (e.g. a fixed-size pad in the data preprocessor), or raise '
                    'graph_mode.max_shapes.')
                return eager(*args)
            captured.signatures.add(signature)
        try:
            with _capture_config(self.settings['max_shapes'] * len(self._captured)):
                return captured.compiled(*args)
        except (torch._dynamo.exc.TorchDynamoException, *_RECOMPILE_LIMIT) as error:
            # Raised while capturing, before the graph ran: nothing was updated yet.
            captured.failed = True
            captured.signatures.clear()
            cause = getattr(error, 'inner_exception', None) or error
            lines = str(cause).strip().splitlines()
            reason = f'{type(cause).__name__}: {lines[0] if lines else ""}'
            self._say_once(
                key, f'{self.owner}: graph_mode could not capture {type(module).__name__}.'
                f'{method} ({reason}); it runs eagerly.')
            return eager(*args)

    def _say_once(self, key, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            MMLogger.get_current_instance().warning(message)


def _eager(module: nn.Module, method: str) -> Callable:
    """``module.method`` as it runs without graph mode: ``forward`` through ``module.__call__``,
    so that hooks on the module fire."""
    return module if method == 'forward' else getattr(module, method)


def run_method(graph_calls: Optional[GraphedCalls], module: nn.Module, method: str, *args) -> Any:
    """``module.method(*args)``: through ``graph_calls`` in graph mode, else eagerly."""
    if graph_calls is None:
        return _eager(module, method)(*args)
    return graph_calls(module, method, *args)


def build_graphed_calls(graph_mode: Any, owner: str) -> Optional[GraphedCalls]:
    """A :class:`GraphedCalls` for a checked ``graph_mode`` config value, or None for eager."""
    settings = parse_graph_mode(graph_mode, owner)
    return None if settings is None else GraphedCalls(owner, **settings)
