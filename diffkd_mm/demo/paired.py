"""Differences between methods paired by seed, with their 95% intervals.

Every method of a seed sees that seed's data, teacher and student initialisation, so methods are
compared seed by seed: for methods A and B on the seeds both ran,
``d_s = value(A, s) - value(B, s)``, and the report gives the mean of ``d_s`` with its 95%
t-interval ``mean ± t_{0.975, n-1} * std(d) / sqrt(n)``. A difference is significant when the
interval excludes zero.
"""
import math
import statistics
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from .settings import SCHEDULE_KEYS

#: What must be equal for two records to be compared: the benchmark's version and schedule.
COMPARABLE_KEYS = ('benchmark_version', ) + SCHEDULE_KEYS

#: The comparisons the report makes: each KD method against these baselines, when present.
BASELINES = ('student', 'fitnet', 'pkd')
#: The paper-faithful DiffKD, which each of its variants (``diffkd_*``) is also compared with.
PAPER_DIFFKD = 'diffkd'


class PairedDifference(NamedTuple):
    """``method - baseline`` on their common seeds: each seed's difference (in seed order), their
    mean and its 95% interval (None for fewer than 2 seeds)."""
    method: str
    baseline: str
    per_seed: Tuple[float, ...]
    mean: float
    low: Optional[float]
    high: Optional[float]

    @property
    def n(self) -> int:
        """The number of common seeds."""
        return len(self.per_seed)

    @property
    def significant(self) -> Optional[bool]:
        """True when the 95% interval excludes zero; None without an interval."""
        if self.low is None:
            return None
        return bool(self.low > 0 or self.high < 0)


def paired_difference(method: str, baseline: str, values: Dict[str, Dict[int, float]]):
    """``values[method] - values[baseline]`` paired by seed; None without a common seed.

    Args:
        method (str): The method compared.
        baseline (str): The method it is compared with.
        values (dict): ``{method: {seed: metric}}``.

    Returns:
        PairedDifference | None
    """
    seeds = sorted(set(values.get(method, {})) & set(values.get(baseline, {})))
    if not seeds:
        return None
    diffs = tuple(values[method][s] - values[baseline][s] for s in seeds)
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return PairedDifference(method, baseline, diffs, mean, None, None)
    from scipy.stats import t
    half = float(t.ppf(0.975, len(diffs) - 1)) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return PairedDifference(method, baseline, diffs, mean, mean - half, mean + half)


def task_values(records: Sequence[dict], task: str) -> Dict[str, Dict[int, float]]:
    """``{method: {seed: value}}`` of one task's records.

    Raises:
        ValueError: the task's records come from more than one schedule or benchmark version
            (records without these fields count as their own; without a version, version 1):
            such values are not paired; or two records are of the same method and seed.
    """
    values: Dict[str, Dict[int, float]] = {}
    schedules = set()
    for r in records:
        if r['task'] == task:
            schedules.add((r.get('benchmark_version', 1), ) +
                          tuple(r.get(k) for k in SCHEDULE_KEYS))
            seeds = values.setdefault(r['method'], {})
            if r['seed'] in seeds:
                raise ValueError(f'two records of {task} seed {r["seed"]} {r["method"]}: give '
                                 'each run once')
            seeds[r['seed']] = r['value']
    if len(schedules) > 1:
        ordered = sorted(schedules, key=lambda sched: [-1 if v is None else v for v in sched])
        described = '; '.join(', '.join(f'{k}={v}' for k, v in zip(COMPARABLE_KEYS, sched))
                              for sched in ordered)
        raise ValueError(f'the {task} records come from {len(schedules)} schedules or benchmark '
                         f'versions ({described}); compare the records of one schedule at a '
                         'time.')
    return values


def paired_differences(values: Dict[str, Dict[int, float]]) -> List[PairedDifference]:
    """Each KD method against no KD, FitNet and PKD (FitNet against no KD, PKD against no KD
    and FitNet), each DiffKD variant (``diffkd_*``) also against the paper-faithful DiffKD, for
    the pairs with at least 2 common seeds, in the order of ``values``.

    Args:
        values (dict): ``{method: {seed: metric}}``, as :func:`task_values` returns.
    """
    out = []
    for method in values:
        if method in ('teacher', 'student'):
            continue
        # A baseline is compared only with those before it: each pair appears once.
        compared = BASELINES[:BASELINES.index(method)] if method in BASELINES else BASELINES
        if method.startswith(PAPER_DIFFKD + '_'):
            compared += (PAPER_DIFFKD, )
        for baseline in compared:
            d = paired_difference(method, baseline, values)
            if d is not None and d.low is not None:  # one seed: the seed table shows it
                out.append(d)
    return out


def paired_table(records: Sequence[dict], task: str, title=lambda m: m) -> List[str]:
    """Markdown rows: each KD method against no KD, FitNet and PKD, paired by seed (FitNet
    against no KD, PKD against no KD and FitNet; DiffKD variants also against DiffKD); none for
    pairs with fewer than 2 seeds.

    Args:
        records (Sequence[dict]): Records with ``task``, ``seed``, ``method``, ``value``.
        task (str): The task whose records are compared.
        title (callable): A method's name in the table.
    """
    values = task_values(records, task)
    rows = []
    for d in paired_differences(values):
        verdict = 'yes, above' if d.low > 0 else 'yes, below' if d.high < 0 else 'no'
        rows.append(f'| {title(d.method)} - {title(d.baseline)} | {d.n} | {d.mean:+.2f} | '
                    f'[{d.low:+.2f}, {d.high:+.2f}] | {verdict} |')
    if not rows:
        return []
    return [
        'Paired by seed: the mean of the per-seed differences and its 95% t-interval; '
        'significant when the interval excludes zero.', '',
        '| difference | seeds | mean | 95% interval | significant |', '|---|---|---|---|---|', *rows
    ]
