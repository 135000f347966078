"""Checkpoint files: loading with torch's ``weights_only`` and an allow-list, saving atomically."""
import codecs
import os
import pickle
import re
from typing import Callable, Optional

import numpy as np
import torch
import torch.hub
from mmengine.logging import HistoryBuffer

from ...fileio import atomic_open
from .errors import CheckpointError, UnreadableCheckpointError, UnsafeCheckpointError

TRUST_ENV = 'DIFFKD_TRUST_CHECKPOINTS'


def trust_requested() -> bool:
    """Whether the user opted in to unrestricted unpickling (``DIFFKD_TRUST_CHECKPOINTS=1``)."""
    return os.environ.get(TRUST_ENV, '').strip().lower() in ('1', 'true', 'yes', 'on')


def _history_buffer_method(owner, name: str):
    """Stands in for ``getattr`` while unpickling: only ``HistoryBuffer``'s statistics methods.

    A pickled ``HistoryBuffer`` carries its statistics methods (``min``, ``max``, ...), which
    pickle refers to as ``getattr(HistoryBuffer, 'min')``. The real ``getattr`` would let a file
    reach any attribute (and from there, ``os.system``), so only these lookups are answered.
    """
    allowed = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    value = vars(HistoryBuffer).get(name) if owner is HistoryBuffer else None
    if name not in allowed or not callable(value) or name.startswith('_'):
        raise pickle.UnpicklingError(
            f'Unsupported global: GLOBAL builtins.getattr({owner!r}, {name!r}) (only '
            'HistoryBuffer statistics methods are allowed)')
    return getattr(HistoryBuffer, name)


def checkpoint_safe_globals() -> list:
    """The types, beyond torch's own allow-list, that our and the zoo's checkpoints hold.

    mmengine 0.10.7 pickles the message hub (``HistoryBuffer`` objects holding numpy arrays and
    their statistics methods); runtime info and metrics can be numpy scalars. Each entry only
    rebuilds data: none runs code chosen by the file.

    Returns:
        list: Classes, functions and ``(function, pickled name)`` pairs for
        ``torch.serialization.safe_globals``.
    """
    # numpy 2 moved numpy.core to numpy._core; a pickle names the path of the numpy that wrote
    # it, so both names map to this numpy's functions.
    from numpy.core import multiarray  # numpy 2 keeps this path as an alias
    numpy_functions = [(fn, f'{root}.multiarray.{fn.__name__}')
                       for fn in (multiarray._reconstruct, multiarray.scalar)
                       for root in ('numpy.core', 'numpy._core')]
    dtype_classes = [
        type(np.dtype(t))
        for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                  np.uint64, np.float16, np.float32, np.float64, np.str_)
    ]
    # _codecs.encode turns the str of a protocol-2 bytes object back into bytes; torch's own
    # weights-only unpickler allows it, the restricted fallback needs it named
    return [
        HistoryBuffer, (_history_buffer_method, 'builtins.getattr'), np.ndarray, np.dtype,
        *numpy_functions, *dtype_classes, (codecs.encode, '_codecs.encode')
    ]


# Whether this torch can scope an allow-list to a block (torch >= 2.5), see _weights_only_load.
_SCOPED_ALLOW_LIST = hasattr(torch.serialization, 'safe_globals')


def _global_name(entry) -> str:
    return entry[1] if isinstance(entry, tuple) else f'{entry.__module__}.{entry.__qualname__}'


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only torch's weights-only globals and ours (torch < 2.5)."""

    def find_class(self, module: str, name: str):
        from torch._weights_only_unpickler import _get_allowed_globals
        allowed = dict(_get_allowed_globals())
        allowed.update((_global_name(g), g[0] if isinstance(g, tuple) else g)
                       for g in checkpoint_safe_globals())
        full = f'{"builtins" if module == "__builtin__" else module}.{name}'
        if full not in allowed:
            raise pickle.UnpicklingError(f'Unsupported global: GLOBAL {full}')
        return allowed[full]


def _restricted_pickle_module():
    """A module for ``torch.load(pickle_module=...)`` that unpickles with the allow-list."""
    import types
    module = types.ModuleType('diffkd_mm_restricted_pickle')
    module.Unpickler = _RestrictedUnpickler
    module.load = lambda f, **kwargs: _RestrictedUnpickler(f, **kwargs).load()
    module.UnpicklingError = pickle.UnpicklingError
    return module


