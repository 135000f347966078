"""Choosing finalists on held-out seeds, by a rule written down before the runs.

The rule: per task, the (at most) ``k`` candidates with the highest mean over the held-out seeds,
keeping only those whose mean is above the reference method's (official DiffKD). A candidate
that misses a seed the reference ran is not ranked: every candidate is judged on the same seeds.
"""
import statistics
from typing import Dict, List, NamedTuple, Sequence

from .settings import method_title


class Selection(NamedTuple):
    """The outcome of the rule for one task."""
    task: str
    seeds: tuple
    means: Dict[str, float]  # every method with a value on every seed, baselines included
    finalists: List[str]
    incomplete: List[str]  # candidates that miss a seed


def select_finalists(records: Sequence[dict],
                     task: str,
                     candidates: Sequence[str],
                     reference: str,
                     k: int = 2) -> Selection:
    """Apply the rule to the records of ``task``.

    Args:
        records (Sequence[dict]): Records with ``task``, ``seed``, ``method``, ``value``.
        task (str): The task.
        candidates (Sequence[str]): The methods to choose from.
        reference (str): The method a finalist must beat on average.
        k (int): At most this many finalists.

    Raises:
        ValueError: the reference has no record of ``task``.
    """
    values: Dict[str, Dict[int, float]] = {}
    for r in records:
        if r['task'] == task:
            values.setdefault(r['method'], {})[r['seed']] = r['value']
    if reference not in values:
        raise ValueError(f'no record of the reference {reference!r} for task {task!r}')
    seeds = tuple(sorted(values[reference]))
    means = {
        method: statistics.mean(by_seed[s] for s in seeds)
        for method, by_seed in values.items() if all(s in by_seed for s in seeds)
    }
    incomplete = [m for m in candidates if m not in means]
    ranked = sorted((m for m in candidates if m in means), key=lambda m: -means[m])
    finalists = [m for m in ranked if means[m] > means[reference]][:k]
    return Selection(task, seeds, means, finalists, incomplete)


def selection_lines(selection: Selection, metric: str) -> List[str]:
    """Markdown: held-out means of every method, best first, and the finalists."""
    lines = [
        f'Held-out mean {metric} over seeds {", ".join(map(str, selection.seeds))}:', '',
        '| method | mean |', '|---|---|'
    ]
    for method, mean in sorted(selection.means.items(), key=lambda item: -item[1]):
        lines.append(f'| {method_title(method)} | {mean:.2f} |')
    chosen = ', '.join(selection.finalists) if selection.finalists else 'none'
    lines += ['', f'Finalists ({selection.task}): {chosen}']
    if selection.incomplete:
        lines.append(f'Not ranked (a held-out seed missing): {", ".join(selection.incomplete)}')
    return lines
