"""DiffKD's denoiser warm-up: train its teacher side on the teacher alone before the student.

DiffKD's noise predictor starts untrained. Until it has learnt the teacher's feature
distribution, the DDIM loop does not move the student feature towards anything meaningful,
and the KD term's first iterations teach the student through a random denoiser. The warm-up
trains the noise predictors (and the AEs) for a number of iterations on the teacher's features
alone, with DiffKD's own diffusion and AE losses, before the student's first iteration. Neither
the paper nor the official code has it: it is an option (``docs/method.md``).
"""
import copy
import hashlib
import logging
import os.path as osp
import time
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.dist import all_reduce, barrier, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS, OPTIMIZERS
from torch import nn

from ..fileio import cache_root, set_aside
from .checkpoint import CheckpointError, load_checkpoint_file, save_checkpoint_atomic
from .rng import restore_rng, rng_state

#: Version of the cache file layout (part of the key).
_CACHE_FORMAT = 1


def diffkd_entries(algorithm: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The distiller's loss entries that have a teacher side to warm up, ``(name, loss)``.

    Raises:
        ValueError: the model is not a distillation algorithm, or has no DiffKD entry.
    """
    distiller = getattr(algorithm, 'distiller', None)
    if distiller is None or not hasattr(algorithm, 'teacher'):
        raise ValueError(
            f'DiffKDWarmupHook: model type {type(algorithm).__name__} has no teacher and '
            'distiller; the hook needs an mmrazor distillation algorithm (model.type '
            "'SingleTeacherDistill', 'FpnTeacherDistill', ...).")
    entries = [(name, loss) for name, loss in distiller.distill_losses.items()
               if hasattr(loss, 'teacher_side_terms')]
    if not entries:
        raise ValueError(
            'DiffKDWarmupHook: model.distiller.distill_losses has no DiffKD entry (DiffKDLoss or '
            f'DiffKDDiffusionLoss); it has {", ".join(distiller.distill_losses) or "none"}.')
    return entries


def _run_teacher(algorithm: nn.Module, inputs, data_samples) -> None:
    """The teacher's forward as the algorithm runs it, so its recorders see the same modules."""
    from mmrazor.models.algorithms import FpnTeacherDistill
    if isinstance(algorithm, FpnTeacherDistill):
        algorithm.teacher.extract_feat(inputs)  # backbone + neck only, as FpnTeacherDistill
    else:
        algorithm.teacher(inputs, data_samples, mode='loss')


def _digest(state: Dict[str, torch.Tensor], h) -> None:
    for name, tensor in sorted(state.items()):
        tensor = tensor.detach().cpu().contiguous()
        h.update(f'{name}:{tensor.dtype}:{tuple(tensor.shape)};'.encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


@HOOKS.register_module()
class DiffKDWarmupHook(Hook):
    """Train DiffKD's noise predictors (and AEs) on the teacher alone before the student starts.

    Before the first training iteration, for ``iters`` iterations over the training data: the
    teacher runs (no gradient), its recorders fill, and every DiffKD entry of the distiller
    (:class:`~diffkd_mm.models.losses.DiffKDLoss`, or
    :class:`~diffkd_mm.models.losses.DiffKDDiffusionLoss` with its connectors) computes its
    teacher-side terms: the diffusion loss of its noise predictors on the teacher targets and,
    with ``ae_channels``, the AE reconstruction loss, with the entry's weights. Only those
    modules are trained, with their own optimizer (``optimizer``); the student, the projections,
    the noise adapters and the output projections are not touched, and the student's training
    then starts exactly as without the hook (the random state is restored afterwards, and the
    training loop's data order is its own).

    The warmed weights are cached in ``cache_dir`` under a key of everything they depend on:
    the teacher's weights, the warmed modules' initial weights (hence their settings and the
    seed), ``iters``, ``optimizer``, the training dataloader's config and the run's seed. A
    second student with the same teacher and settings loads them instead of training again. A
    cache file that cannot be read is set aside (``<file>.bad-<time>``) and the warm-up runs
    again. A resumed run skips the hook: its checkpoint holds the warmed weights. Under DDP
    every rank runs the warm-up with gradients averaged across ranks.

    Config::

        custom_hooks = [dict(type='DiffKDWarmupHook', iters=200)]

    Args:
        iters (int): Warm-up iterations (batches of the training dataloader).
        optimizer (dict): Optimizer config for the warmed parameters (mmengine ``OPTIMIZERS``).
            Defaults to ``dict(type='AdamW', lr=1e-3, weight_decay=0)``.
        cache (bool): Load and store warmed weights in ``cache_dir``. Defaults to True.
        cache_dir (str, optional): Defaults to ``warmup/`` in the project cache
            (``$DIFFKD_CACHE_DIR``, else ``~/.cache/diffkd_mm``).
        log_interval (int): Iterations between two log lines. Defaults to 50.
    """

    priority = 'LOW'  # after the hooks that load or change weights before training

    def __init__(self,
                 iters: int,
                 optimizer: Optional[dict] = None,
                 cache: bool = True,
                 cache_dir: Optional[str] = None,
                 log_interval: int = 50) -> None:
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ValueError(f'DiffKDWarmupHook: iters must be a positive int, got {iters!r}.')
        if optimizer is None:
            optimizer = dict(type='AdamW', lr=1e-3, weight_decay=0)
        if not isinstance(optimizer, dict) or 'type' not in optimizer:
            raise ValueError('DiffKDWarmupHook: optimizer must be an optimizer config such as '
                             f"dict(type='AdamW', lr=1e-3), got {optimizer!r}.")
        if isinstance(log_interval, bool) or not isinstance(log_interval, int) or log_interval < 1:
            raise ValueError(
                f'DiffKDWarmupHook: log_interval must be a positive int, got {log_interval!r}.')
        if not isinstance(cache, bool):
            raise ValueError(f'DiffKDWarmupHook: cache must be True or False, got {cache!r}.')
        if cache_dir is not None and not isinstance(cache_dir, str):
            raise ValueError(
                f'DiffKDWarmupHook: cache_dir must be a folder path or None, got {cache_dir!r}.')
        self.iters = iters
        self.optimizer = dict(optimizer)
        self.cache = cache
        self.cache_dir = cache_dir
        self.log_interval = log_interval

    # ------------------------------------------------------------------ the hook
    def before_train(self, runner) -> None:
        algorithm = runner.model.module if is_model_wrapper(runner.model) else runner.model
        entries = diffkd_entries(algorithm)
        if runner.iter > 0:
            print_log(
                f'[DiffKDWarmupHook] resumed at iteration {runner.iter}: the checkpoint holds '
                'the warmed denoisers, no warm-up',
                logger='current')
            return
        modules = self.warmed_modules(algorithm, entries)
        key = self.cache_key(runner, algorithm, modules)
        path = osp.join(
            self.cache_dir or osp.join(cache_root(), 'warmup'), f'diffkd_{key[:24]}.pth')
        if self.cache and self._load(path, key, modules):
            print_log(f'[DiffKDWarmupHook] warmed denoisers loaded from {path}', logger='current')
            return
        rng = rng_state()
        start = time.perf_counter()
        try:
            self.warm_up(runner, algorithm, entries, modules)
        finally:
            restore_rng(rng)
        print_log(
            f'[DiffKDWarmupHook] {self.iters} warm-up iterations in '
            f'{time.perf_counter() - start:.1f} s',
            logger='current')
        if self.cache and is_main_process():
            save_checkpoint_atomic(
                dict(
                    key=key,
                    iters=self.iters,
                    state={
                        name: m.state_dict()
                        for name, m in modules.items()
                    }), path)
            print_log(f'[DiffKDWarmupHook] warmed denoisers stored in {path}', logger='current')
        barrier()

    # ------------------------------------------------------------------ parts
    @staticmethod
    def warmed_modules(algorithm: nn.Module, entries) -> Dict[str, nn.Module]:
        """The modules the warm-up trains, by their name in the algorithm."""
        names = {id(module): name for name, module in algorithm.named_modules()}
        modules = {}
        for _, loss in entries:
            for module in loss.teacher_side_modules():
                modules[names[id(module)]] = module
        return modules

    def cache_key(self, runner, algorithm: nn.Module, modules: Dict[str, nn.Module]) -> str:
        """SHA-256 of everything the warmed weights depend on (see the class docstring)."""
        h = hashlib.sha256(f'format {_CACHE_FORMAT}; iters {self.iters}; '
                           f'optimizer {sorted(self.optimizer.items())!r}; '
                           f'seed {runner.seed}; '
                           f'data {runner.cfg.get("train_dataloader")!r};'.encode())
        _digest(algorithm.teacher.state_dict(), h)
        for name, module in sorted(modules.items()):
            _digest({f'{name}.{k}': v for k, v in module.state_dict().items()}, h)
        return h.hexdigest()

    def warm_up(self, runner, algorithm: nn.Module, entries, modules: Dict[str, nn.Module]) -> None:
        """``iters`` iterations of the teacher-side terms, on the training data."""
        params = list({id(p): p for m in modules.values() for p in m.parameters()}.values())
        optimizer = OPTIMIZERS.build(dict(self.optimizer, params=params))
        distiller = algorithm.distiller
        algorithm.train()
        # A dataloader of its own, built from the config: the training loop's one may share its
        # sampler's state (mmengine's InfiniteSampler yields from one generator), which the
        # warm-up must neither consume nor close.
        loader = runner.build_dataloader(
            copy.deepcopy(runner.cfg.train_dataloader), seed=runner.seed)
        batches = iter(loader)
        for i in range(self.iters):
            try:
                batch = next(batches)
            except StopIteration:  # a finite sampler: start it again
                batches = iter(loader)
                batch = next(batches)
            data = algorithm.data_preprocessor(batch, True)
            with torch.no_grad(), distiller.teacher_recorders:
                _run_teacher(algorithm, data['inputs'], data['data_samples'])
            terms = {}
            for name, loss in entries:
                mapping = distiller.loss_forward_mappings.get(name, {})
                inputs = {
                    arg: distiller.get_record(**record)
                    for arg, record in mapping.items() if not record.get('from_student', True)
                }
                for term, value in loss.teacher_side_terms(**inputs).items():
                    terms[f'{name}.{term}'] = value
            total = sum(terms.values())
            values = ', '.join(f'{k}={float(v.detach()):.4g}' for k, v in terms.items())
            if not torch.isfinite(total):
                raise FloatingPointError(
                    f'DiffKDWarmupHook: non-finite warm-up loss at iteration {i + 1} ({values}); '
                    'lower the warm-up lr (optimizer.lr) or check the teacher features.')
            optimizer.zero_grad()
            total.backward()
            if get_world_size() > 1:
                for p in params:
                    if p.grad is not None:
                        all_reduce(p.grad, op='mean')
            optimizer.step()
            if (i + 1) % self.log_interval == 0 or i + 1 == self.iters:
                print_log(
                    f'[DiffKDWarmupHook] iteration {i + 1}/{self.iters}: {values}',
                    logger='current')
        optimizer.zero_grad(set_to_none=True)

    @staticmethod
    def _load(path: str, key: str, modules: Dict[str, nn.Module]) -> bool:
        """Load cached warmed weights; a file that cannot be used is set aside (False)."""
        if not osp.exists(path):
            return False
        initial = {name: copy.deepcopy(module.state_dict()) for name, module in modules.items()}
        try:
            stored = load_checkpoint_file(path)
            if not isinstance(stored, dict) or stored.get('key') != key:
                raise CheckpointError(f'{path}: stored under another key')
            state = stored['state']
            if set(state) != set(modules):
                raise CheckpointError(f'{path}: holds other modules ({", ".join(sorted(state))})')
            for name, module in modules.items():
                module.load_state_dict(state[name], strict=True)
        except (CheckpointError, KeyError, RuntimeError, TypeError) as err:
            for name, module in modules.items():  # as before the attempt: warm up from there
                module.load_state_dict(initial[name])
            set_aside(
                path, f'[DiffKDWarmupHook] cached warm-up {path} cannot be used '
                f'({str(err).splitlines()[0].replace(path + ": ", "")[:160]})',
                'warming up again',
                say=lambda line: print_log(line, logger='current', level=logging.WARNING))
            return False
        return True
