"""The main job: teacher -> student without KD, with FitNet and with DiffKD, measured and reported.

Every model is trained by mmengine's Runner from the configs in ``configs/diffkd/demo/`` on the
embedded synthetic dataset, with the same schedule and seed, and evaluated with the stock metric.
The teacher is trained once and cached (keyed by everything that defines it).
"""
import dataclasses
import hashlib
import json
import os
import os.path as osp
import time
from typing import Dict, Optional

import numpy as np
from mmengine.config import Config
from mmengine.runner import Runner

from ..datasets import ensure_dataset
from ..engine.checkpoint import CheckpointGuard, load_checkpoint_file, save_checkpoint_atomic

ROLES = ('teacher', 'student', 'fitnet', 'diffkd')
ROLE_TITLES = dict(teacher='Teacher', student='Student (no KD)', fitnet='Student + FitNet (MSE)',
                   diffkd='Student + DiffKD')
TASK_METRIC = dict(seg='mIoU')


@dataclasses.dataclass
class DemoSettings:
    """What one demo run does. The defaults are the README's main job (~10 min on 2 cores)."""
    task: str = 'seg'
    teacher_iters: int = 500
    student_iters: int = 400
    num_train: int = 400
    num_val: int = 100
    seed: int = 0
    config_dir: Optional[str] = None  # default: the package's configs/diffkd/demo
    cache_dir: Optional[str] = None  # default: $DIFFKD_CACHE_DIR or ~/.cache/diffkd_mm
    log_interval: int = 20

    def __post_init__(self):
        if self.task not in TASK_METRIC:
            raise ValueError(f'task must be one of {sorted(TASK_METRIC)}, got {self.task!r}')
        for name in ('teacher_iters', 'student_iters', 'num_train', 'num_val', 'log_interval'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')


def _default_config_dir() -> str:
    import diffkd_mm
    pkg = osp.dirname(diffkd_mm.__file__)
    for candidate in (osp.join(pkg, '.mim', 'configs', 'diffkd', 'demo'),
                      osp.join(osp.dirname(pkg), 'configs', 'diffkd', 'demo')):
        if osp.isdir(candidate):
            return candidate
    raise FileNotFoundError('configs/diffkd/demo not found next to the diffkd_mm package')


def _cache_dir(settings: DemoSettings) -> str:
    root = settings.cache_dir or os.environ.get('DIFFKD_CACHE_DIR') or osp.join(
        os.environ.get('XDG_CACHE_HOME', osp.expanduser('~/.cache')), 'diffkd_mm')
    return osp.join(root, 'demo')


def _build_cfg(settings: DemoSettings, role: str, data_dir: str, work_dir: str,
               max_iters: int, teacher_ckpt: Optional[str] = None) -> Config:
    cfg = Config.fromfile(osp.join(settings.config_dir, f'{settings.task}_{role}.py'))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_dir
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
    cfg.default_hooks.logger.interval = min(settings.log_interval, max_iters)
    cfg.randomness = dict(seed=settings.seed)
    cfg.work_dir = work_dir
    if teacher_ckpt is not None:
        cfg.model.teacher_ckpt = teacher_ckpt
    return cfg


def _train(cfg: Config, metric: str) -> Dict[str, object]:
    """Train, validate at the end, and return the metric, time per iteration and the logs."""
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    times = hub.get_scalar('train/time').data[0]
    skip = min(5, len(times) - 1)  # the first iterations include warm-up
    curves = {key[len('train/'):]: buf.data[0].tolist()
              for key, buf in hub.log_scalars.items()
              if key.startswith('train/') and key not in ('train/time', 'train/data_time', 'train/lr')}
    return dict(
        metric=float(hub.get_scalar(f'val/{metric}').current()),
        sec_per_iter=float(np.median(times[skip:])),
        curves=curves,
        runner=runner)


def _cache_weights(ckpt: str, cached: str) -> None:
    """Keep only the weights of a checkpoint this run wrote, atomically.

    The teacher's optimizer state and logs are not needed to distil from it; an interrupted
    write is never reused (the file appears only complete).
    """
    checkpoint = load_checkpoint_file(ckpt)
    save_checkpoint_atomic(dict(state_dict=checkpoint['state_dict']), cached)


def _teacher_key(settings: DemoSettings, cfg: Config, data_dir: str) -> str:
    defining = dict(model=cfg.model.to_dict(), iters=settings.teacher_iters, seed=settings.seed,
                    data=osp.basename(data_dir), optim=cfg.optim_wrapper.to_dict())
    return hashlib.sha1(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_demo(work_dir: str, settings: Optional[DemoSettings] = None) -> Dict[str, object]:
    """Run the whole demo into a new folder under ``work_dir`` and write the report there.

    Args:
        work_dir (str): Parent folder; the run goes to ``<work_dir>/<timestamp>/`` so nothing
            already there is overwritten.
        settings (DemoSettings, optional): What to run; defaults to the main job.

    Returns:
        dict: ``run_dir``, ``report`` (path of report.md) and ``results`` (per role: metric,
        seconds per iteration).
    """
    # Checkpoints of the demo load safely and are written atomically, as in tools/train.py.
    with CheckpointGuard():
        return _run_demo(work_dir, settings)


def _run_demo(work_dir: str, settings: Optional[DemoSettings]) -> Dict[str, object]:
    from .report import write_report
    started = time.perf_counter()
    settings = settings or DemoSettings()
    settings.config_dir = settings.config_dir or _default_config_dir()
    metric = TASK_METRIC[settings.task]
    run_dir = osp.join(osp.abspath(work_dir), time.strftime('%Y%m%d_%H%M%S'))
    suffix = 0
    while osp.exists(run_dir + (f'_{suffix}' if suffix else '')):
        suffix += 1
    run_dir += f'_{suffix}' if suffix else ''
    os.makedirs(run_dir)

    data_dir = ensure_dataset(settings.task, num_train=settings.num_train,
                              num_val=settings.num_val, seed=settings.seed)
    print(f'[demo] dataset: {data_dir}', flush=True)

    results = {}
    teacher_cfg = _build_cfg(settings, 'teacher', data_dir, osp.join(run_dir, 'teacher'),
                             settings.teacher_iters)
    cache = _cache_dir(settings)
    cached = osp.join(cache, f'{settings.task}_teacher_{_teacher_key(settings, teacher_cfg, data_dir)}.pth')
    if osp.isfile(cached):
        print(f'[demo] teacher: reusing {cached}', flush=True)
        teacher_cfg.load_from = cached
        runner = Runner.from_cfg(teacher_cfg)
        metrics = runner.val()
        results['teacher'] = dict(metric=float(metrics[metric]), sec_per_iter=None,
                                  curves={}, cached=True)
    else:
        print(f'[demo] teacher: training {settings.teacher_iters} iterations', flush=True)
        results['teacher'] = _train(teacher_cfg, metric)
        ckpt = osp.join(teacher_cfg.work_dir, f'iter_{settings.teacher_iters}.pth')
        _cache_weights(ckpt, cached)
        results['teacher']['cached'] = False

    for role in ROLES[1:]:
        print(f'[demo] {ROLE_TITLES[role]}: training {settings.student_iters} iterations',
              flush=True)
        cfg = _build_cfg(settings, role, data_dir, osp.join(run_dir, role),
                         settings.student_iters, teacher_ckpt=None if role == 'student' else cached)
        results[role] = _train(cfg, metric)

    report = write_report(run_dir, settings, results, metric, time.perf_counter() - started)
    for res in results.values():
        res.pop('runner', None)
    return dict(run_dir=run_dir, report=report, results=results)
