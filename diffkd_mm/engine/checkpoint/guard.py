"""The ``with`` block that puts safe loading, atomic saving and clear errors around a Runner."""
import contextlib
import logging
import os
from typing import Dict, Optional

import torch
import torch.hub
from mmengine.logging import print_log

from ...patches import swapped
from .errors import OfflineCheckpointError
from .files import TRUST_ENV, load_safely, save_checkpoint_atomic, trust_requested
from .weights import check_weights_match


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
    * mmengine's ``save_checkpoint`` writes local files with :func:`save_checkpoint_atomic`;
    * the checkpoint that ``CheckpointHook(max_keep_ckpts=N)`` drops is removed only once the new
      one is saved: mmengine removes it first, so a kill or a full disk during the save of the
      new one would leave no checkpoint at all with ``max_keep_ckpts=1``.

    The swaps that do it are listed in :mod:`diffkd_mm.patches`. All errors are
    :class:`CheckpointError`; entry points turn them into a one-line exit.

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
        from mmengine.hooks import CheckpointHook
        stack = contextlib.ExitStack()
        original_load = torch.load
        original_loader = ckpt_mod.CheckpointLoader.load_checkpoint.__func__
        original_state_dict = ckpt_mod.load_state_dict
        original_download = torch.hub.download_url_to_file
        original_save = ckpt_mod.save_checkpoint
        guard = self

        def guarded_load(f, *args, **kwargs):
            return load_safely(
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

        original_save_with_step = CheckpointHook._save_checkpoint_with_step

        def remove_old_after_save(hook, runner, step, meta):
            backend, doomed = hook.file_backend, []
            # Instance attributes shadow the backend's methods for this call only.
            backend.remove = backend.rmtree = doomed.append
            try:
                original_save_with_step(hook, runner, step, meta)
            finally:
                del backend.remove, backend.rmtree
            for path in doomed:  # reached only when the new checkpoint is saved
                (backend.rmtree if backend.isdir(path) else backend.remove)(path)

        swaps = (
            (CheckpointHook, '_save_checkpoint_with_step', remove_old_after_save),
            (torch, 'load', guarded_load),
            (ckpt_mod.CheckpointLoader, 'load_checkpoint', classmethod(tracked_loader)),
            (ckpt_mod, 'load_state_dict', checked_load_state_dict),
            (torch.hub, 'download_url_to_file', offline_aware_download),
            (ckpt_mod, 'save_checkpoint', atomic_save),
            (runner_mod, 'save_checkpoint', atomic_save),  # Runner.save_checkpoint's name
            (mmengine.runner, 'save_checkpoint', atomic_save))  # CheckpointHook's publish
        for owner, name, value in swaps:
            stack.enter_context(swapped(owner, name, value, patch='checkpoint-guard'))
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
