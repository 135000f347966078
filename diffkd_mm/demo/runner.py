"""The demo: per task and seed, a teacher, then students without KD and with each KD method.

Every model is trained by mmengine's Runner from the configs in ``configs/diffkd/demo/`` on the
embedded synthetic dataset of its seed, with the same schedule, and evaluated with the stock
metric (mmdet's ``CocoMetric``, mmseg's ``IoUMetric``). A teacher is trained once per task and
seed and cached (keyed by everything that defines it; a damaged cache is rebuilt). Results are
plain records; the report is written from them.

The parts, one concept each: :mod:`.configs` (finding and filling in configs), :mod:`.training`
(one run), :mod:`.teacher_cache` (the teachers), :mod:`.records` (a finished run's record, for
resuming), :mod:`.task` (one task and seed), :mod:`.run_pool` (processes in parallel) and this
module, the entry point.
"""
import os
import os.path as osp
import time
from typing import Optional

from ..engine.checkpoint import CheckpointGuard
from ..fileio import DiskFullError
from .configs import check_configs
from .console import Console
from .report import write_report
from .run_pool import run_task_seeds_parallel, run_units_parallel
from .settings import DemoSettings
from .task import run_task


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


def run_demo(work_dir: str,
             settings: Optional[DemoSettings] = None,
             verbose: bool = False,
             resume: Optional[str] = None) -> dict:
    """Run the demo into a new folder under ``work_dir`` and write the report there.

    Args:
        work_dir (str): Parent folder; the run goes to ``<work_dir>/<timestamp>/``.
        settings (DemoSettings, optional): What to run; defaults to the demo.
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
            records = run_units_parallel(settings, run_dir, console)
        elif settings.jobs > 1 and len(settings.tasks) * len(settings.seeds) > 1:
            records = run_task_seeds_parallel(settings, run_dir, console, verbose)
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
