"""The main job: a real DiffKD distillation on the embedded synthetic dataset, on CPU.

Trains a teacher (or reuses its cached checkpoint), then the same student without KD, with FitNet
and with DiffKD on one schedule and seed, evaluates each with the stock metric, and writes a report
(markdown table, loss curves, noise-adapter weight, feature pictures) into a new folder under
--work-dir. About 10 minutes on 2 CPU cores with the defaults.
"""
import argparse
import sys

import diffkd_mm  # noqa: F401  (compat layer + registrations first)
from diffkd_mm.demo import DemoSettings, run_demo


def parse_args(argv=None):
    d = DemoSettings()
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work-dir', default='work_dirs/diffkd_demo',
                   help='parent folder; each run writes a new timestamped sub-folder')
    p.add_argument('--task', default=d.task, choices=['seg'], help='demo task (default: seg)')
    p.add_argument('--teacher-iters', type=int, default=d.teacher_iters,
                   help=f'teacher training iterations (default {d.teacher_iters})')
    p.add_argument('--student-iters', type=int, default=d.student_iters,
                   help=f'iterations of each student run (default {d.student_iters})')
    p.add_argument('--num-train', type=int, default=d.num_train,
                   help=f'synthetic training images (default {d.num_train})')
    p.add_argument('--num-val', type=int, default=d.num_val,
                   help=f'synthetic validation images (default {d.num_val})')
    p.add_argument('--seed', type=int, default=d.seed, help='data and training seed (default 0)')
    p.add_argument('--quick', action='store_true',
                   help='a smoke run: 30 teacher / 20 student iterations on 48 + 16 images')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.teacher_iters, args.student_iters, args.num_train, args.num_val = 30, 20, 48, 16
    settings = DemoSettings(task=args.task, teacher_iters=args.teacher_iters,
                            student_iters=args.student_iters, num_train=args.num_train,
                            num_val=args.num_val, seed=args.seed,
                            log_interval=10 if args.quick else 20)
    out = run_demo(args.work_dir, settings)
    print('\n[demo] results (' + out['report'] + '):')
    with open(out['report']) as f:
        for line in f:
            if line.startswith('|') or line.startswith('DiffKD vs'):
                print('  ' + line.rstrip())
    print(f'[demo] report: {out["report"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
