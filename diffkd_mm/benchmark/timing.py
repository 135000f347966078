"""How the cost benchmark measures: iteration times taken in turns, activation or peak memory,
and the DiffKD branch alone, by part and as it scales."""
import contextlib
import copy
import statistics
import time

import torch


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


def branch_part_fns(branch, s, t):
    """The parts of one DiffKD branch on features s, t, each as a function that runs its forward
    and returns its outputs: projection, noise adapter (if any), denoising loop, output
    projection, diffusion loss and autoencoder (if any)."""
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
    if denoiser.noise_adapter is None:  # start_noise='vp' builds no adapter
        del parts['noise_adapter']
    if autoencoder is not None:
        parts['autoencoder'] = lambda: autoencoder(t)
    return parts


def fwd_bwd(fn) -> None:
    """Run a part's forward, then the backward of the mean of its outputs with gradients."""
    out = fn()
    loss = sum(o.float().mean() for o in out if o is not None and o.requires_grad)
    loss.backward()


def branch_parts(branch, s, t, iters):
    """Median fwd+bwd seconds of each part of one DiffKD branch on features s, t."""

    def run(fn):
        times = []
        for i in range(iters + 1):
            start = time.perf_counter()
            fwd_bwd(fn)
            if i:
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    return {name: run(fn) for name, fn in branch_part_fns(branch, s, t).items()}


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


def scaling_grid(size: int, levels: int) -> list:
    """``(varied, size, channels, steps, levels)`` of each scaling measurement: one setting
    varied at a time around (``size``, 256 channels, 5 steps, 1 level)."""
    return ([('size', s, 256, 5, 1) for s in (size // 2, size, size * 2)] +
            [('channels', size, c, 5, 1)
             for c in (64, 128, 256)] + [('steps', size, 256, n, 1)
                                         for n in (1, 3, 5, 10)] + [('levels', size, 256, 5, n)
                                                                    for n in (1, 3, levels)])
