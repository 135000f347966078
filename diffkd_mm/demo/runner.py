"""The main job: per task and seed, a teacher, then students without KD and with each KD method.

Every model is trained by mmengine's Runner from the configs in ``configs/diffkd/demo/`` on the
embedded synthetic dataset of its seed, with the same schedule, and evaluated with the stock
metric (mmdet's ``CocoMetric``, mmseg's ``IoUMetric``). A teacher is trained once per task and
seed and cached (keyed by everything that defines it; a damaged cache is rebuilt). Results are
plain records; the report is written from them.
"""
import dataclasses
import hashlib
import json
import multiprocessing
import os
import os.path as osp
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Dict, List, Optional, Tuple

import numpy as np
from mmengine.config import Config
from mmengine.runner import Runner

from .. import fileio
from ..datasets import ensure_dataset
from ..engine.checkpoint import CheckpointError, CheckpointGuard
from ..engine.kd_diagnostics import KDDiagnosticsHook
from ..fileio import DiskFullError, atomic_write_text, cache_root
from ..models.losses import DiffKDLoss
from ..visualization import denoising_figure, record_denoising
from .console import Console, clock
from .report import write_report
from .settings import BENCHMARK_VERSION, TASK_METRICS, DemoSettings, Schedule
from .teacher_cache import reuse_teacher, set_aside, store_teacher

#: Logged scalars that are not curves worth plotting.
_NOT_CURVES = ('train/time', 'train/data_time', 'train/lr')
#: Each finished run leaves its record in its folder, under this name; a resumed run reuses it.
RECORD_FILE = 'record.json'
#: With parallel task-seeds, the least seconds between two progress lines of one run.
_SHARED_LINE_EVERY_S = 300.0


class ResumeConflict(ValueError):
    """A run folder holds the record of a run built from another config than asked for now."""


class TaskSeedsFailed(RuntimeError):
    """Task-seeds of a parallel run failed; the records of every finished run are kept."""


def default_config_dir() -> str:
    """The checkout's ``configs/diffkd/demo`` (preferred: it is what a user edits), else the
    copy installed inside the package."""
    pkg = osp.dirname(osp.dirname(osp.abspath(__file__)))  # the diffkd_mm package
    for candidate in (osp.join(osp.dirname(pkg), 'configs', 'diffkd',
                               'demo'), osp.join(pkg, '.mim', 'configs', 'diffkd', 'demo')):
        if osp.isdir(candidate):
            return candidate
    raise FileNotFoundError('configs/diffkd/demo not found next to the diffkd_mm package')


def _cache_dir(settings: DemoSettings) -> str:
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


def _metric(metrics: Dict[str, float], task: str) -> float:
    _, key, scale = TASK_METRICS[task]
    return float(metrics[key]) * scale


def _train(cfg: Config,
           task: str,
           console: Console,
           title: str,
           picture: Optional[str] = None) -> dict:
    """Train, validate at the end; return the metric, seconds per iteration and the curves.

    The run's output goes to ``<work_dir>/console.log`` (besides mmengine's own log and config
    there); the terminal shows one progress line, ended with the metric. With ``picture``, the
    DiffKD feature maps of a validation batch are drawn there while the trained model is at hand.
    """
    progress = console.progress(title, cfg.train_cfg.max_iters)
    with console.quiet(osp.join(cfg.work_dir, 'console.log'), title):
        runner = Runner.from_cfg(cfg)
        runner.register_hook(progress)
        diagnostics = KDDiagnosticsHook() if cfg.model.get('distiller') else None
        if diagnostics is not None:
            runner.register_hook(diagnostics)
        runner.train()
        hub = runner.message_hub
        times = hub.get_scalar('train/time').data[0]
        skip = min(5, len(times) - 1)  # the first iterations include warm-up
        curves = {
            key[len('train/'):]: buf.data[0].tolist()
            for key, buf in hub.log_scalars.items()
            if key.startswith('train/') and key not in _NOT_CURVES
        }
        name, key, _ = TASK_METRICS[task]
        logged = hub.log_scalars.get(f'val/{key}')
        value = 0.0 if logged is None else _metric({key: logged.current()}, task)
        result = dict(value=value, s_per_iter=float(np.median(times[skip:])), curves=curves)
        if diagnostics is not None:
            result['diagnostics'] = diagnostics.records
        if picture is not None and _feature_picture(runner, picture):
            result['picture'] = picture
    # CocoMetric logs nothing for a detector that detected nothing
    progress.finish(f'{name} {value:.2f}'
                    if logged is not None else f'{name} 0 (no val/{key} was logged: no detections)')
    return result


