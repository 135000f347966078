"""The demo's pictures: smoothed training curves, and paired differences with their
intervals."""
from typing import Dict, List, Sequence

from ..fileio import save_figure
from .paired import paired_differences, task_values
from .settings import method_title

#: Curves averaged over this many iterations before plotting (the raw ones are noisy).
_SMOOTH = 10


def _smooth(values: Sequence[float], window: int = _SMOOTH) -> List[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def _save_and_close(fig, path: str) -> None:
    """Lay out ``fig``, write it to ``path`` and free it, even when writing fails."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_curves(series: Dict[str, Sequence[float]],
                path: str,
                title: str,
                ylabel: str,
                logy: bool = False) -> bool:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    series = {k: v for k, v in series.items() if v}
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for label, values in series.items():
        ax.plot(range(1, len(values) + 1), _smooth(values), label=label, linewidth=1)
    ax.set_xlabel('iteration')
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale('log')
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    _save_and_close(fig, path)
    return True


def _short_title(method: str) -> str:
    """``'Student + DiffKD'`` -> ``'DiffKD'``, ``'Student (no KD)'`` -> ``'no KD'``."""
    title = method_title(method)
    return 'no KD' if method == 'student' else title.replace('Student + ', '')


def paired_figure(records: Sequence[dict], tasks: Sequence[str], path: str) -> bool:
    """Picture of the paired table: one panel per task, one row per comparison, each seed's
    difference as a dot and the mean with its 95% interval as a bar (green: above zero, red:
    below, grey: not significant).

    Args:
        records (Sequence[dict]): Records with ``task``, ``seed``, ``method``, ``value``.
        tasks (Sequence[str]): The tasks drawn, one panel each.
        path (str): The picture written.

    Returns:
        bool: False, and nothing written, when no task has a pair with 2 seeds or more.
    """
    panels = []
    for task in tasks:
        diffs = paired_differences(task_values(records, task))
        if diffs:
            metric = next(r['metric'] for r in records if r['task'] == task)
            panels.append((task, metric, diffs))
    if not panels:
        return False
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = sum(len(diffs) for _, _, diffs in panels)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(7, 1.2 + 0.42 * rows + 0.6 * len(panels)), squeeze=False)
    for ax, (task, metric, diffs) in zip(axes[:, 0], panels):
        for i, d in enumerate(diffs):
            # The seeds' dots spread a little vertically so that equal differences stay visible.
            offsets = [0.25 * (k / max(d.n - 1, 1) - 0.5) for k in range(d.n)]
            ax.scatter(d.per_seed, [i + o for o in offsets], s=10, color='0.45', zorder=2)
            color = 'tab:green' if d.low > 0 else 'tab:red' if d.high < 0 else '0.2'
            ax.errorbar(
                d.mean,
                i,
                xerr=[[d.mean - d.low], [d.high - d.mean]],
                fmt='D',
                color=color,
                capsize=3,
                zorder=3)
        ax.axvline(0, color='0.6', linewidth=0.8)
        ax.set_yticks(range(len(diffs)))
        ax.set_yticklabels(
            [f'{_short_title(d.method)} - {_short_title(d.baseline)}' for d in diffs], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(
            f'{metric} difference, paired by seed (dots: seeds; bar: mean, 95% '
            'interval)',
            fontsize=8)
        ax.set_title(f'{task}: {diffs[0].n} seeds', fontsize=10)
        ax.grid(axis='x', alpha=0.3)
    _save_and_close(fig, path)
    return True
