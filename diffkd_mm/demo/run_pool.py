"""The demo in parallel processes: task-seed by task-seed, or run by run.

``jobs`` processes share the cores (``cpu_count // jobs`` threads each).
``parallel='task-seed'``: each process trains a task-seed, its teacher and then its students, so
a task-seed takes the sum of their times. ``parallel='run'``: with many cores (or one GPU shared
by many processes, each driving it from a core of its own), every run has a process: each
teacher, and each student without KD, starts at once; the KD students of a task-seed start when
its teacher is done. One line per finished task-seed or run gives the time so far and an
estimate of the time left; a failure does not stop the others, and all are reported at the end.
"""
import multiprocessing
import os
import os.path as osp
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from typing import Dict, List, Optional, Tuple

from ..engine.checkpoint import CheckpointGuard
from ..fileio import DiskFullError
from .console import Console, clock
from .settings import TASK_METRICS, DemoSettings
from .task import earlier_record, plan_task, run_one, run_task

#: With parallel task-seeds, the least seconds between two progress lines of one run.
SHARED_LINE_EVERY_S = 300.0

Unit = Tuple[str, int, str]  # task, seed, method


def _run_in_worker(settings: DemoSettings, unit: Unit, run_dir: str, threads: int) -> dict:
    """One run in a worker process, on ``threads`` threads, its output in its folder only."""
    import torch
    torch.set_num_threads(threads)
    task, seed, method = unit
    with CheckpointGuard(), Console(False, shared=True, line_every=1e9) as console:
        return run_one(plan_task(settings, task, seed, run_dir), method, console)


def run_units_parallel(settings: DemoSettings, run_dir: str, console: Console) -> List[dict]:
    """Every run of every task-seed, ``settings.jobs`` at a time, one process per run.

    Finished runs of a resumed folder are reused as :func:`~.task.run_task` reuses them. A run
    that fails does not stop the others (a KD student whose teacher failed is not started); the
    failures are raised together at the end, after every other run has finished.

    Returns:
        list[dict]: The records, in the order of :func:`~.task.run_task`'s (per task-seed, the
        teacher first).
    """
    plans, records, pending_kd = {}, {}, {}
    for task in settings.tasks:
        for seed in settings.seeds:
            # In this process, before any worker: drawing the data is not safe to race.
            plan = plan_task(settings, task, seed, run_dir, console)
            plans[(task, seed)] = plan
            for method in plan.runs:
                done = earlier_record(plan, method, console)
                if done is not None:
                    records[(task, seed, method)] = done
    ready = []
    for (task, seed), plan in plans.items():
        kd = [m for m in plan.runs if m not in ('teacher', 'student')]
        todo = [m for m in plan.runs if (task, seed, m) not in records]
        teacher_needed = any(m in todo for m in kd) and not osp.isfile(plan.cached)
        if 'teacher' in todo or teacher_needed:
            ready.append((task, seed, 'teacher'))
            pending_kd[(task, seed)] = [m for m in kd if m in todo]
        else:
            ready += [(task, seed, m) for m in kd if m in todo]
        if 'student' in todo:
            ready.append((task, seed, 'student'))
    total = len(ready) + sum(len(v) for v in pending_kd.values())
    if not total:
        return [records[(t, s, m)] for (t, s), plan in plans.items() for m in plan.runs]
    jobs = min(settings.jobs, total)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    console.say(f'[demo] {total} runs, {jobs} at a time, {threads} thread(s) each; each run\'s '
                f'output in its folder under {run_dir}')
    started, finished, failed, disk_full = time.perf_counter(), 0, [], None
    context = multiprocessing.get_context('spawn')
    # The pool is fed one run per free process, in the order of the methods (teachers first,
    # then the students in the order asked for): when time is short, the runs asked for first
    # are the ones that finish.
    order = {m: i for i, m in enumerate(next(iter(plans.values())).runs)}
    queue = sorted(ready, key=lambda unit: order[unit[2]])
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        running: Dict = {}
        while queue or running:
            while queue and len(running) < jobs:
                unit = queue.pop(0)
                running[pool.submit(_run_in_worker, settings, unit, run_dir, threads)] = unit
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                unit = running.pop(future)
                task, seed, method = unit
                finished += 1
                try:
                    record = future.result()
                except Exception as err:  # reported with the others at the end
                    disk_full = err if isinstance(err, DiskFullError) else disk_full
                    failed.append(f'{task} seed {seed} {method} ({failure_reason(err)})')
                    outcome = 'FAILED'
                    skipped = pending_kd.pop((task, seed), []) if method == 'teacher' else []
                    failed += [f'{task} seed {seed} {m} (its teacher failed)' for m in skipped]
                    finished += len(skipped)
                else:
                    records[unit] = record
                    outcome = f'{TASK_METRICS[task][0]} {record["value"]:.2f}'
                    if method == 'teacher':
                        queue += [(task, seed, m) for m in pending_kd.pop((task, seed), [])]
                        queue.sort(key=lambda unit: order[unit[2]])
                say_finished(console, started, finished, total,
                             f'runs: {task} seed {seed} {method} {outcome}')
    raise_failures(failed, disk_full, total, 'runs', run_dir)
    return [
        records[(t, s, m)] for (t, s), plan in plans.items() for m in plan.runs
        if (t, s, m) in records
    ]


class TaskSeedsFailed(RuntimeError):
    """Task-seeds of a parallel run failed; the records of every finished run are kept."""


def _task_seed_in_worker(settings: DemoSettings, task: str, seed: int, run_dir: str, threads: int,
                         verbose: bool) -> List[dict]:
    """:func:`run_task` in a worker process of a parallel run, on ``threads`` threads."""
    import torch
    torch.set_num_threads(threads)
    with CheckpointGuard(), Console(
            verbose, shared=True, line_every=SHARED_LINE_EVERY_S) as console:
        return run_task(settings, task, seed, run_dir, console)


def run_task_seeds_parallel(settings: DemoSettings, run_dir: str, console: Console,
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
                f'progress lines every {SHARED_LINE_EVERY_S / 60:.0f} min')
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
