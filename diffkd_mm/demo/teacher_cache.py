"""The demo's teachers: trained once per task and seed, and cached with what defines them.

A cached teacher is one checkpoint, ``dict(state_dict=..., meta=dict(demo_teacher=...))``: the
weights and the record of what produced them (the cache key and the settings it was computed
from) are written together, atomically, so neither can exist without the other. The cache is the
demo's own: a file that cannot be read, or whose stored key or settings are not the ones this
run asks for, is set aside (renamed next to it, never deleted) with a one-line warning, and the
teacher is trained again. A user never has to find and delete a cache file by hand.
"""
import hashlib
import json
import logging
import os.path as osp
from typing import Optional, Tuple

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import Runner

from .. import fileio
from ..engine.checkpoint import CheckpointError, load_checkpoint_file, save_checkpoint_atomic
from ..fileio import remove_stale_temporaries
from .configs import build_cfg, config_path, demo_cache_dir
from .console import Console
from .settings import TASK_METRICS, DemoSettings, Schedule
from .training import metric_value, train_run

#: Key of the teacher's record in the checkpoint's ``meta``.
META_KEY = 'demo_teacher'


def _set_aside(path: str, reason: str) -> Optional[str]:
    """Set a damaged or stale cached teacher aside (:func:`~diffkd_mm.fileio.set_aside`)."""
    return fileio.set_aside(
        path,
        f'[demo] cached teacher {path} {reason}',
        'training the teacher again',
        say=lambda line: print_log(line, logger='current', level=logging.WARNING))


def _problem(path: str, record: dict) -> Optional[str]:
    """Why the cache file ``path`` cannot stand for ``record``, or None if it can."""
    try:
        checkpoint = load_checkpoint_file(path)
    except CheckpointError as err:
        # the error's text after the file name, up to its advice
        return f'cannot be read ({str(err).split(": ", 1)[-1].split("; ")[0]})'
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get('state_dict'), dict):
        return 'holds no state_dict'
    stored = (checkpoint.get('meta') or {}).get(META_KEY)
    if not isinstance(stored, dict):
        return 'has no record of what it was trained with (written by an older diffkd_mm)'
    if stored.get('key') != record['key']:
        return f'was stored under key {stored.get("key")!r}, not {record["key"]!r}'
    differ = sorted(k for k in record if stored.get(k) != record[k])
    if differ:
        return f'was trained with other settings ({", ".join(differ)})'
    return None


def reuse_teacher(path: str, record: dict) -> bool:
    """Whether ``path`` holds the teacher ``record`` describes; a file that does not is set aside.

    Args:
        path (str): The cache file (it need not exist).
        record (dict): What defines the teacher: ``key`` (the cache key, also in the file name)
            and the plain settings it was computed from (JSON types).

    Returns:
        bool: True if the cached weights can be used; False if the teacher must be trained (no
        file, or a file that was set aside).
    """
    if not osp.isfile(path):
        return False
    problem = _problem(path, record)
    if problem is None:
        return True
    _set_aside(path, problem)
    return False


def store_teacher(checkpoint_file: str, path: str, record: dict) -> None:
    """Keep the weights of a checkpoint this run wrote, with ``record``, in one atomic write.

    The teacher's optimizer state and logs are not needed to distil from it. The file appears
    only complete (see :func:`save_checkpoint_atomic`); the partial files of earlier stores that
    were killed are deleted first.

    Args:
        checkpoint_file (str): The training run's checkpoint.
        path (str): The cache file to write.
        record (dict): As for :func:`reuse_teacher`.
    """
    state_dict = load_checkpoint_file(checkpoint_file)['state_dict']
    # what a run killed while storing this teacher left behind (tens of MB each)
    remove_stale_temporaries(path)
    save_checkpoint_atomic(dict(state_dict=state_dict, meta={META_KEY: dict(record)}), path)


def teacher_record(cfg: Config, sched: Schedule, task: str, seed: int, data_dir: str) -> dict:
    """What defines a teacher (JSON types): its cache key and the settings it is computed from."""
    text = json.dumps(
        dict(
            model=cfg.model.to_dict(),
            iters=sched.teacher_iters,
            seed=seed,
            data=osp.basename(data_dir),
            optim=cfg.optim_wrapper.to_dict()),
        sort_keys=True,
        default=str)
    key = hashlib.sha1(text.encode()).hexdigest()[:12]
    return dict(key=key, task=task, definition=json.loads(text))


def teacher_run(settings: DemoSettings, task: str, seed: int, data_dir: str,
                work_dir: str) -> Tuple[Config, dict, str]:
    """What the demo needs to train or reuse the teacher of ``task`` and ``seed``.

    Returns:
        tuple: The teacher's config (working in ``work_dir``), its record (cache key and the
        settings it is computed from) and the path of its file in the teacher cache.
    """
    sched = settings.schedules[task]
    cfg = build_cfg(
        config_path(settings.config_dir, task, 'teacher'), data_dir, work_dir, sched.teacher_iters,
        seed, settings.log_interval)
    record = teacher_record(cfg, sched, task, seed, data_dir)
    cached = osp.join(demo_cache_dir(settings), f'{task}_teacher_{record["key"]}.pth')
    return cfg, record, cached


def train_or_reuse_teacher(cfg: Config, record: dict, cached: str, task: str, title: str,
                           console: Console) -> dict:
    """Train the teacher of ``cfg``, or evaluate its cached weights ``cached``.

    A cached file that cannot be read or does not match ``record`` is set aside and the teacher
    retrained (:mod:`.teacher_cache`).
    """
    if reuse_teacher(cached, record):
        cfg.load_from = cached
        try:
            with console.quiet(osp.join(cfg.work_dir, 'console.log'), title):
                metrics = Runner.from_cfg(cfg).val()
        except CheckpointError as err:  # readable, but not weights of this model
            _set_aside(cached, f'does not fit the teacher model ({str(err).splitlines()[0]})')
        else:
            value = metric_value(metrics, task)
            console.say(f'[demo] {title}: reusing {cached}: {TASK_METRICS[task][0]} {value:.2f}')
            return dict(value=value, s_per_iter=None, curves={}, cached=True)
    iters = cfg.train_cfg.max_iters
    console.say(f'[demo] {title}: training {iters} iterations')
    cfg.load_from = None
    result = train_run(cfg, task, console, title)
    store_teacher(osp.join(cfg.work_dir, f'iter_{iters}.pth'), cached, record)
    return dict(result, cached=False)
