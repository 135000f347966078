"""One task and seed of the demo: its data, every run's config, and the runs themselves."""
import dataclasses
import os.path as osp
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config

from ..datasets import ensure_dataset
from .configs import build_cfg, config_path, demo_cache_dir, set_loss_weights
from .console import Console
from .records import earlier_run, run_digest, save_run
from .settings import BENCHMARK_VERSION, TASK_METRICS, DemoSettings
from .teacher_cache import teacher_run, train_or_reuse_teacher
from .training import device_name, train_run


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
    places = dict(data=data_dir, run=task_dir, cache=demo_cache_dir(settings))
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
    :func:`earlier_run`)."""
    cfg, digest = plan.runs[method]
    return earlier_run(cfg.work_dir, digest, f'{plan.task} seed {plan.seed} {method}', console)


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
        result = train_or_reuse_teacher(cfg, plan.teacher_def, plan.cached, plan.task, title,
                                        console)
        if result['cached'] and earlier is not None:
            return earlier
    else:
        picture = osp.join(plan.task_dir,
                           f'{method}_features.png') if method.startswith('diffkd') else None
        result = train_run(cfg, plan.task, console, title, picture)
    record = dict(
        task=plan.task,
        seed=plan.seed,
        method=method,
        metric=TASK_METRICS[plan.task][0],
        benchmark_version=BENCHMARK_VERSION,
        device=device_name(),
        **plan.schedule,
        **result)
    save_run(cfg.work_dir, record, digest)
    return record


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
