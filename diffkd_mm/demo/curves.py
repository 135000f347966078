"""Validation curves (``curve.json`` of ``tools/analysis_tools/convergence_curve.py``) and
the time a method takes to reach another method's final accuracy.

A method that ends higher than FitNet may still need all of its schedule to get there, and a
method that costs more per iteration may still get there sooner. The question a user asks is
"how long until it is as good as the cheap baseline?": the first validation of the method's
curve at or above the baseline's final value, in iterations and in seconds of training. As
everywhere in the benchmark, methods are paired by seed: a seed's curve is held to the
baseline's final value on that seed (a seed with a weaker teacher is harder for every method),
and the mean curve over several seeds to the baseline's mean over the same seeds. A curve that
never reaches its target says so ("never").
"""
import json
import statistics
from typing import Dict, List, NamedTuple, Optional, Sequence

from .paired import COMPARABLE_KEYS

#: What every curve.json written by convergence_curve.py holds.
CURVE_KEYS = ('task', 'method', 'seed', 'metric', 'iters', 'values', 'num_val')


def load_curve(path: str) -> dict:
    """A ``curve.json``; ValueError naming the file if it is not one."""
    try:
        with open(path) as f:
            curve = json.load(f)
        missing = [k for k in CURVE_KEYS if k not in curve]
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f'{path}: not a readable curve.json ({err})') from None
    if missing:
        raise ValueError(f'{path}: not a curve.json of convergence_curve.py (no {missing})')
    columns = [curve['iters'], curve['values']
               ] + ([curve['train_seconds']] if 'train_seconds' in curve else [])
    if not (all(isinstance(c, list)
                for c in columns) and curve['iters'] and len({len(c)
                                                              for c in columns}) == 1
            and all(isinstance(v, (int, float)) for c in columns for v in c)):
        raise ValueError(f'{path}: its iters, values (and train_seconds) must be lists of '
                         'numbers of one length, at least one')
    return curve


def run_name(curve: dict) -> str:
    """A curve's method, and its loss weight when one was given (runs of one name pair)."""
    weight = curve.get('loss_weight')
    return curve['method'] + ('' if weight is None else f' (weight {weight:g})')


def by_run_name(curves: Sequence[dict]) -> Dict[str, List[dict]]:
    """``{run_name: its curves}`` in name order."""
    groups = {}
    for curve in sorted(curves, key=lambda c: (run_name(c), c['seed'])):
        groups.setdefault(run_name(curve), []).append(curve)
    return groups


class Target(NamedTuple):
    """A method's final values on one task, per seed, and the schedule they were measured on."""
    task: str
    method: str
    values: Dict[int, float]
    student_iters: int
    num_train: int
    num_val: int
    s_per_iter: Optional[float]  # median over its records; None if they lack it
    schedule: tuple  # its records' values of COMPARABLE_KEYS

    def mean(self, seeds: Sequence[int]) -> float:
        """The mean final value over ``seeds``."""
        return statistics.fmean(self.values[s] for s in seeds)


def target_of(records: Sequence[dict], task: str, method: str) -> Target:
    """``method``'s final values on ``task``, from its records.

    Raises:
        ValueError: no record, two records of one seed, or records of different schedules.
    """
    chosen = [r for r in records if r['task'] == task and r['method'] == method]
    if not chosen:
        raise ValueError(f'{task}: no {method} records to take the target from (the target '
                         'method)')
    for r in chosen:
        missing = [k for k in COMPARABLE_KEYS if k not in r]
        if missing:
            raise ValueError(f'{task} {method} seed {r["seed"]}: a record without {missing}: '
                             'not one of tools/run_demo.py')
    seeds = [r['seed'] for r in chosen]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f'{task} {method}: two records of one seed ({sorted(seeds)}): give each '
                         'run once')
    schedules = {tuple(r[k] for k in COMPARABLE_KEYS) for r in chosen}
    if len(schedules) > 1:
        raise ValueError(f'{task} {method}: records of different schedules or benchmark versions '
                         f'{COMPARABLE_KEYS}: {sorted(schedules)}')
    paces = [r['s_per_iter'] for r in chosen if r.get('s_per_iter')]
    return Target(task, method, {r['seed']: r['value']
                                 for r in chosen}, chosen[0]['student_iters'],
                  chosen[0]['num_train'], chosen[0]['num_val'],
                  statistics.median(paces) if paces else None, schedules.pop())


def check_curve(curve: dict, target: Target, name: str) -> None:
    """ValueError unless ``curve`` trained on the data and schedule of ``target``'s records (a
    shorter or smaller run reaches a target at another time, or never) on a seed they have."""
    got = (curve['iters'][-1], curve.get('num_train'), curve['num_val'])
    want = (target.student_iters, target.num_train, target.num_val)
    if got != want:
        raise ValueError(f'{name}: a curve of {got[0]} iterations on {got[1]} train / {got[2]} '
                         f'validation images; the {target.method} records it is compared with '
                         f'ran {want[0]} on {want[1]} / {want[2]}')
    if curve['seed'] not in target.values:
        raise ValueError(f'{name}: seed {curve["seed"]}, which the {target.task} {target.method} '
                         f'records do not have (they have {sorted(target.values)})')


