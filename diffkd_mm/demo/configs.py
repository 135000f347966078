"""The demo's configs: where they are, and each run's config filled in from its settings."""
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config

from ..fileio import cache_root
from .settings import DemoSettings


def default_config_dir() -> str:
    """The checkout's ``configs/diffkd/demo`` (preferred: it is what a user edits), else the
    copy installed inside the package."""
    pkg = osp.dirname(osp.dirname(osp.abspath(__file__)))  # the diffkd_mm package
    for candidate in (osp.join(osp.dirname(pkg), 'configs', 'diffkd',
                               'demo'), osp.join(pkg, '.mim', 'configs', 'diffkd', 'demo')):
        if osp.isdir(candidate):
            return candidate
    raise FileNotFoundError('configs/diffkd/demo not found next to the diffkd_mm package')


def demo_cache_dir(settings: DemoSettings) -> str:
    return osp.join(settings.cache_dir or cache_root(), 'demo')


def config_path(config_dir: str, task: str, method: str) -> str:
    """``<config_dir>/<task>_<method>.py``, or a FileNotFoundError naming the method."""
    path = osp.join(config_dir, f'{task}_{method}.py')
    if not osp.isfile(path):
        known = sorted(f[len(task) + 1:-3] for f in os.listdir(config_dir)
                       if f.startswith(f'{task}_') and f.endswith('.py'))
        raise FileNotFoundError(f'methods: no config {path} for method {method!r} of task '
                                f'{task!r}; known: {known}')
    return path


def build_cfg(path: str,
              data_dir: str,
              work_dir: str,
              max_iters: int,
              seed: int,
              log_interval: int,
              teacher_ckpt: Optional[str] = None) -> Config:
    """A demo config with its data, schedule length, seed and teacher filled in."""
    cfg = Config.fromfile(path)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_dir
    for evaluator in ('val_evaluator', 'test_evaluator'):
        if cfg[evaluator].get('ann_file'):  # CocoMetric reads the annotations itself
            cfg[evaluator].ann_file = osp.join(data_dir, cfg[evaluator].ann_file)
    old_iters = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    # The schedule that ended with the config's run ends with this one; none runs past it, and
    # a warm-up longer than a short (--quick) run is cut to fit.
    for sched in cfg.param_scheduler:
        if sched.get('end') == old_iters:
            sched.end = max_iters
        sched.begin = min(sched.get('begin', 0), max_iters - 1)
        if sched.get('end', max_iters) > max_iters:
            sched.end = max_iters
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.default_hooks.logger.interval = min(log_interval, max_iters)
    cfg.randomness = dict(seed=seed)
    cfg.work_dir = work_dir
    if teacher_ckpt is not None:
        cfg.model.teacher_ckpt = teacher_ckpt
    return cfg


def set_loss_weights(cfg: Config, weight: float) -> None:
    """Set ``loss_weight`` of every entry of ``model.distiller.distill_losses`` that has one
    (DiffKD's diffusion-only entries have none: their terms keep their weights)."""
    for entry in cfg.model.distiller.distill_losses.values():
        if entry.get('type') != 'DiffKDDiffusionLoss':
            entry.loss_weight = weight


def check_configs(settings: DemoSettings) -> None:
    """Raise FileNotFoundError unless every (task, method) of ``settings`` has its config:
    before any data is drawn or model trained."""
    settings.config_dir = settings.config_dir or default_config_dir()
    for task in settings.tasks:
        for method in ('teacher', ) + tuple(settings.methods):
            config_path(settings.config_dir, task, method)
