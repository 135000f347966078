"""The KD-signal diagnostics of the records (see :class:`~diffkd_mm.engine.KDDiagnosticsHook`):
a table and a picture per task, every KD method side by side, means over seeds."""
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from ..fileio import save_figure
from .settings import method_title

#: The diagnostics, in the order shown: record key -> (column title, short label).
QUANTITIES = dict(
    kd_grad_norm=('KD gradient norm at the student feature', 'KD grad norm'),
    cos_student=('cos(student side, teacher), standardised', 'cos student'),
    cos_refined=('cos(denoised student, teacher), DiffKD', 'cos denoised'),
    gate=('noise-adapter weight g, DiffKD', 'g'))


def diagnostics_by_method(records: Sequence[dict],
                          task: str) -> Dict[str, Dict[int, Dict[str, float]]]:
    """``{method: {iteration: {quantity: mean over seeds}}}`` for the records of ``task`` that
    carry diagnostics (KD students)."""
    values: Dict[Tuple[str, int, str], List[float]] = {}
    for record in records:
        if record['task'] != task:
            continue
        for point in record.get('diagnostics') or []:
            for key in QUANTITIES:
                if point.get(key) is not None:
                    values.setdefault((record['method'], point['iter'], key), []).append(point[key])
    out: Dict[str, Dict[int, Dict[str, float]]] = {}
    for (method, iteration, key), vals in sorted(values.items()):
        out.setdefault(method, {}).setdefault(iteration, {})[key] = statistics.mean(vals)
    return out


def diagnostics_table(records: Sequence[dict], task: str) -> List[str]:
    """Markdown lines: one row per KD method and measured iteration, a column per quantity;
    empty when no record of ``task`` carries diagnostics."""
    table = diagnostics_by_method(records, task)
    if not table:
        return []
    seeds: Dict[str, List[int]] = {}
    for r in records:
        if r['task'] == task and r.get('diagnostics'):
            seeds.setdefault(r['method'], []).append(r['seed'])
    seed_sets = {tuple(sorted(s)) for s in seeds.values()}
    if len(seed_sets) == 1:
        over = _seeds_text(seed_sets.pop())
    else:  # records measured on fewer seeds than others: say which mean is over which seeds
        over = 'each method\'s seeds: ' + '; '.join(
            f'{method_title(method)}: {_seeds_text(sorted(s))}'
            for method, s in sorted(seeds.items()))
    lines = [
        f'Where the KD signal goes (mean over {over}; one training batch per measurement, see '
        '`KDDiagnosticsHook`):', '',
        '| method | iteration | ' + ' | '.join(label for _, label in QUANTITIES.values()) + ' |',
        '|---|---|' + '---|' * len(QUANTITIES)
    ]
    for method, points in table.items():
        for iteration, point in points.items():
            cells = [_cell(point.get(key)) for key in QUANTITIES]
            lines.append(f'| {method_title(method)} | {iteration} | ' + ' | '.join(cells) + ' |')
    return lines


def _seeds_text(seeds: Sequence[int]) -> str:
    return f'seed{"s" if len(seeds) > 1 else ""} {", ".join(map(str, seeds))}'


def _cell(value: Optional[float]) -> str:
    if value is None:
        return '-'
    return f'{value:.3g}' if abs(value) < 1e-2 or abs(value) >= 100 else f'{value:.3f}'


def diagnostics_figure(records: Sequence[dict], task: str, path: str) -> bool:
    """One panel per quantity, one line per KD method over the measured iterations.

    Returns:
        bool: False, and nothing written, when no record of ``task`` carries diagnostics.
    """
    table = diagnostics_by_method(records, task)
    if not table:
        return False
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = [k for k in QUANTITIES if any(k in p for pts in table.values() for p in pts.values())]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for method, points in table.items():
            its = [i for i, p in points.items() if key in p]
            if its:
                ax.plot(
                    its, [points[i][key] for i in its],
                    marker='o',
                    linewidth=1,
                    label=method_title(method).replace('Student + ', ''))
        ax.set_title(QUANTITIES[key][0], fontsize=8)
        ax.set_xlabel('iteration')
        if key == 'kd_grad_norm':
            ax.set_yscale('log')
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f'{task}: where the KD signal goes', fontsize=10)
    fig.tight_layout()
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return True
