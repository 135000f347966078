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

    python tools/analysis_tools/benchmark_train_step.py --pair retinanet --size 256 --out-dir bench/
"""
import argparse
import contextlib
import copy
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper

import diffkd_mm  # noqa: F401  (compat layer + registrations first)
from diffkd_mm.fileio import atomic_write_text
from diffkd_mm.models.diffkd import DiffKDBranch, DiffKDDenoiser
from mmrazor.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAIRS = dict(
    retinanet=osp.join(ROOT, 'configs/diffkd/mmdet/diffkd_fpn_retina_r101_retina_r50_2x_coco.py'),
    faster_rcnn=osp.join(
        ROOT, 'configs/diffkd/mmdet/diffkd_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py'))


class ReferenceDiffKDDenoiser(DiffKDDenoiser):
    """The official formulation, restated plainly, with the same modules and the same math.

    Per call it rebuilds the timestep list on the host (numpy), and per step it indexes the
    schedule with the timestep, branches on the host (``prev >= 0``), computes x0, re-derives the
    noise from it (``use_clipped_model_output=True``) and forms x_prev in separate kernels.
    """

    def denoise(self, student_latent, noise=None):
        if noise is None:
            noise = torch.randn_like(student_latent)
        gate = self.noise_adapter(student_latent)
        g = gate.view(-1, 1, 1, 1)
        x = g * student_latent + (1 - g) * noise
        steps = self.scheduler.inference_steps
        ratio = self.scheduler.num_train_timesteps // (2 * steps)
        timesteps = torch.from_numpy((np.arange(0, 2 * steps) * ratio)[::-1].copy())
        ab = self.scheduler.alphas_cumprod
        for t in timesteps[steps:]:
            eps = self.noise_predictor(x, t.to(x.device))
            a_t = ab[t]
            prev = int(t) - ratio
            a_prev = ab[prev] if prev >= 0 else torch.ones((), device=x.device)
            x0 = (x - (1 - a_t)**0.5 * eps) / a_t**0.5
            eps = (x - a_t**0.5 * x0) / (1 - a_t)**0.5
            x = a_prev**0.5 * x0 + (1 - a_prev)**0.5 * eps
        return x, gate


class ReferenceDiffKDBranch(DiffKDBranch):
    """:class:`DiffKDBranch` with :class:`ReferenceDiffKDDenoiser` as its student side."""

    def __init__(self, student_channels, teacher_channels, **settings):
        super().__init__(student_channels, teacher_channels, **settings)
        self.denoiser.__class__ = ReferenceDiffKDDenoiser  # same modules, the official loop


# ----------------------------------------------------------------------------- variants
def _fpn_inputs(level=None, student_arg='preds_S', teacher_arg='preds_T') -> dict:
    """Loss-forward mapping of the recorded FPN: one level (``data_idx``), or all of them."""
    index = {} if level is None else dict(data_idx=level)
    return {
        student_arg: dict(from_student=True, recorder='fpn', **index),
        teacher_arg: dict(from_student=False, recorder='fpn', **index)
    }


def _distiller(kind: str, base: dict, levels: int) -> dict:
    """The distiller fields (type, connectors, losses, mappings) of one variant."""
    if kind == 'fitnet':
        return dict(
            type='ConfigurableDistiller',
            distill_losses={
                f'loss_mse{i}': dict(type='L2Loss', normalize=False, div_element=True)
                for i in range(levels)
            },
            loss_forward_mappings={
                f'loss_mse{i}': _fpn_inputs(i, 's_feature', 't_feature')
                for i in range(levels)
            })
    if kind == 'pkd':
        return dict(
            type='ConfigurableDistiller',
            distill_losses={
                f'loss_pkd{i}': dict(type='PKDLoss', loss_weight=6)
                for i in range(levels)
            },
            loss_forward_mappings={f'loss_pkd{i}': _fpn_inputs(i)
                                   for i in range(levels)})
    if kind == 'diffkd_per_level':  # mmrazor's recipe style: one entry per level, stock distiller
        return dict(
            type='ConfigurableDistiller',
            distill_losses={f'loss_diffkd{i}': dict(base, num_levels=1)
                            for i in range(levels)},
            loss_forward_mappings={f'loss_diffkd{i}': _fpn_inputs(i)
                                   for i in range(levels)})
    if kind == 'diffkd_pkd':  # DiffKD connectors in front of PKD
        latent = base.get('ae_channels') or base['teacher_channels']
        through = dict(from_student=False, recorder='fpn', connector='diffkd_t')
        return dict(
            type='DiffKDDistiller',
            connectors=dict(
                diffkd_s=dict(
                    type='DiffKDStudentConnector',
                    num_levels=levels,
                    student_channels=base['student_channels'],
                    latent_channels=latent),
                diffkd_t=dict(
                    type='DiffKDTeacherConnector',
                    num_levels=levels,
                    teacher_channels=base['teacher_channels'],
                    ae_channels=base.get('ae_channels'))),
            distill_losses=dict(
                loss_pkd=dict(type='PKDLoss', loss_weight=6),
                loss_diffkd=dict(
                    type='DiffKDDiffusionLoss',
                    student_connector='diffkd_s',
                    teacher_connector='diffkd_t')),
            loss_forward_mappings=dict(
                loss_pkd=dict(
                    preds_S=dict(from_student=True, recorder='fpn', connector='diffkd_s'),
                    preds_T=through),
                loss_diffkd=dict(target=through)))
    cfg = dict(base)
    cfg.update(DIFFKD_OPTIONS.get(kind, {}))
    return dict(
        type='DiffKDDistiller',
        distill_losses=dict(loss_diffkd=cfg),
        loss_forward_mappings=dict(loss_diffkd=_fpn_inputs()))


# DiffKD variants: the options each one sets on top of the config's DiffKD entry (the COCO
# configs' default: 3 steps, a 128-channel AE latent, standardised teacher). Those in
# SAME_MATH_AS_DIFFKD keep the math; the others change the model (docs/benchmarks.md).
DIFFKD_OPTIONS = dict(
    diffkd_cp=dict(with_cp=True),
    diffkd_shared=dict(share_branch=True),
    diffkd_5steps_noae=dict(inference_steps=5, ae_channels=None),  # DiffKDLoss's own defaults
    diffkd_3steps_noae=dict(inference_steps=3, ae_channels=None),
    diffkd_5steps_ae128=dict(inference_steps=5, ae_channels=128),
    diffkd_3steps_ae64=dict(inference_steps=3, ae_channels=64),
    diffkd_raw=dict(target_norm=None),
)
# The other ways to write DiffKD in a config: per-level entries, connectors + PKD.
STYLES = ('diffkd_per_level', 'diffkd_pkd')
VARIANTS = ('student', 'fitnet', 'pkd', 'diffkd', *DIFFKD_OPTIONS, *STYLES, 'reference')
# Variants that compute exactly what the default DiffKD computes (tests check each of them):
# per-level entries draw their noise in the same order as one entry over the levels.
SAME_MATH_AS_DIFFKD = ('diffkd_cp', 'diffkd_per_level', 'reference')


def set_distiller(dist, kind: str, base: dict, levels: int) -> None:
    """Replace the config's connectors, losses and mappings by the variant's.

    Key by key: mmengine's ``ConfigDict.update`` merges nested dicts, which would keep the
    config's own DiffKD entry (and its mapping) running beside the variant's.
    """
    for key in ('connectors', 'distill_losses', 'loss_forward_mappings'):
        dist.pop(key, None)
    for key, value in _distiller(kind, base, levels).items():
        dist[key] = value


def build_variant(cfg: Config, kind: str, device: str):
    # Same teacher and student weights in every variant: with random weights a two-stage
    # detector's proposals, hence its RoI-head cost, depend on the weights.
    torch.manual_seed(0)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.teacher_ckpt = None
    dist = model_cfg.distiller
    base = copy.deepcopy(dist.distill_losses.loss_diffkd_fpn)
    levels = base.get('num_levels', 1)
    if kind == 'student':
        algo = MODELS.build(model_cfg)
        model = algo.student
        model.data_preprocessor = algo.data_preprocessor
    else:
        set_distiller(dist, 'diffkd' if kind == 'reference' else kind, base, levels)
        model = MODELS.build(model_cfg)
        if kind == 'reference':
            for branch in model.distiller.distill_losses.loss_diffkd.branches:
                branch.denoiser.__class__ = ReferenceDiffKDDenoiser
    model.to(device).train()
    # lr 0: SGD still does all its work (momentum, update), but the random, un-pretrained weights
    # stay put, so no variant diverges while it is being timed.
    optim = OptimWrapper(
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0, momentum=0.9))
    return model, optim


class SavedBytes:
    """Bytes autograd saves for backward during a forward (activation memory)."""

    def __init__(self):
        self.total = 0

    def pack(self, t):
        self.total += t.numel() * t.element_size()
        return t

    @contextlib.contextmanager
    def __call__(self):
        with torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t):
            yield


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_round_robin(models, data, device, warmup, iters):
    """Seconds of each timed iteration per variant, the variants taking turns."""
    times = {kind: [] for kind in models}
    for i in range(warmup + iters):
        for kind, (model, optim) in models.items():
            _sync(device)
            start = time.perf_counter()
            model.train_step(copy.copy(data), optim)
            _sync(device)
            if i >= warmup:
                times[kind].append(time.perf_counter() - start)
    return times


def memory_of_step(model, optim, data, device):
    if device.startswith('cuda'):
        resident = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        model.train_step(copy.copy(data), optim)
        return torch.cuda.max_memory_allocated() - resident
    saved = SavedBytes()
    with saved():
        model.train_step(copy.copy(data), optim)
    return saved.total


# ----------------------------------------------------------------------------- DiffKD branch
def branch_parts(branch, s, t, iters):
    """Median fwd+bwd seconds of each part of one DiffKD branch on features s, t."""

    def run(fn):
        times = []
        for i in range(iters + 1):
            start = time.perf_counter()
            out = fn()
            loss = sum(o.float().mean() for o in out if o is not None and o.requires_grad)
            loss.backward()
            if i:
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    denoiser, autoencoder = branch.denoiser, branch.target.autoencoder
    latent = denoiser.student_proj(s).detach().requires_grad_()
    target, _ = branch.target(t)
    parts = dict(
        projection=lambda: (denoiser.student_proj(s), ),
        noise_adapter=lambda: (denoiser.noise_adapter(latent), ),
        denoising_loop=lambda: denoiser.denoise(latent),
        output_projection=lambda: (denoiser.output_proj(latent), ),
        diffusion_loss=lambda: (denoiser.diffusion_loss(target), ),
    )
    if autoencoder is not None:
        parts['autoencoder'] = lambda: autoencoder(t)
    return {name: run(fn) for name, fn in parts.items()}


def branch_fwd_bwd_round_robin(builders,
                               channels,
                               size,
                               steps,
                               levels,
                               iters,
                               device,
                               batch=2,
                               warmup=2):
    """Median fwd+bwd seconds of ``levels`` branches (sizes halving) per builder, in turns."""
    torch.manual_seed(0)
    feats = [(torch.randn(
        batch, channels, max(size >> i, 1), max(size >> i, 1), device=device, requires_grad=True),
              torch.randn(batch, channels, max(size >> i, 1), max(size >> i, 1), device=device))
             for i in range(levels)]
    branches = {
        name: [build(channels, channels, inference_steps=steps).to(device) for _ in range(levels)]
        for name, build in builders.items()
    }
    times = {name: [] for name in builders}
    for i in range(warmup + iters):
        for name, group in branches.items():
            _sync(device)
            start = time.perf_counter()
            total = 0
            for b, (s, t) in zip(group, feats):
                out = b(s, t)
                total = total + torch.nn.functional.mse_loss(out.refined, out.target) + \
                    out.loss_ddim
            total.backward()
            _sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# ----------------------------------------------------------------------------- main
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
        help='square input size in pixels (default 256 on CPU; 800 for COCO-like)')
    p.add_argument('--batch', type=int, default=2, help='images per iteration (default 2)')
    p.add_argument('--iters', type=int, default=5, help='timed iterations, median (default 5)')
    p.add_argument('--warmup', type=int, default=2, help='untimed iterations first (default 2)')
    p.add_argument(
        '--variants',
        nargs='+',
        choices=VARIANTS,
        default=list(VARIANTS),
        help='which variants to time (default: all)')
    p.add_argument('--no-scaling', action='store_true', help='skip the scaling tables')
    p.add_argument('--amp', action='store_true', help='autocast (fp16 on GPU, bf16 on CPU)')
    p.add_argument(
        '--out-dir',
        default='work_dirs/benchmark',
        help='where benchmark.md and benchmark.json go (default work_dirs/benchmark)')
    return p.parse_args(argv)


def synthetic_det_batch(size, batch):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(
        batch_size=batch, image_shapes=(3, size, size), num_items=[5] * batch, num_classes=80)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.manual_seed(0)
    cfg = Config.fromfile(PAIRS[args.pair])
    data = synthetic_det_batch(args.size, args.batch)
    autocast = torch.autocast(device, dtype=torch.float16 if device == 'cuda' else torch.bfloat16) \
        if args.amp else contextlib.nullcontext()
    machine = (
        torch.cuda.get_device_name() if device == 'cuda' else
        f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads')
    print(f'[bench] {args.pair}, input {args.size}x{args.size}, batch {args.batch}, {device} '
          f'({machine}), median of {args.iters} after {args.warmup} warm-up, amp={args.amp}')

    models = {kind: build_variant(cfg, kind, device) for kind in args.variants}
    with autocast:
        times = time_round_robin(models, data, device, args.warmup, args.iters)
        rows = {}
        for kind, (model, optim) in models.items():
            sec = statistics.median(times[kind])
            rows[kind] = dict(
                sec=sec, mem=memory_of_step(model, optim, data, device), samples=times[kind])
            print(
                f'[bench] {kind:28s} {sec:8.3f} s/iter  {rows[kind]["mem"] / 2**20:9.1f} MiB',
                flush=True)
    del models

    fit, ref = rows.get('fitnet'), rows.get('reference')
    lines = [
        f'# DiffKD training cost: {args.pair}, {args.size}x{args.size}, batch {args.batch}', '',
        f'Device: {device} ({machine}); torch {torch.__version__}; median of '
        f'{args.iters} iterations after {args.warmup}; amp={args.amp}. Memory: ' +
        ('peak CUDA memory of one iteration above the resident weights.' if device == 'cuda' else
         'bytes saved by autograd for backward (activation memory) in one iteration.'), '',
        '| variant | DiffKD math | s / iter | x FitNet | x reference | memory (MiB) | '
        'mem x FitNet |', '|---|---|---|---|---|---|---|'
    ]
    for kind, r in rows.items():
        math = ('-' if not kind.startswith('diffkd') and kind != 'reference' else 'default'
                if kind == 'diffkd' else 'same' if kind in SAME_MATH_AS_DIFFKD else 'changed')
        lines.append(f'| {kind} | {math} | {r["sec"]:.3f} | {r["sec"] / fit["sec"]:.2f} |'
                     if fit else f'| {kind} | {math} | {r["sec"]:.3f} | - |')
        lines[-1] += (f' {r["sec"] / ref["sec"]:.2f} |' if ref else ' - |')
        lines[-1] += f' {r["mem"] / 2**20:.1f} |' + (f' {r["mem"] / fit["mem"]:.2f} |'
                                                     if fit else ' - |')

    result = dict(
        pair=args.pair,
        size=args.size,
        batch=args.batch,
        device=device,
        machine=machine,
        torch=torch.__version__,
        amp=args.amp,
        rows=rows)
    if not args.no_scaling:
        levels = cfg.model.distiller.distill_losses.loss_diffkd_fpn.get('num_levels', 1)
        feat = args.size // 8  # P3 of a stride-8 first level
        torch.manual_seed(0)
        branch = DiffKDBranch(256, 256).to(device)
        s = torch.randn(args.batch, 256, feat, feat, device=device, requires_grad=True)
        t = torch.randn(args.batch, 256, feat, feat, device=device)
        parts = branch_parts(branch, s, t, args.iters)
        result['parts'] = parts
        lines += [
            '', f'## DiffKD branch, one level (256 channels, {feat}x{feat}): fwd+bwd by part', '',
            '| part | s | share |', '|---|---|---|'
        ]
        total = sum(parts.values())
        lines += [f'| {k} | {v:.4f} | {v / total:.0%} |' for k, v in parts.items()]
        scaling = []
        grid = ([('size', s_, 256, 5, 1) for s_ in (feat // 2, feat, feat * 2)] +
                [('channels', feat, c, 5, 1)
                 for c in (64, 128, 256)] + [('steps', feat, 256, n, 1)
                                             for n in (1, 3, 5, 10)] + [('levels', feat, 256, 5, n)
                                                                        for n in (1, 3, levels)])
        for what, size, ch, steps, lv in grid:
            sec = branch_fwd_bwd_round_robin(
                dict(ours=DiffKDBranch, reference=ReferenceDiffKDBranch), ch, size, steps, lv,
                args.iters, device)
            scaling.append(dict(what=what, size=size, channels=ch, steps=steps, levels=lv, **sec))
            print(
                f'[bench] scaling {what}: {size}px {ch}ch {steps} steps {lv} levels: '
                f'{sec["ours"]:.4f} s, reference '
                f'{sec["reference"]:.4f} s',
                flush=True)
        result['scaling'] = scaling
        lines += [
            '', '## DiffKD branch alone, fwd+bwd: scaling (first level size, halving per '
            'level)', '', '| varied | size | channels | steps | levels | ours (s) | '
            'reference (s) | ours / reference |', '|---|---|---|---|---|---|---|---|'
        ]
        lines += [
            f'| {r["what"]} | {r["size"]} | {r["channels"]} | {r["steps"]} | {r["levels"]} '
            f'| {r["ours"]:.4f} | {r["reference"]:.4f} | {r["ours"] / r["reference"]:.2f} |'
            for r in scaling
        ]
    atomic_write_text(osp.join(args.out_dir, 'benchmark.md'), '\n'.join(lines) + '\n')
    atomic_write_text(osp.join(args.out_dir, 'benchmark.json'), json.dumps(result, indent=2))
    print('\n'.join(lines))
    print(f'[bench] wrote {osp.join(args.out_dir, "benchmark.md")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
