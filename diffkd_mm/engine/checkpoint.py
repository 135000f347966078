"""Checkpoints that cannot hurt: safe loading, crash-safe saving, resume that survives a kill.

* **Safe loading.** Every ``torch.load`` inside a :class:`CheckpointGuard` runs with torch's
  ``weights_only=True`` and an allow-list of exactly the types that mmengine checkpoints hold
  (:func:`checkpoint_safe_globals`), even where mmengine or ``torch.hub`` ask for a full unpickle.
  A file that needs anything else is refused with :class:`UnsafeCheckpointError`; the user may
  opt in for files they trust with ``DIFFKD_TRUST_CHECKPOINTS=1``.
* **No silent random weights.** A checkpoint that loads (almost) none of a model's weights stops
  with :class:`MismatchedCheckpointError`, naming the key prefixes of both sides and the fix.
* **Crash-safe saving.** Checkpoints are written to a temporary file, flushed, fsynced and renamed
  (:func:`save_checkpoint_atomic`); a kill leaves the previous file intact.
* **Resume that survives a kill.** :func:`find_resumable_checkpoint` skips, with a warning, a
  checkpoint that does not load and returns the newest one that does.
* **Offline initialisation.** A download that fails raises :class:`OfflineCheckpointError`
  naming the config key, the URL and the cache path where the file can be placed.

The guard is a context manager that our entry points (``tools/*.py``, the demo) put around the
Runner: the hooks into mmengine and torch last exactly as long as the ``with`` block, so that
importing diffkd_mm changes nothing for other code in the process.
"""
import codecs
import contextlib
import logging
import os
import os.path as osp
import pickle
import re
from collections import Counter
from typing import Callable, Dict, Iterator, Optional

import numpy as np
import torch
import torch.hub
from mmengine.logging import HistoryBuffer, print_log

from ..fileio import atomic_open

TRUST_ENV = 'DIFFKD_TRUST_CHECKPOINTS'
EXPORTER = 'tools/model_converters/convert_kd_ckpt_to_student.py'
# Below this share of the model's weights (by element count), a load counts as "none matched":
# a checkpoint for another model (or with another key prefix) that happens to share a few small
# tensors must not pass for a loaded model.
MIN_LOADED_FRACTION = 0.01
_CKPT_NAME = re.compile(r'(?:^|_)(?:iter|epoch)_(\d+)\.pth$')


class CheckpointError(RuntimeError):
    """A checkpoint that was refused or cannot be used; the message says why and what to do."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds objects outside the allow-list: unpickling it could run code."""


class UnreadableCheckpointError(CheckpointError):
    """The file is not a readable checkpoint (truncated, corrupt or not a torch file)."""


class MismatchedCheckpointError(CheckpointError):
    """The checkpoint holds (almost) none of the model's weights."""


class OfflineCheckpointError(CheckpointError):
    """A checkpoint had to be downloaded and the download failed."""


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


def _load(load_fn: Callable, f, args: tuple, kwargs: dict, trust: bool, name: Optional[str] = None):
    """``load_fn(f, *args, **kwargs)`` with weights_only forced and our allow-list in scope."""
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
    return _load(torch.load, path, (), dict(map_location=map_location), trust)


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


def _state_dict_of(checkpoint) -> dict:
    return checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}


def _prefixes(keys, limit: int = 6) -> str:
    counts = Counter(k.split('.', 1)[0] + ('.' if '.' in k else '') for k in keys)
    shown = ', '.join(f'{p!r} ({n})' for p, n in counts.most_common(limit))
    return shown + (f', ... ({len(counts) - limit} more)' if len(counts) > limit else '')


