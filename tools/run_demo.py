"""The demo: real DiffKD distillation on the embedded detection and segmentation data, on CPU.

Per task and seed: draws the data, trains a teacher (or reuses its cached weights), then the same
narrow student without KD, with FitNet, with mmrazor's PKD and with DiffKD on one schedule,
evaluates each with the stock metric (COCO bbox mAP, mIoU), and writes a report (tables with
mean and spread over seeds, loss curves, noise-adapter weight, feature pictures) and the records
as JSON into a new folder under --work-dir.
"""
import argparse
import dataclasses
import os
import sys

import diffkd_mm  # noqa: F401  (mmrazor stand-in + registrations first)
from diffkd_mm.demo import (METHODS, SCHEDULE_PROFILES, SCHEDULES, TASKS, DemoSettings,
                            ResumeConflict, TaskSeedsFailed, check_configs, run_demo)
from diffkd_mm.engine import DEVICE_CHOICES, exit_on_full_disk, select_device


def _describe(schedules) -> str:
    return '; '.join(f'{task}: teacher {s.teacher_iters} it, students {s.student_iters} it, '
                     f'{s.num_val} val images' for task, s in schedules.items())


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument(
        '--work-dir',
        default='work_dirs/diffkd_demo',
        help='parent folder; each run writes a new timestamped sub-folder')
    p.add_argument(
        '--task', default='all', choices=TASKS + ('all', ), help='det, seg or all (default: all)')
    p.add_argument(
        '--seeds',
        type=int,
        nargs='+',
        default=[0],
        help='seeds; each draws its own data and trains its own teacher (default: 0)')
    p.add_argument(
        '--methods',
        nargs='+',
        default=list(METHODS),
        help=f'students to train, each a config <task>_<method>.py in '
        f'configs/diffkd/demo (default: {" ".join(METHODS)}; variants such as '
        'diffkd_steps3 or diffkd_shared)')
    p.add_argument(
        '--schedule',
        choices=tuple(SCHEDULE_PROFILES),
        default='main',
        help='main: the README\'s demo, short (' + _describe(SCHEDULES) + '); converged: '
        'the benchmark at convergence (' + _describe(SCHEDULE_PROFILES['converged']) +
        '); quick: the smoke run of --quick')
    p.add_argument(
        '--teacher-iters',
        type=int,
        help='teacher iterations for every task (default: the --schedule\'s)')
    p.add_argument(
        '--student-iters',
        type=int,
        help='iterations of each student run (default: the --schedule\'s)')
    p.add_argument(
        '--loss-weight',
        type=float,
        help='loss_weight of every distillation entry of the KD students (DiffKD: '
        'its matching term), for choosing weights on held-out seeds (default: the '
        'configs\' weights)')
    p.add_argument(
        '--jobs',
        type=int,
        help='task-seeds trained at once, each in its own process with cpu_count / JOBS '
        'threads (default: as many as there are cores and task-seeds)')
    p.add_argument(
        '--parallel',
        choices=('task-seed', 'run'),
        default='task-seed',
        help='what each of the --jobs processes trains: a task-seed (its teacher, then its '
        'students; default) or one run (every teacher and no-KD student at once, the KD '
        'students of a task-seed once its teacher is done: for many cores or a shared GPU)')
    p.add_argument(
        '--resume',
        metavar='RUN_DIR',
        help='go on with an earlier run folder (interrupted, or to add seeds or methods): its '
        'finished runs are reused, the rest trained, the report written again; the options '
        'must be those it was run with')
    p.add_argument(
        '--device',
        choices=DEVICE_CHOICES,
        default='auto',
        help='what trains every run: cuda, cpu, or auto (default: CUDA when a device is '
        'visible); each record names the device')
    p.add_argument(
        '--quick',
        action='store_true',
        help='a smoke run of the whole flow: a few iterations on a few images (--schedule '
        'quick)')
    p.add_argument(
        '--verbose',
        action='store_true',
        help='stream every run\'s full output (configs, every logged iteration); by default '
        'each run shows one progress line and keeps its output in console.log in its folder')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    tasks = TASKS if args.task == 'all' else (args.task, )
    if args.quick and args.schedule not in ('main', 'quick'):
        sys.exit(f'run_demo.py: --quick is --schedule quick; it cannot go with --schedule '
                 f'{args.schedule}')
    try:
        select_device(args.device)
    except (ValueError, RuntimeError) as err:
        sys.exit(f'run_demo.py: {err}')
    profile = 'quick' if args.quick else args.schedule
    schedules = dict(SCHEDULE_PROFILES[profile])
    for task in tasks:
        changes = {
            k: v
            for k, v in (('teacher_iters', args.teacher_iters),
                         ('student_iters', args.student_iters)) if v is not None
        }
        schedules[task] = dataclasses.replace(schedules[task], **changes)
    try:
        settings = DemoSettings(
            tasks=tasks,
            seeds=args.seeds,
            methods=args.methods,
            schedules=schedules,
            log_interval=5 if profile == 'quick' else 20,
            loss_weight=args.loss_weight,
            parallel=args.parallel,
            jobs=args.jobs if args.jobs is not None else max(
                1,
                min(os.cpu_count() or 1,
                    len(tasks) * len(args.seeds) if args.parallel == 'task-seed' else 10**6)))
        check_configs(settings)
        if args.resume is not None and not os.path.isdir(args.resume):
            raise FileNotFoundError(f'--resume {args.resume}: no such run folder')
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f'run_demo.py: {err}')
    advice = ('Free some space and run again with --resume RUN_DIR (the run folder printed '
              'first): the data, the teachers and the finished runs are reused.')
    with exit_on_full_disk(advice, prefix='run_demo.py: '):
        try:
            out = run_demo(args.work_dir, settings, verbose=args.verbose, resume=args.resume)
        except (ResumeConflict, TaskSeedsFailed) as err:
            sys.exit(f'run_demo.py: {err}')
    print('\n[demo] results (' + out['report'] + '):')
    with open(out['report']) as f:
        section = ''
        for line in f:
            section = line if line.startswith('#') else section
            # The results tables, and the line that says the shipped benchmark at convergence
            # follows (not this run's); the diagnostics' longer tables stay in the report.
            if line.startswith(('|', '## ', 'At convergence')) and 'KD signal' not in section:
                print('  ' + line.rstrip())
    print(f'[demo] records: {out["results"]}')
    print(f'[demo] report: {out["report"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
