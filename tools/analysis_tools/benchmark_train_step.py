"""Training cost of DiffKD against its peers, measured in one process run.

Times full training iterations (forward + backward + optimizer step; median of --iters after
--warmup) of one teacher/student pair with: the student alone; + FitNet (MSE on every FPN level,
mmrazor L2Loss); + mmrazor PKD; + DiffKD (ours, defaults); + DiffKD with each option
(activation checkpointing, shared branch, 3 steps, AE to 128 channels, and the leanest
combination); and a plain restatement of the official formulation (the official two-stage DDIM
step with per-step scalar indexing and host-side branching) as the reference.
All variants are built first and timed round-robin, one iteration of each in turn,
so that a slow spell of the machine hits every variant alike. Memory: on a GPU the peak CUDA
memory of one iteration above what is resident before it; on the CPU the bytes autograd saves
for backward (activation memory), which is what DiffKD adds. Then the DiffKD branch alone:
time split by part, and how it scales with feature size, channels, steps and levels.
With --count-ops, also the ATen operators one iteration dispatches that launch work, per variant
and per part of the branch: on a GPU, about one kernel launch each, which is what an iteration
costs there. SGD runs its foreach implementation, the one torch uses on a GPU.

    python tools/analysis_tools/benchmark_train_step.py --pair retinanet --size 256 --out-dir bench/
"""
import argparse
import contextlib
import os
import platform
import statistics
import sys
from functools import partial

import torch
from mmengine.config import Config

import diffkd_mm  # noqa: F401  (mmrazor stand-in + registrations first)
from diffkd_mm.benchmark.op_count import ops_of_parts, ops_of_train_step
from diffkd_mm.benchmark.report import cost_table, parts_table, scaling_table, write_report
from diffkd_mm.benchmark.timing import (branch_fwd_bwd_round_robin, branch_part_fns, branch_parts,
                                        fwd_bwd, memory_of_step, scaling_grid, time_round_robin)
from diffkd_mm.benchmark.variants import (DEFAULT_VARIANTS, PAIRS, VARIANTS, ReferenceDiffKDBranch,
                                          build_variant, synthetic_det_batch)
from diffkd_mm.models.diffkd import DiffKDBranch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument(
        '--pair',
        choices=sorted(PAIRS),
        default='retinanet',
        help='teacher/student pair (default: retinanet, R101 -> R50, P3-P7)')
    p.add_argument(
        '--size',
        type=int,
        default=256,
        help='input height in pixels, and width unless --width (default 256 on CPU; 800 for '
        'COCO-like)')
    p.add_argument(
        '--width',
        type=int,
        help='input width in pixels (default: --size; 1333 with --size 800 is COCO\'s test scale)')
    p.add_argument('--batch', type=int, default=2, help='images per iteration (default 2)')
    p.add_argument('--iters', type=int, default=5, help='timed iterations, median (default 5)')
    p.add_argument('--warmup', type=int, default=2, help='untimed iterations first (default 2)')
    p.add_argument(
        '--variants',
        nargs='+',
        choices=VARIANTS,
        default=list(DEFAULT_VARIANTS),
        help='which variants to time (default: all but the graph-mode ones, diffkd_graph and '
        'diffkd_cudagraphs, which pay off on a GPU only)')
    p.add_argument('--no-scaling', action='store_true', help='skip the scaling tables')
    p.add_argument('--amp', action='store_true', help='autocast (fp16 on GPU, bf16 on CPU)')
    p.add_argument(
        '--count-ops',
        action='store_true',
        help='also count the operators one iteration dispatches (those that launch work: '
        'about one kernel launch each on a GPU), per variant and per part of the DiffKD branch')
    p.add_argument(
        '--out-dir',
        default='work_dirs/benchmark',
        help='where benchmark.md and benchmark.json go (default work_dirs/benchmark)')
    return p.parse_args(argv)