def _weights_only_load(load_fn: Callable, f, args: tuple, kwargs: dict):
    """``load_fn(f, ...)`` that rebuilds only tensors, containers and the allow-listed types.

    torch's API for extra types depends on its version; this is the only place that branches on
    it. torch >= 2.5 scopes an allow-list to a block (``safe_globals``). Older torch cannot
    extend its weights-only unpickler without changing it for the whole process (2.4) or at all
    (2.1), so the same allow-list (torch's own weights-only globals and ours) is enforced by a
    restricted unpickler instead, the classic "restricting globals" of the pickle docs.
    """
    if _SCOPED_ALLOW_LIST:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return load_fn(f, *args, **dict(kwargs, weights_only=True))
    kwargs = dict(kwargs, weights_only=False, pickle_module=_restricted_pickle_module())
    return load_fn(f, *args, **kwargs)


def _describe(f) -> str:
    return os.fspath(f) if isinstance(f, (str, os.PathLike)) else '<stream>'


def _translate_load_error(err: BaseException, name: str) -> Optional[CheckpointError]:
    """Our exception for an error of ``torch.load`` on ``name``, or None if it is not ours."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and ('Weights only load failed' in text
                                                    or 'Unsupported global' in text):
        detail = text.split('WeightsUnpickler error:', 1)[-1].strip().splitlines()[0][:200]
        # torch >= 2.4 says "GLOBAL x.y", older torch "Unsupported class x.y"
        found = re.search(r'(?:GLOBAL|Unsupported class) ([\w.]+)', text)
        if found or any(m in text for m in ('Can only', 'unrecognized function', 'is blocked')):
            what = f'the global {found.group(1)}' if found else f'an object ({detail})'
            return UnsafeCheckpointError(
                f'{name}: refused to load this checkpoint: it needs {what}, which is not on '
                'diffkd_mm\'s allow-list of checkpoint contents (tensors, numpy arrays and '
                'scalars, mmengine\'s message hub), and unpickling it could run arbitrary code. '
                f'If the file comes from a source you trust, set {TRUST_ENV}=1 to load it '
                'without this restriction.')
        return UnreadableCheckpointError(
            f'{name}: not a readable checkpoint ({detail}); it is corrupt or not a torch file')
    if isinstance(err,
                  (EOFError, pickle.UnpicklingError)) or (isinstance(err, RuntimeError) and any(
                      m in text for m in ('PytorchStreamReader', 'zip archive', 'magic number'))):
        first = text.strip().splitlines()[0].split('. ')[0][:200] if text.strip() else 'empty'
        return UnreadableCheckpointError(
            f'{name}: not a readable checkpoint ({first}); it is truncated (e.g. by a kill or '
            'a full disk during the save), corrupt or not a torch file')
    return None


def load_safely(load_fn: Callable,
                f,
                args: tuple,
                kwargs: dict,
                trust: bool,
                name: Optional[str] = None):
    """``load_fn(f, *args, **kwargs)`` with weights_only forced and our allow-list in scope.

    ``load_fn`` is ``torch.load`` (or the original of a patched one); ``trust`` lifts the
    restriction; ``name`` names the file in errors. Refusals and unreadable files raise our
    :class:`CheckpointError` subclasses with a message that says what to do.
    """
    if trust:
        return load_fn(f, *args, **dict(kwargs, weights_only=False))
    try:
        return _weights_only_load(load_fn, f, args, kwargs)
    except CheckpointError:  # already ours (load_checkpoint_file inside a CheckpointGuard)
        raise
    except (pickle.UnpicklingError, EOFError, RuntimeError) as err:
        translated = _translate_load_error(err, name or _describe(f))
        if translated is None:
            raise
        raise translated from None


def load_checkpoint_file(path: str, map_location='cpu', trust: Optional[bool] = None):
    """Load a checkpoint file safely (weights_only with our allow-list).

    Args:
        path (str): The file.
        map_location: As for :func:`torch.load`. Defaults to ``'cpu'``.
        trust (bool, optional): Unrestricted unpickling; defaults to ``DIFFKD_TRUST_CHECKPOINTS``.

    Returns:
        The loaded object.

    Raises:
        UnsafeCheckpointError: The file holds types outside the allow-list.
        UnreadableCheckpointError: The file is truncated, corrupt or not a torch file.
    """
    trust = trust_requested() if trust is None else trust
    return load_safely(torch.load, path, (), dict(map_location=map_location), trust)


def save_checkpoint_atomic(obj, filename: str) -> None:
    """Write ``obj`` with ``torch.save`` so that ``filename`` is either the old or the new file.

    The data goes to a hidden temporary file in the same folder, is flushed and fsynced, then
    renamed over ``filename`` (atomic on POSIX); the folder is fsynced so that the rename
    survives a power cut. A kill or a full disk during the write leaves ``filename`` as it was.

    Args:
        obj: What to save.
        filename (str): Destination path (local file system).
    """
    with atomic_open(filename, 'wb') as f:
        torch.save(obj, f)