def check_weights_match(module: torch.nn.Module, state_dict: dict, source: str) -> None:
    """Raise when ``state_dict`` holds (almost) none of ``module``'s weights.

    A weight counts as loaded when the checkpoint has its key with the same shape. Partial
    matches pass (mmengine then warns about the missing and unexpected keys).

    Args:
        module (nn.Module): The model receiving the weights.
        state_dict (dict): Its keys as they will be loaded (after prefix revision).
        source (str): What the weights come from, for the message (config key and file).

    Raises:
        MismatchedCheckpointError: Less than ``MIN_LOADED_FRACTION`` of the weights match.
    """
    own = {
        k: v
        for k, v in module.state_dict().items()
        if torch.is_tensor(v) and 'num_batches_tracked' not in k
    }
    total = sum(v.numel() for v in own.values())
    if total == 0:
        return
    loaded = sum(v.numel() for k, v in own.items()
                 if torch.is_tensor(state_dict.get(k)) and state_dict[k].shape == v.shape)
    if loaded >= MIN_LOADED_FRACTION * total:
        return
    theirs = [k for k in state_dict if isinstance(k, str)]
    matched = sum(1 for k, v in own.items()
                  if torch.is_tensor(state_dict.get(k)) and state_dict[k].shape == v.shape)
    if any(k.startswith('architecture.')
           for k in theirs) and not any(k.startswith('architecture.') for k in own):
        fix = ('this is a distillation checkpoint (the student is under \'architecture.\'): '
               f'export the student with {EXPORTER} and load that, or use the distillation '
               'config')
    elif any(k.startswith('architecture.') for k in own):
        fix = ('this model is a distillation algorithm, the checkpoint a plain model\'s: load it '
               'with the model\'s own config (or as the teacher, with model.teacher_ckpt)')
    else:
        fix = 'pass a checkpoint of this model (a config and a checkpoint of the same model)'
    raise MismatchedCheckpointError(
        f'{source} holds none of the weights of the {type(module).__name__} being loaded '
        f'({matched} of {len(own)} tensors match by name and shape): a run would go on with '
        f'random weights. Checkpoint keys start with {_prefixes(theirs) or "(none)"}; the '
        f'model\'s with {_prefixes(own)}. Fix: {fix}.')


def _step_of(path: str) -> int:
    found = _CKPT_NAME.search(osp.basename(path))
    return int(found.group(1)) if found else -1


def find_resumable_checkpoint(work_dir: str, logger='current') -> Optional[str]:
    """The newest checkpoint of ``work_dir`` that loads, for ``--resume`` without a path.

    Candidates are the file ``last_checkpoint`` names and every ``*.pth`` of the work dir, newest
    first (by the step in ``iter_N.pth`` / ``epoch_N.pth``, then by time). A candidate that does
    not load (cut short by a kill or a full disk, corrupt, no training state) is skipped with a
    warning naming it.

    Args:
        work_dir (str): The run's work dir.
        logger: Where warnings go (mmengine ``print_log`` logger).

    Returns:
        str or None: The checkpoint to resume from; None when the work dir holds none.

    Raises:
        UnreadableCheckpointError: Checkpoints exist but none of them loads.
        UnsafeCheckpointError: A candidate holds types outside the allow-list (not skipped:
            such a file in a work dir is not ours).
    """
    candidates = set()
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named and osp.isfile(named):
            candidates.add(osp.abspath(named))
        elif named:
            print_log(
                f'--resume: last_checkpoint names {named}, which does not exist; looking '
                'for other checkpoints',
                logger=logger,
                level=logging.WARNING)
    if osp.isdir(work_dir):
        candidates.update(
            osp.abspath(osp.join(work_dir, f)) for f in os.listdir(work_dir)
            if f.endswith('.pth') and osp.isfile(osp.join(work_dir, f)))
    skipped = []
    for path in sorted(candidates, key=lambda p: (_step_of(p), osp.getmtime(p)), reverse=True):
        try:
            checkpoint = load_checkpoint_file(path)
        except UnreadableCheckpointError as err:
            reason = str(err)
        else:
            meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
            if isinstance(meta, dict) and 'iter' in meta and 'state_dict' in checkpoint:
                return path
            reason = f'{path}: holds no training state (meta.iter), e.g. an exported model'
        skipped.append(reason)
        print_log(f'--resume: skipping {reason}', logger=logger, level=logging.WARNING)
    if skipped:
        raise UnreadableCheckpointError(
            f'--resume: no checkpoint of {work_dir} loads: ' + '; '.join(skipped) +
            '. Pass --resume PATH to a good checkpoint, or start anew in another --work-dir.')
    return None


