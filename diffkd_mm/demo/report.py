"""The demo's report: a markdown table, loss curves, the noise-adapter weight, feature pictures."""
import json
import os
import os.path as osp
from typing import Dict


def _plot_curves(curves: Dict[str, list], keys, path: str, title: str, ylabel: str,
                 logy: bool = False) -> bool:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = [k for k in keys if curves.get(k)]
    if not keys:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for key in keys:
        ax.plot(range(1, len(curves[key]) + 1), curves[key], label=key, linewidth=1)
    ax.set_xlabel('iteration')
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale('log')
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _feature_picture(runner, path: str) -> bool:
    from ..visualization import denoising_figure, record_denoising
    algorithm = runner.model
    losses = algorithm.distiller.distill_losses
    name = next((n for n, m in losses.items() if type(m).__name__ == 'DiffKDLoss'), None)
    if name is None:
        return False
    batch = next(iter(runner.val_dataloader))
    denoising_figure(record_denoising(algorithm, batch, name), path)
    return True


def write_report(run_dir: str, settings, results: Dict[str, dict], metric: str,
                 total_sec: float) -> str:
    """Write ``report.md``, ``report.json`` and the pictures into ``<run_dir>/report``."""
    from .runner import ROLE_TITLES
    out = osp.join(run_dir, 'report')
    os.makedirs(out, exist_ok=True)
    base = results['student'].get('sec_per_iter')
    rows = []
    for role, res in results.items():
        spi = res.get('sec_per_iter')
        rel = f'{spi / base:.2f}x' if spi and base else '-'
        note = ' (cached teacher)' if res.get('cached') else ''
        rows.append(f'| {ROLE_TITLES[role]}{note} | {res["metric"]:.2f} | '
                    f'{spi:.3f} | {rel} |' if spi else
                    f'| {ROLE_TITLES[role]}{note} | {res["metric"]:.2f} | - | - |')

    diffkd_curves = results['diffkd']['curves']
    term_keys = sorted(k for k in diffkd_curves if k.startswith('distill.loss_diffkd')
                       and k.endswith(('_kd', '_ddim', '_ae')))
    task_keys = sorted(k for k in diffkd_curves if k.startswith('student.') and 'loss' in k)
    gate_keys = sorted(k for k in diffkd_curves if k.endswith('_gate'))
    pictures = []
    if _plot_curves(diffkd_curves, term_keys + task_keys, osp.join(out, 'losses.png'),
                    'DiffKD run: each loss term per iteration', 'loss', logy=True):
        pictures.append(('Loss terms of the DiffKD run', 'losses.png'))
    if _plot_curves(diffkd_curves, gate_keys, osp.join(out, 'gate.png'),
                    'Noise adapter: mean weight g of the student feature in the start point',
                    'g'):
        pictures.append(('Noise-adapter weight g over training', 'gate.png'))
    runner = results['diffkd'].get('runner')
    if runner is not None and _feature_picture(runner, osp.join(out, 'features.png')):
        pictures.append(('Student / denoised student / teacher feature maps (validation images)',
                         'features.png'))

    s = settings
    lines = [
        f'# DiffKD demo report ({s.task}, embedded synthetic data)', '',
        f'Teacher {s.teacher_iters} iterations; every student {s.student_iters} iterations, same '
        f'schedule, seed {s.seed}; {s.num_train} training and {s.num_val} validation images. '
        f'Metric: {metric} on the validation split (mmseg IoUMetric), in percent. '
        'Time: median seconds per training iteration (after 5 warm-up iterations) in this run; '
        f'the whole run took {total_sec / 60:.1f} min.', '',
        f'| model | {metric} | s / iter | time vs student |', '|---|---|---|---|', *rows, '',
    ]
    better = results['diffkd']['metric'] - results['student']['metric']
    vs_fitnet = results['diffkd']['metric'] - results['fitnet']['metric']
    lines += [f'DiffKD vs no KD: {better:+.2f} {metric}; DiffKD vs FitNet: {vs_fitnet:+.2f} '
              f'{metric} (one seed: differences of this size can be noise).', '']
    for title, fname in pictures:
        lines += [f'## {title}', '', f'![{title}]({fname})', '']
    path = osp.join(out, 'report.md')
    with open(path, 'w') as f:
        f.write('\n'.join(lines))
    summary = {role: {k: v for k, v in res.items() if k in ('metric', 'sec_per_iter', 'cached')}
               for role, res in results.items()}
    with open(osp.join(out, 'report.json'), 'w') as f:
        json.dump(dict(task=s.task, metric=metric, settings=vars(s), total_sec=total_sec,
                       results=summary), f, indent=2)
    return path