def _feature_picture(runner: Runner, path: str) -> bool:
    algorithm = runner.model
    losses = getattr(getattr(algorithm, 'distiller', None), 'distill_losses', {})
    name = next((n for n, m in losses.items() if isinstance(m, DiffKDLoss)), None)
    if name is None:
        return False
    batch = next(iter(runner.val_dataloader))
    denoising_figure(record_denoising(algorithm, batch, name), path)
    return True


def _teacher_record(cfg: Config, sched: Schedule, task: str, seed: int, data_dir: str) -> dict:
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
    """What the main job needs to train or reuse the teacher of ``task`` and ``seed``.

    Returns:
        tuple: The teacher's config (working in ``work_dir``), its record (cache key and the
        settings it is computed from) and the path of its file in the teacher cache.
    """
    sched = settings.schedules[task]
    cfg = build_cfg(
        config_path(settings.config_dir, task, 'teacher'), data_dir, work_dir, sched.teacher_iters,
        seed, settings.log_interval)
    record = _teacher_record(cfg, sched, task, seed, data_dir)
    cached = osp.join(_cache_dir(settings), f'{task}_teacher_{record["key"]}.pth')
    return cfg, record, cached


def _teacher(cfg: Config, record: dict, cached: str, task: str, title: str,
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
            set_aside(cached, f'does not fit the teacher model ({str(err).splitlines()[0]})')
        else:
            value = _metric(metrics, task)
            console.say(f'[demo] {title}: reusing {cached}: {TASK_METRICS[task][0]} {value:.2f}')
            return dict(value=value, s_per_iter=None, curves={}, cached=True)
    iters = cfg.train_cfg.max_iters
    console.say(f'[demo] {title}: training {iters} iterations')
    cfg.load_from = None
    result = _train(cfg, task, console, title)
    store_teacher(osp.join(cfg.work_dir, f'iter_{iters}.pth'), cached, record)
    return dict(result, cached=False)


def run_digest(cfg: Config, places: Dict[str, str]) -> str:
    """SHA-256 of everything a run is built from: its whole config, with data, schedule, seed,
    teacher and loss weights filled in.

    Args:
        cfg (Config): The run's config.
        places (dict): ``{name: folder}``: each folder is written as ``<name>`` in the text
            hashed, so that the same run gives the same digest from another cache or data
            folder (another machine).
    """
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    for name, folder in sorted(places.items(), key=lambda item: -len(item[1])):
        text = text.replace(folder, f'<{name}>')
    return hashlib.sha256(text.encode()).hexdigest()


def _earlier_run(folder: str, digest: str, title: str, console: Console) -> Optional[dict]:
    """The record a finished run left in ``folder``, or None if it has none (or a damaged one,
    which is set aside, with a warning, to be trained again).

    Raises:
        ResumeConflict: the run there was built from another config.
    """
    path = osp.join(folder, RECORD_FILE)
    if not osp.exists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
        made_from = record.pop('run_digest')
        float(record['value'])
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        aside = fileio.set_aside(path)
        console.say(f'[demo] {title}: WARNING: the record of its earlier run {path} cannot be '
                    f'read ({err!r}); set aside as {osp.basename(aside or path)}, training it '
                    'again')
        return None
    if made_from != digest:
        raise ResumeConflict(
            f'{title} in {osp.dirname(folder)} was run from another config or other settings '
            f'(schedule, methods\' configs, loss weight, teacher); resume a run folder with the '
            'options it was started with, or start a new one without --resume')
    # Same config, so the same benchmark (records of older versions of this code lack the field)
    record.setdefault('benchmark_version', BENCHMARK_VERSION)
    return record


def _save_run(folder: str, record: dict, digest: str) -> None:
    """Keep a finished run's record in its folder, for a resumed run to reuse."""
    atomic_write_text(
        osp.join(folder, RECORD_FILE),
        json.dumps(dict(record, run_digest=digest), default=str) + '\n')


@dataclasses.dataclass
class TaskSeedPlan:
    """Every run of one task and seed, built but not trained: what :func:`run_task` and the
    run-level pool (:mod:`.run_pool`) share.

    Attributes:
        task (str), seed (int): The task-seed.
        task_dir (str): ``<run_dir>/<task>_seed<seed>``; each run works in ``<task_dir>/<method>``.
        schedule (dict): The schedule's fields, as every record carries them.
        teacher_def (dict): The teacher's cache key and definition.
        cached (str): The teacher's file in the teacher cache.
        runs (dict): ``{method: (config, run digest)}``, the teacher first.
    """
    task: str
    seed: int
    task_dir: str
    schedule: dict
    teacher_def: dict
    cached: str
    runs: Dict[str, Tuple[Config, str]]


def plan_task(settings: DemoSettings,
              task: str,
              seed: int,
              run_dir: str,
              console: Optional[Console] = None) -> TaskSeedPlan:
    """Draw (or reuse) the data of ``task`` and ``seed`` and build the config of every run;
    ``console`` is told where the data is."""
    sched = settings.schedules[task]
    data_dir = ensure_dataset(task, num_train=sched.num_train, num_val=sched.num_val, seed=seed)
    if console is not None:
        console.say(f'[demo] {task} seed {seed} dataset: {data_dir}')
    task_dir = osp.join(run_dir, f'{task}_seed{seed}')
    places = dict(data=data_dir, run=task_dir, cache=_cache_dir(settings))
    teacher_cfg, teacher_def, cached = teacher_run(settings, task, seed, data_dir,
                                                   osp.join(task_dir, 'teacher'))
    runs = {'teacher': (teacher_cfg, run_digest(teacher_cfg, places))}
    for method in settings.methods:
        cfg = build_cfg(
            config_path(settings.config_dir, task, method),
            data_dir,
            osp.join(task_dir, method),
            sched.student_iters,
            seed,
            settings.log_interval,
            teacher_ckpt=None if method == 'student' else cached)
        if settings.loss_weight is not None and method != 'student':
            set_loss_weights(cfg, settings.loss_weight)
        runs[method] = (cfg, run_digest(cfg, places))
    # Every record says which schedule it comes from: results of different schedules are
    # never paired or averaged together.
    return TaskSeedPlan(task, seed, task_dir, dataclasses.asdict(sched), teacher_def, cached, runs)


def earlier_record(plan: TaskSeedPlan, method: str, console: Console) -> Optional[dict]:
    """The record a finished run of ``method`` left in its folder, if any (see
    :func:`_earlier_run`)."""
    cfg, digest = plan.runs[method]
    return _earlier_run(cfg.work_dir, digest, f'{plan.task} seed {plan.seed} {method}', console)


def run_one(plan: TaskSeedPlan,
            method: str,
            console: Console,
            earlier: Optional[dict] = None) -> dict:
    """Train (or, for a cached teacher, evaluate) one run of ``plan`` and keep its record.

    ``earlier``: the teacher's record from an earlier run of the folder, returned instead of a
    new one when its cached weights are reused (it keeps the training's seconds per iteration).
    """
    cfg, digest = plan.runs[method]
    title = f'{plan.task} seed {plan.seed} {method}'
    if method == 'teacher':
        result = _teacher(cfg, plan.teacher_def, plan.cached, plan.task, title, console)
        if result['cached'] and earlier is not None:
            return earlier
    else:
        picture = osp.join(plan.task_dir,
                           f'{method}_features.png') if method.startswith('diffkd') else None
        result = _train(cfg, plan.task, console, title, picture)
    record = dict(
        task=plan.task,
        seed=plan.seed,
        method=method,
        metric=TASK_METRICS[plan.task][0],
        benchmark_version=BENCHMARK_VERSION,
        device=device_name(),
        **plan.schedule,
        **result)
    _save_run(cfg.work_dir, record, digest)
    return record


def device_name() -> str:
    """What trained a run, for its record: the GPU's name, else ``'cpu'`` (mmengine's Runner
    takes the GPU when there is one)."""
    import torch
    return torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'


def run_task(settings: DemoSettings,
             task: str,
             seed: int,
             run_dir: str,
             console: Optional[Console] = None) -> List[dict]:
    """Teacher and every student of one task and seed.

    Each finished run leaves its record in its folder (``<run_dir>/<task>_seed<seed>/<method>``);
    a run whose folder already holds a record of the same config is not trained again (see
    ``resume`` of :func:`run_demo`). ``console`` (see :class:`Console`) decides what reaches the
    terminal; without it, every run's full output does.

    Returns:
        list[dict]: One record per model: ``task``, ``seed``, ``method``, ``metric`` (its
        name), the schedule (``teacher_iters``, ``student_iters``, ``num_train``,
        ``num_val``), ``value`` (percent), ``s_per_iter`` (None for a cached teacher),
        ``curves`` (logged scalars per iteration), ``diagnostics`` for KD students (see
        :class:`~diffkd_mm.engine.KDDiagnosticsHook`), and ``picture`` for DiffKD students.

    Raises:
        ResumeConflict: a folder holds the record of a run built from another config.
    """
    console = console or Console(verbose=True)
    plan = plan_task(settings, task, seed, run_dir, console)
    name = TASK_METRICS[task][0]
    earlier = {method: earlier_record(plan, method, console) for method in plan.runs}

    records = []
    for method in plan.runs:
        title = f'{task} seed {seed} {method}'
        # The teacher is needed again unless every student of this seed is done.
        done = earlier[method]
        if method == 'teacher' and not all(earlier.values()):
            done = None
        if done is not None:
            console.say(f'[demo] {title}: done in an earlier run, {name} {done["value"]:.2f}')
            records.append(done)
            continue
        records.append(run_one(plan, method, console, earlier[method]))
    return records


def new_run_dir(work_dir: str) -> str:
    """A new ``<work_dir>/<timestamp>[_n]`` folder: nothing of an earlier run is touched."""
    run_dir = osp.join(osp.abspath(work_dir), time.strftime('%Y%m%d_%H%M%S'))
    candidate, suffix = run_dir, 0
    while True:
        try:
            os.makedirs(candidate)
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = f'{run_dir}_{suffix}'


def check_configs(settings: DemoSettings) -> None:
    """Raise FileNotFoundError unless every (task, method) of ``settings`` has its config:
    before any data is drawn or model trained."""
    settings.config_dir = settings.config_dir or default_config_dir()
    for task in settings.tasks:
        for method in ('teacher', ) + tuple(settings.methods):
            config_path(settings.config_dir, task, method)


def _task_seed_in_worker(settings: DemoSettings, task: str, seed: int, run_dir: str, threads: int,
                         verbose: bool) -> List[dict]:
    """:func:`run_task` in a worker process of a parallel run, on ``threads`` threads."""
    import torch
    torch.set_num_threads(threads)
    with CheckpointGuard(), Console(
            verbose, shared=True, line_every=_SHARED_LINE_EVERY_S) as console:
        return run_task(settings, task, seed, run_dir, console)


def _run_parallel(settings: DemoSettings, run_dir: str, console: Console,
                  verbose: bool) -> List[dict]:
    """Every task-seed, ``settings.jobs`` at a time, each in its own process.

    The processes share the cores (``cpu_count // jobs`` threads each); a line per finished
    task-seed gives the time so far and the time left. A task-seed that fails does not stop the
    others: their records are kept, and the failures are raised together at the end.
    """
    units = [(task, seed) for task in settings.tasks for seed in settings.seeds]
    jobs = min(settings.jobs, len(units))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    console.say(f'[demo] {len(units)} task-seeds, {jobs} at a time, {threads} thread(s) each; '
                f'progress lines every {_SHARED_LINE_EVERY_S / 60:.0f} min')
    started = time.perf_counter()
    done, failed, disk_full = {}, [], None
    # spawn: a fresh interpreter per worker (no forked torch threads or open files).
    context = multiprocessing.get_context('spawn')
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {
            pool.submit(_task_seed_in_worker, settings, task, seed, run_dir, threads, verbose):
            (task, seed)
            for task, seed in units
        }
        for future in as_completed(futures):
            task, seed = futures[future]
            try:
                done[(task, seed)] = future.result()
                outcome = 'done'
            except Exception as err:  # reported with the others at the end
                disk_full = err if isinstance(err, DiskFullError) else disk_full
                failed.append(f'{task} seed {seed} ({failure_reason(err)})')
                outcome = f'FAILED, its logs: {osp.join(run_dir, f"{task}_seed{seed}")}'
            finished = len(done) + len(failed)
            say_finished(console, started, finished, len(units),
                         f'task-seeds finished: {task} seed {seed} {outcome}')
    raise_failures(failed, disk_full, len(units), 'task-seeds', run_dir)
    return [record for unit in units for record in done[unit]]


def failure_reason(err: Exception) -> str:
    """``'<type>: <first line>'`` of a worker's exception, for the failures' summary."""
    return f'{type(err).__name__}: {(str(err).splitlines() or [""])[0]}'


def say_finished(console: Console, started: float, finished: int, total: int, what: str) -> None:
    """``[demo] <finished>/<total> <what>; elapsed ..., ETA ...``: a parallel run's progress."""
    elapsed = time.perf_counter() - started
    left = elapsed / finished * (total - finished)
    console.say(f'[demo] {finished}/{total} {what}; elapsed {clock(elapsed)}, ETA {clock(left)}')


def raise_failures(failed: List[str], disk_full: Optional[Exception], total: int, units: str,
                   run_dir: str) -> None:
    """After a parallel run: a full disk first, then every failure at once (if any)."""
    if disk_full is not None:
        raise disk_full
    if failed:
        raise TaskSeedsFailed(f'{len(failed)} of {total} {units} failed: {"; ".join(failed)}. '
                              'The finished runs are kept: run again with --resume '
                              f'{run_dir}')


def run_demo(work_dir: str,
             settings: Optional[DemoSettings] = None,
             verbose: bool = False,
             resume: Optional[str] = None) -> dict:
    """Run the main job into a new folder under ``work_dir`` and write the report there.

    Args:
        work_dir (str): Parent folder; the run goes to ``<work_dir>/<timestamp>/``.
        settings (DemoSettings, optional): What to run; defaults to the main job.
        verbose (bool): Stream every run's full output to the terminal; by default each run
            shows one progress line and writes its output to ``console.log`` in its folder.
        resume (str, optional): The folder of an earlier run (interrupted, or with fewer seeds
            or methods) to go on with instead of a new folder: its finished runs are reused,
            the others trained. Its runs must have been made with the same settings.

    Returns:
        dict: ``run_dir``, ``report`` (path of report.md), ``results`` (path of the
        records' JSON) and ``records`` (see :func:`run_task`, without curves).

    Raises:
        ResumeConflict: ``resume`` holds a run made with other settings.
        TaskSeedsFailed: with ``settings.jobs > 1``, task-seeds that failed.
    """
    started = time.perf_counter()
    settings = settings or DemoSettings()
    check_configs(settings)
    if resume is not None and not osp.isdir(resume):
        raise FileNotFoundError(f'--resume {resume}: no such run folder')
    run_dir = osp.abspath(resume) if resume is not None else new_run_dir(work_dir)
    # Checkpoints of the demo load safely and are written atomically, as in tools/train.py.
    with CheckpointGuard(), Console(verbose) as console:
        console.say(f'[demo] run folder: {run_dir}' + (' (resumed)' if resume else ''))
        if settings.jobs > 1 and settings.parallel == 'run':
            from .run_pool import run_units_parallel  # it builds on this module
            records = run_units_parallel(settings, run_dir, console)
        elif settings.jobs > 1 and len(settings.tasks) * len(settings.seeds) > 1:
            records = _run_parallel(settings, run_dir, console, verbose)
        else:
            records = [
                record for task in settings.tasks for seed in settings.seeds
                for record in run_task(settings, task, seed, run_dir, console)
            ]
    try:
        paths = write_report(
            run_dir, settings, records, time.perf_counter() - started, resumed=resume is not None)
    except DiskFullError:
        # The models are trained: their numbers must not be lost with the report.
        print('[demo] the report could not be written; the results were:', flush=True)
        for r in records:
            print(
                f'[demo]   {r["task"]} seed {r["seed"]} {r["method"]}: {r["metric"]} '
                f'{r["value"]:.2f}',
                flush=True)
        raise
    return dict(
        run_dir=run_dir,
        **paths,
        records=[{
            k: v
            for k, v in r.items() if k != 'curves'
        } for r in records])
