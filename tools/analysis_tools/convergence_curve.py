"""Train one model of the demo with validation along the way: is it converged?

    python tools/analysis_tools/convergence_curve.py --task det --method teacher --seed 100 \
        --iters 2000 --val-interval 250 --work-dir work_dirs/convergence
    python tools/analysis_tools/convergence_curve.py --task det --method student --seed 100 \
        --iters 2000 --val-interval 250 --work-dir work_dirs/convergence

For sizing the benchmark (schedule lengths, data and model sizes) on seeds that are not
reported. The model is the demo's config ``configs/diffkd/demo/<task>_<method>.py`` on the
seed's embedded data, with one cosine schedule over ``--iters``; a KD student needs
``--teacher-ckpt``. Prints one line per validation and writes ``curve.json`` (iteration,
metric, seconds of training so far) and ``curve.png`` into the run's folder; the training log
is there too.
"""
import argparse
import json
import os.path as osp
import sys
import time

from mmengine.hooks import Hook
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from diffkd_mm.datasets import ensure_dataset
from diffkd_mm.demo.configs import build_cfg, config_path, default_config_dir, set_loss_weights
from diffkd_mm.demo.console import Console
from diffkd_mm.demo.settings import SCHEDULES, TASK_METRICS, TASKS
from diffkd_mm.demo.training import device_name
from diffkd_mm.engine import (DEVICE_CHOICES, CheckpointError, load_checkpoint_file,
                              save_checkpoint_atomic, select_device)
from diffkd_mm.engine.rng import restore_rng, rng_state
from diffkd_mm.fileio import atomic_write_text, save_figure