def measure_variants(cfg, data, args, device) -> dict:
    """Build every variant, time them in turns, then measure each one's memory."""
    models = {kind: build_variant(cfg, kind, device) for kind in args.variants}
    times = time_round_robin(models, data, device, args.warmup, args.iters)
    rows = {}
    for kind, (model, optim) in models.items():
        sec = statistics.median(times[kind])
        rows[kind] = dict(
            sec=sec, mem=memory_of_step(model, optim, data, device), samples=times[kind])
        counted = ''
        if args.count_ops:
            ops = ops_of_train_step(model, optim, data)
            rows[kind].update(ops=ops.total, dispatched=ops.dispatched, op_names=dict(ops.counts))
            counted = f'  {ops.total:6d} ops'
        print(
            f'[bench] {kind:28s} {sec:8.3f} s/iter  {rows[kind]["mem"] / 2**20:9.1f} MiB'
            f'{counted}',
            flush=True)
    return rows


def measure_branch(cfg, args, device):
    """The DiffKD branch alone (256 channels, P3 size): time by part, then scaling."""
    levels = cfg.model.distiller.distill_losses.loss_diffkd_fpn.get('num_levels', 1)
    feat = args.size // 8  # P3 of a stride-8 first level
    torch.manual_seed(0)
    branch = DiffKDBranch(256, 256).to(device)
    s = torch.randn(args.batch, 256, feat, feat, device=device, requires_grad=True)
    t = torch.randn(args.batch, 256, feat, feat, device=device)
    parts = branch_parts(branch, s, t, args.iters)
    part_ops = None
    if args.count_ops:
        counters = ops_of_parts({
            name: partial(fwd_bwd, fn)
            for name, fn in branch_part_fns(branch, s, t).items()
        })
        part_ops = {name: counter.total for name, counter in counters.items()}
    scaling = []
    for what, size, ch, steps, lv in scaling_grid(feat, levels):
        sec = branch_fwd_bwd_round_robin(
            dict(ours=DiffKDBranch, reference=ReferenceDiffKDBranch), ch, size, steps, lv,
            args.iters, device)
        scaling.append(dict(what=what, size=size, channels=ch, steps=steps, levels=lv, **sec))
        print(
            f'[bench] scaling {what}: {size}px {ch}ch {steps} steps {lv} levels: '
            f'{sec["ours"]:.4f} s, reference {sec["reference"]:.4f} s',
            flush=True)
    return feat, parts, part_ops, scaling


def main(argv=None) -> int:
    args = parse_args(argv)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.manual_seed(0)
    cfg = Config.fromfile(PAIRS[args.pair])
    width = args.width or args.size
    data = synthetic_det_batch(args.size, args.batch, width)
    autocast = torch.autocast(device, dtype=torch.float16 if device == 'cuda' else torch.bfloat16) \
        if args.amp else contextlib.nullcontext()
    machine = (
        torch.cuda.get_device_name() if device == 'cuda' else
        f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads')
    print(f'[bench] {args.pair}, input {args.size}x{width}, batch {args.batch}, {device} '
          f'({machine}), median of {args.iters} after {args.warmup} warm-up, amp={args.amp}')
    with autocast:
        rows = measure_variants(cfg, data, args, device)
    memory = ('peak CUDA memory of one iteration above the resident weights.' if device == 'cuda'
              else 'bytes saved by autograd for backward (activation memory) in one iteration.')
    lines = cost_table(
        f'DiffKD training cost: {args.pair}, {args.size}x{width}, batch {args.batch}',
        f'Device: {device} ({machine}); torch {torch.__version__}; median of {args.iters} '
        f'iterations after {args.warmup}; amp={args.amp}. Memory: {memory}', rows)
    result = dict(
        pair=args.pair,
        size=args.size,
        width=width,
        batch=args.batch,
        device=device,
        machine=machine,
        torch=torch.__version__,
        amp=args.amp,
        rows=rows)
    if not args.no_scaling:
        feat, result['parts'], part_ops, result['scaling'] = measure_branch(cfg, args, device)
        if part_ops:
            result['part_ops'] = part_ops
        lines += parts_table(result['parts'], 256, feat, part_ops) + scaling_table(
            result['scaling'])
    path = write_report(args.out_dir, lines, result)
    print('\n'.join(lines))
    print(f'[bench] wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