@contextlib.contextmanager
def _swapped(owner, name: str, value) -> Iterator[None]:
    """Set ``owner.name = value`` for the block, then put back exactly what was there."""
    original = vars(owner)[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


class CheckpointGuard:
    """Load checkpoints safely and save them atomically inside a ``with`` block.

    Inside the block, for every checkpoint mmengine, mmrazor, mmdet, mmseg or mmpretrain load
    (``load_from``, ``--resume``, ``model.teacher_ckpt``, ``init_cfg`` pretrained weights):

    * ``torch.load`` runs with ``weights_only=True`` and :func:`checkpoint_safe_globals`, even
      where the caller asked for ``weights_only=False`` (``torch.hub`` does), unless the user set
      ``DIFFKD_TRUST_CHECKPOINTS=1``;
    * a checkpoint that loads (almost) none of the model's weights raises
      :class:`MismatchedCheckpointError`;
    * a failed download raises :class:`OfflineCheckpointError` with the config key, the URL and
      the cache path;
    * mmengine's ``save_checkpoint`` writes local files with :func:`save_checkpoint_atomic`.

    All errors are :class:`CheckpointError`; entry points turn them into a one-line exit.

    Args:
        cfg (Config, optional): The run's config, to name the key a checkpoint comes from.
        names (dict, optional): ``{checkpoint: description}`` that take precedence over the
            config, e.g. ``{args.checkpoint: 'checkpoint'}`` in ``tools/test.py``.
        trust (bool, optional): Unrestricted unpickling; defaults to ``DIFFKD_TRUST_CHECKPOINTS``.
    """

    def __init__(self,
                 cfg=None,
                 names: Optional[Dict[str, str]] = None,
                 trust: Optional[bool] = None) -> None:
        self.cfg = cfg
        self.names = dict(names or {})
        self.trust = trust_requested() if trust is None else trust
        self._current: Optional[str] = None
        self._stack: Optional[contextlib.ExitStack] = None

    # -- naming ---------------------------------------------------------------------------
    def source_of(self, filename: str) -> str:
        """``'<config key> (<file>)'`` for a checkpoint, as far as the config tells."""
        if filename in self.names:
            return f'{self.names[filename]} ({filename})'
        key = find_config_key(self.cfg, filename) if self.cfg is not None else None
        return f'{key} ({filename})' if key else f'checkpoint {filename}'

    # -- the hooks ------------------------------------------------------------------------
    def __enter__(self) -> 'CheckpointGuard':
        import mmengine.runner
        import mmengine.runner.checkpoint as ckpt_mod
        import mmengine.runner.runner as runner_mod
        stack = contextlib.ExitStack()
        original_load = torch.load
        original_loader = ckpt_mod.CheckpointLoader.load_checkpoint.__func__
        original_state_dict = ckpt_mod.load_state_dict
        original_download = torch.hub.download_url_to_file
        original_save = ckpt_mod.save_checkpoint
        guard = self

        def guarded_load(f, *args, **kwargs):
            return _load(
                original_load,
                f,
                args,
                kwargs,
                guard.trust,
                name=guard._current if not isinstance(f, (str, os.PathLike)) else None)

        def tracked_loader(cls, filename, map_location=None, logger='current'):
            guard._current = filename
            return original_loader(cls, filename, map_location, logger)

        def checked_load_state_dict(module, state_dict, strict=False, logger=None):
            from mmengine.model import is_model_wrapper
            target = module.module if is_model_wrapper(module) else module
            source = (
                guard.source_of(guard._current)
                if guard._current else 'the state dict being loaded')
            guard._current = None
            check_weights_match(target, state_dict, source)
            return original_state_dict(module, state_dict, strict, logger)

        def offline_aware_download(url, dst, *args, **kwargs):
            try:
                return original_download(url, dst, *args, **kwargs)
            except OSError as err:  # URLError, HTTPError, socket errors
                source = guard.source_of(guard._current or url)
                raise OfflineCheckpointError(
                    f'{source}: downloading {url} failed ({getattr(err, "reason", err)}). '
                    f'Without network, fetch the file elsewhere and place it at {dst}: it is '
                    'then used without a download; or point the config key at a local file.'
                ) from None

        def atomic_save(checkpoint, filename, file_client_args=None, backend_args=None):
            local = ('://' not in str(filename) and file_client_args is None
                     and (backend_args or {}).get('backend', 'local') == 'local')
            if not local:
                return original_save(checkpoint, filename, file_client_args, backend_args)
            save_checkpoint_atomic(checkpoint, filename)

        swaps = (
            (torch, 'load', guarded_load),
            (ckpt_mod.CheckpointLoader, 'load_checkpoint', classmethod(tracked_loader)),
            (ckpt_mod, 'load_state_dict', checked_load_state_dict),
            (torch.hub, 'download_url_to_file', offline_aware_download),
            (ckpt_mod, 'save_checkpoint', atomic_save),
            (runner_mod, 'save_checkpoint', atomic_save),  # Runner.save_checkpoint's name
            (mmengine.runner, 'save_checkpoint', atomic_save))  # CheckpointHook's publish
        for owner, name, value in swaps:
            stack.enter_context(_swapped(owner, name, value))
        self._stack = stack
        if self.trust:
            print_log(
                f'{TRUST_ENV}=1: checkpoints are unpickled without restriction; load only '
                'files you trust',
                logger='current',
                level=logging.WARNING)
        return self

    def __exit__(self, *exc_info) -> None:
        stack, self._stack = self._stack, None
        stack.close()


def find_config_key(cfg, value: str) -> Optional[str]:
    """The dotted key of ``cfg`` whose value is ``value`` (a checkpoint path or URL).

    Looks into the configs that ``cfg_path`` entries (mmrazor's way to take a model from
    mmdet / mmseg / mmpretrain) refer to, since their ``init_cfg`` is where pretrained weights
    are named.

    Args:
        cfg (Config | dict): The run's config.
        value (str): The checkpoint as the loader received it.

    Returns:
        str or None: e.g. ``'model.teacher_ckpt'`` or
        ``'model.architecture.backbone.init_cfg.checkpoint (in mmdet::...py)'``.
    """

    def walk(node, prefix: str, origin: str) -> Optional[str]:
        if isinstance(node, str):
            return prefix + origin if node == value else None
        if isinstance(node, dict):
            items = list(node.items())
        elif isinstance(node, (list, tuple)):
            items = [(str(i), v) for i, v in enumerate(node)]
        else:
            return None
        for key, child in items:
            found = walk(child, f'{prefix}.{key}' if prefix else str(key), origin)
            if found:
                return found
        if isinstance(node, dict) and isinstance(node.get('cfg_path'), str):
            try:
                from mmengine.hub import get_config
                sub = get_config(node['cfg_path']).get('model', {})
            except Exception:  # a broken cfg_path fails elsewhere, with its own message
                return None
            return walk(sub, prefix, f' (in {node["cfg_path"]})')
        return None

    if cfg is None:
        return None
    # model.* first: a config often also names its teacher checkpoint in a top-level variable
    ordered = {
        'model': cfg.get('model', {}),
        **{
            k: v
            for k, v in dict(cfg).items() if k != 'model'
        }
    }
    return walk(ordered, '', '')
