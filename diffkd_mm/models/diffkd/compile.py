"""Optional ``torch.compile`` of a module's forward, with a compile cache of its own."""
import logging
import types
from typing import Callable, Optional, Union

import torch
from mmengine.logging import print_log
from torch import nn

CompileOption = Union[bool, dict, None]


def check_compile_option(value: CompileOption, owner: str, key: str) -> Optional[dict]:
    """Normalise a ``compile_*`` option: False/None -> None, True -> {}, dict -> itself.

    Raises:
        ValueError: naming ``owner`` and ``key`` when ``value`` is neither a bool nor a dict
            of ``torch.compile`` keyword arguments.
    """
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        unknown = set(value) - {'fullgraph', 'dynamic', 'backend', 'mode', 'options'}
        if unknown:
            raise ValueError(f'{owner}: {key} takes torch.compile arguments (fullgraph, dynamic, '
                             f'backend, mode, options), got unknown {sorted(unknown)}.')
        return dict(value)
    raise ValueError(f'{owner}: {key} must be a bool or a dict of torch.compile arguments, '
                     f'got {value!r}.')


def compile_forward(module: nn.Module, options: dict) -> Callable:
    """Return ``torch.compile(module.forward, **options)`` that shares no cache with its kin.

    Dynamo keeps its compiled graphs on the *code object* of the compiled function, guarded by
    the module instance, and falls back to eager, with only a warning, after
    ``torch._dynamo.config.recompile_limit`` (8) entries per code object. DiffKD builds one
    noise predictor per FPN level, and each is called with two signatures (the DDIM loop needs
    input gradients, the diffusion loss does not) and with several map sizes: five levels would
    exhaust the shared limit during the first iteration. A copy of ``forward``'s code object
    gives this instance its own cache; identical graphs still hit inductor's on-disk cache, so a
    copy costs its tracing (about a second) rather than a full compilation.

    Args:
        module (nn.Module): Module whose ``forward`` to compile. Its parameters, buffers and
            ``state_dict`` are untouched.
        options (dict): ``torch.compile`` keyword arguments.

    Returns:
        Callable: Same signature as ``module.forward``.
    """
    forward = type(module).forward
    own_copy = types.FunctionType(forward.__code__.replace(), forward.__globals__, forward.__name__,
                                  forward.__defaults__, forward.__closure__)
    return torch.compile(types.MethodType(own_copy, module), **options)


class CompiledForward:
    """A module's compiled forward (see :func:`compile_forward`) that watches its input shapes.

    With this torch (2.14) on the CPU, the compiled backward specialises on the spatial size
    even with ``dynamic=True``: each new feature-map size compiles again (seconds each), and
    after 8 entries dynamo falls back to eager. Fixed-size inputs (classification crops,
    segmentation crops) compile once per level; detection with variable image sizes does not
    profit. A warning names the owner once the shapes keep changing.

    Args:
        module (nn.Module): Module whose forward to compile.
        options (dict): ``torch.compile`` keyword arguments.
        owner (str): Name of the option, for the warning.
        max_shapes (int): Distinct shapes of the first input seen before warning. Defaults to 4.
    """

    def __init__(self, module: nn.Module, options: dict, owner: str, max_shapes: int = 4) -> None:
        self.forward = compile_forward(module, options)
        self.owner = owner
        self.max_shapes = max_shapes
        self.shapes = set()

    def __call__(self, x: torch.Tensor, *args):
        if len(self.shapes) <= self.max_shapes and x.shape not in self.shapes:
            self.shapes.add(x.shape)
            if len(self.shapes) > self.max_shapes:
                print_log(
                    f'{self.owner}: the compiled module has now seen {len(self.shapes)} input '
                    'shapes; torch.compile recompiles for every new size and falls back to eager '
                    'after torch._dynamo.config.recompile_limit entries. Use it with fixed-size '
                    'inputs (fixed crops or padding), or turn it off.',
                    logger='current', level=logging.WARNING)
        return self.forward(x, *args)
