"""Runs of the main job in parallel one by one, not task-seed by task-seed.

A task-seed is a teacher and then its students: trained in one process they take the sum of
their times. With many cores (or one GPU shared by many processes, each driving it from a core
of its own), every run can have a process: each teacher, and each student without KD, starts at
once; the KD students of a task-seed start when its teacher is done. One line per finished run
gives the time so far and an estimate of the time left.
"""
import multiprocessing
import os
import os.path as osp
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Dict, List, Tuple

from ..engine.checkpoint import CheckpointGuard
from ..fileio import DiskFullError
from .console import Console
from .runner import earlier_record, failure_reason, plan_task, raise_failures, run_one, say_finished
from .settings import TASK_METRICS, DemoSettings

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

    Finished runs of a resumed folder are reused as :func:`~.runner.run_task` reuses them. A run
    that fails does not stop the others (a KD student whose teacher failed is not started); the
    failures are raised together at the end, after every other run has finished.

    Returns:
        list[dict]: The records, in the order of :func:`~.runner.run_task`'s (per task-seed, the
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