class Reached(NamedTuple):
    """Where a curve first reaches a target: None for "never"."""
    iteration: Optional[int]
    train_seconds: Optional[float]  # of the curve's own run; None for an older curve.json


def first_reaching(curve: dict, value: float) -> Reached:
    """The first validation of ``curve`` at or above ``value``."""
    seconds = curve.get('train_seconds') or [None] * len(curve['iters'])
    for it, v, s in zip(curve['iters'], curve['values'], seconds):
        if v >= value:
            return Reached(it, s)
    return Reached(None, None)


def mean_curve(curves: Sequence[dict]) -> dict:
    """The mean of several seeds' curves of one method, validated at the same iterations.

    Raises:
        ValueError: two curves of one seed, or curves validated at different iterations.
    """
    seeds = sorted(c['seed'] for c in curves)
    if len(set(seeds)) < len(seeds):
        raise ValueError(f'{run_name(curves[0])}: two curves of one seed ({seeds}): give each '
                         'run once')
    iters = curves[0]['iters']
    if any(c['iters'] != iters for c in curves):
        raise ValueError(f'{run_name(curves[0])}: its curves were validated at different '
                         'iterations: run them with one --val-interval')
    # Seconds of runs on different devices mean nothing together.
    seconds = [c.get('train_seconds') for c in curves]
    if len({c.get('device') for c in curves}) > 1:
        seconds = [None]
    return dict(
        curves[0],
        seed=tuple(seeds),
        values=[statistics.fmean(v) for v in zip(*(c['values'] for c in curves))],
        train_seconds=None if None in seconds else [statistics.fmean(t) for t in zip(*seconds)])


def cost_ratios(records: Sequence[dict], target: Target) -> dict:
    """``{method: seconds per iteration / the target method's}`` from the median pace of
    ``target.task``'s records of each method on the target's schedule (the records must have
    run under one load for these to mean anything; give measured ratios otherwise)."""
    if target.s_per_iter is None:
        return {}
    paces = {}
    for r in records:
        if (r['task'] == target.task and r.get('s_per_iter')
                and tuple(r.get(k) for k in COMPARABLE_KEYS) == target.schedule):
            paces.setdefault(r['method'], []).append(r['s_per_iter'])
    return {
        method: statistics.median(values) / target.s_per_iter
        for method, values in paces.items()
    }


def time_to_target_table(curves: Sequence[dict], target: Target, ratios: dict) -> List[str]:
    """Markdown lines: each curve of ``target.task`` against ``target`` on its seed, then, for a
    method with several seeds, their mean curve against the target's mean over those seeds.

    The time a curve takes is given three ways: iterations (what no machine's load changes);
    the seconds of training of the curve's own run; and a share of the target method's whole
    training, ``iteration * ratio / its iterations``, where ``ratio`` is the curve's method's
    cost per iteration relative to the target method's (1.00: as long as the target method
    trains; below: sooner).

    Args:
        curves (list[dict]): Curves (those of other tasks are skipped), each already checked
            with :func:`check_curve`. Curves of one :func:`run_name` are one method's seeds.
        target (Target): What each curve must reach.
        ratios (dict): ``{method: cost per iteration / the target method's}`` (see
            :func:`cost_ratios`); a method without one gets no share.

    Returns:
        list[str]: The table, a line each, header first.
    """
    groups = by_run_name([c for c in curves if c['task'] == target.task])
    metric = next(iter(groups.values()))[0]['metric'] if groups else ''
    lines = [
        f'| {target.task}: method | seed | final {metric} of the curve | {target.method}\'s '
        'final (its record) | first validation at or above it | seconds of training then (the '
        f'curve\'s run) | share of {target.method}\'s training |', '|---|---|---|---|---|---|---|'
    ]
    rows = [c for seeds in groups.values() for c in seeds]
    rows += [mean_curve(seeds) for seeds in groups.values() if len(seeds) > 1]
    for curve in rows:
        seeds = curve['seed'] if isinstance(curve['seed'], tuple) else (curve['seed'], )
        value = target.mean(seeds)
        reached = first_reaching(curve, value)
        ratio = ratios.get(curve['method'])
        if reached.iteration is None:
            cells = ['never', '-', '-']
        else:
            cells = [
                f'{reached.iteration} of {curve["iters"][-1]}', '-' if reached.train_seconds is None
                else f'{reached.train_seconds:.0f} of {curve["train_seconds"][-1]:.0f}',
                '-' if ratio is None else f'{reached.iteration * ratio / target.student_iters:.2f} '
                f'({ratio:.2f}x per iteration)'
            ]
        seed = (f'mean of {", ".join(map(str, seeds))}' if len(seeds) > 1 else str(seeds[0]))
        lines.append(f'| {run_name(curve)} | {seed} | {curve["values"][-1]:.2f} | {value:.2f} | ' +
                     ' | '.join(cells) + ' |')
    return lines