class ValidationCurve(Hook):
    """The task's metric at each validation, with the iteration it was taken at and the
    seconds of training before it.

    A run validated along the way trains exactly as one validated only at the end: each
    validation's random draws (a data loader's worker seed is one) are undone afterwards, so
    its last point is the final value a record of the same run has. The clock is the one such a
    run would show too: it starts at the first training iteration (after any one-time set-up,
    a DiffKD warm-up included) and leaves the validations out.
    """

    def __init__(self, task: str) -> None:
        self.key, self.scale = TASK_METRICS[task][1:]
        self.iters, self.values, self.train_seconds = [], [], []
        self._start = self._val_start = self._rng = None
        self._val_seconds = 0.0

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self._start is None:
            self._start = time.perf_counter()

    def before_val_epoch(self, runner) -> None:
        self._rng = rng_state()
        self._val_start = time.perf_counter()

    def after_val_epoch(self, runner, metrics=None) -> None:
        restore_rng(self._rng)
        now = time.perf_counter()
        self.train_seconds.append(self._val_start - self._start - self._val_seconds)
        self._val_seconds += now - self._val_start
        # mmdet's CocoMetric returns nothing for a detector that detected nothing: 0 mAP.
        self.iters.append(runner.iter)
        self.values.append(float((metrics or {}).get(self.key, 0.0)) * self.scale)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', choices=TASKS, required=True, help='det or seg')
    parser.add_argument(
        '--method', required=True, help='teacher, student, fitnet, pkd, diffkd, ...')
    parser.add_argument('--seed', type=int, required=True, help='its data and initialisation')
    parser.add_argument('--iters', type=int, required=True, help='training iterations')
    parser.add_argument(
        '--val-interval',
        type=int,
        required=True,
        help='iterations between two '
        'validations (and one at the end)')
    parser.add_argument('--num-train', type=int, help='training images (default: the demo\'s)')
    parser.add_argument('--num-val', type=int, help='validation images (default: the demo\'s)')
    parser.add_argument('--teacher-ckpt', help='the trained teacher, for a KD student')
    parser.add_argument(
        '--loss-weight',
        type=float,
        help='loss_weight of every distillation entry of a KD student (DiffKD: its matching '
        'term), as run_demo.py --loss-weight (default: the config\'s)')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/convergence',
        help='parent folder; each run writes <task>_<method>_seed<seed>_<iters>it/<time>/')
    parser.add_argument(
        '--device',
        choices=DEVICE_CHOICES,
        default='auto',
        help='cuda, cpu, or auto (default: CUDA when a device is visible); curve.json names it')
    args = parser.parse_args(argv)
    for name in ('iters', 'val_interval', 'num_train', 'num_val'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be a positive int, got {value}')
    if args.loss_weight is not None and (args.method in ('teacher', 'student')
                                         or not args.loss_weight > 0):
        parser.error(f'--loss-weight {args.loss_weight}: a number > 0, for a KD student only')
    if args.method not in ('teacher', 'student') and not args.teacher_ckpt:
        parser.error(f'--method {args.method} distils from a teacher: give --teacher-ckpt')
    if args.teacher_ckpt and not osp.isfile(args.teacher_ckpt):
        parser.error(f'--teacher-ckpt {args.teacher_ckpt}: no such file')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        select_device(args.device)
    except (ValueError, RuntimeError) as err:
        sys.exit(f'convergence_curve.py: {err}')
    sched = SCHEDULES[args.task]
    data = ensure_dataset(
        args.task,
        num_train=args.num_train or sched.num_train,
        num_val=args.num_val or sched.num_val,
        seed=args.seed)
    name = f'{args.task}_{args.method}_seed{args.seed}_{args.iters}it'
    if args.loss_weight is not None:
        name += f'_w{args.loss_weight:g}'
    work_dir = osp.join(osp.abspath(args.work_dir), name, time.strftime('%Y%m%d_%H%M%S'))
    try:
        path = config_path(default_config_dir(), args.task, args.method)
    except FileNotFoundError as err:
        sys.exit(f'convergence_curve.py: --method: {err}')
    teacher = None
    if args.teacher_ckpt:
        # A training checkpoint also holds optimizer state and logs, which the distillation
        # algorithm's own loader does not accept: keep the weights, read with our allow-list.
        try:
            state_dict = load_checkpoint_file(args.teacher_ckpt)['state_dict']
        except (CheckpointError, KeyError, TypeError) as err:
            sys.exit(f'convergence_curve.py: --teacher-ckpt {args.teacher_ckpt}: not a model '
                     f'checkpoint with a state_dict ({str(err).splitlines()[0]})')
        teacher = osp.join(work_dir, 'teacher_weights.pth')
        save_checkpoint_atomic(dict(state_dict=state_dict), teacher)
    cfg = build_cfg(path, data, work_dir, args.iters, args.seed, 50, teacher)
    if args.loss_weight is not None:
        set_loss_weights(cfg, args.loss_weight)
    cfg.train_cfg.val_interval = args.val_interval
    with Console() as console:
        console.say(f'[curve] {name}: data {data}; log and curve in {work_dir}')
        progress = console.progress(name, args.iters)
        with console.quiet(osp.join(work_dir, 'console.log'), name), \
                DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmengine')):
            runner = Runner.from_cfg(cfg)
            runner.register_hook(progress)
            curve = ValidationCurve(args.task)
            runner.register_hook(curve)
            runner.train()
        progress.finish('done')
    metric = TASK_METRICS[args.task][0]
    iters, values = curve.iters, curve.values
    for it, value, seconds in zip(iters, values, curve.train_seconds):
        print(f'[curve] {name}: iteration {it:>6}  {metric} {value:.2f}  '
              f'after {seconds:.0f} s of training')
    atomic_write_text(
        osp.join(work_dir, 'curve.json'),
        json.dumps(
            dict(
                task=args.task,
                method=args.method,
                seed=args.seed,
                loss_weight=args.loss_weight,
                metric=metric,
                iters=iters,
                values=values,
                train_seconds=[round(t, 2) for t in curve.train_seconds],
                num_train=args.num_train or sched.num_train,
                num_val=args.num_val or sched.num_val,
                device=device_name()),
            indent=1) + '\n')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(iters, values, marker='o')
    ax.set_xlabel('iteration')
    ax.set_ylabel(f'{metric} (%)')
    ax.set_title(name, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, osp.join(work_dir, 'curve.png'))
    plt.close(fig)
    print(f'[curve] {name}: {osp.join(work_dir, "curve.json")}, curve.png; the trained model: '
          f'{osp.join(work_dir, f"iter_{args.iters}.pth")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
