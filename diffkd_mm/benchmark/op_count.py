"""Counting the operators a training iteration dispatches: the cost a GPU pays in launches.

On a GPU the DiffKD branch's small convolutions take microseconds each, so an iteration's time is
set by how many kernels the host launches, not by their FLOPs; a CPU timing cannot show it, but the
number of ATen operators that reach a backend kernel can, on any device: forward, backward and
optimizer step, as the autograd engine and the optimizer dispatch them. Operators that launch no
work are left out: views and aliases (``view``, ``detach``, ``select``, ``expand``, ...),
allocations (``empty``, ``empty_strided``) and ``lift_fresh``.
"""
import collections
import copy
from typing import Callable, Counter, Dict

from torch.utils._python_dispatch import TorchDispatchMode

#: Operators that allocate or wrap memory without running a kernel.
NO_WORK = frozenset(('empty', 'empty_strided', 'empty_like', 'new_empty', 'new_empty_strided',
                     'lift_fresh', 'set_'))


def launches_work(func) -> bool:
    """Whether an ATen overload runs a kernel: not a view or alias, not a bare allocation."""
    return not func.is_view and func.overloadpacket.__name__ not in NO_WORK


class OpCounter(TorchDispatchMode):
    """A dispatch mode that counts, by name, the operators that launch work while it is active.

    Attributes:
        counts (Counter[str]): ``aten`` operator name -> calls, for the operators that launch
            work.
        dispatched (int): Every operator dispatched, views and allocations included.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = collections.Counter()
        self.dispatched = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.dispatched += 1
        if launches_work(func):
            self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def count_ops(fn: Callable[[], object]) -> OpCounter:
    """Run ``fn`` once under an :class:`OpCounter`; returns the counter."""
    counter = OpCounter()
    with counter:
        fn()
    return counter


def ops_of_train_step(model, optim, data) -> OpCounter:
    """The operators of one ``train_step`` (forward, backward, optimizer step) of an mmengine
    model; run a step first so that lazily created state (optimizer momentum) is not counted."""
    return count_ops(lambda: model.train_step(copy.copy(data), optim))


def ops_of_parts(parts: Dict[str, Callable[[], None]]) -> Dict[str, OpCounter]:
    """The counter of one call of each function in ``parts`` (name -> function)."""
    return {name: count_ops(fn) for name, fn in parts.items()}
