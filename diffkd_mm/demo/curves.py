"""Validation curves (``curve.json`` of ``tools/analysis_tools/convergence_curve.py``) and
the time a method takes to reach another method's final accuracy.

A method that ends higher than FitNet may still need all of its schedule to get there, and a
method that costs more per iteration may still get there sooner. The question a user asks is
"how long until it is as good as the cheap baseline?": the first validation of the method's
curve at or above the baseline's final mean over the benchmark's seeds, in iterations and in
seconds of training. A curve that never reaches it says so ("never").
"""
import json
import statistics
from typing import List, NamedTuple, Optional, Sequence

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
    return curve


class Target(NamedTuple):
    """A method's final mean on one task's seeds, and the schedule it was measured on."""
    task: str
    method: str
    seeds: tuple
    value: float
    student_iters: int
    num_train: int
    num_val: int
    s_per_iter: Optional[float]  # median over its records; None if they lack it


def final_mean(records: Sequence[dict], task: str, method: str, seeds: Sequence[int]) -> Target:
    """The mean final value of ``method``'s records of ``task`` over ``seeds``.

    Raises:
        ValueError: a seed without a record, one with two, or records of different schedules.
    """
    if not seeds:
        raise ValueError(f'{task}: no {method} records to take the target from')
    chosen = [r for r in records if r['task'] == task and r['method'] == method]
    found = sorted(r['seed'] for r in chosen if r['seed'] in seeds)
    if found != sorted(set(seeds)):
        raise ValueError(f'{task} {method}: records of seeds {found}, expected one for each of '
                         f'{sorted(set(seeds))}')
    chosen = [r for r in chosen if r['seed'] in seeds]
    schedules = {(r['student_iters'], r['num_train'], r['num_val']) for r in chosen}
    if len(schedules) > 1:
        raise ValueError(f'{task} {method}: records of different schedules (student iterations, '
                         f'train and validation images) {sorted(schedules)}')
    [(iters, num_train, num_val)] = schedules
    paces = [r['s_per_iter'] for r in chosen if r.get('s_per_iter')]
    return Target(task, method, tuple(sorted(set(seeds))),
                  statistics.fmean(r['value'] for r in chosen), iters, num_train, num_val,
                  statistics.median(paces) if paces else None)


def check_same_schedule(curve: dict, target: Target, name: str) -> None:
    """ValueError unless ``curve`` trained on the data and schedule of ``target``'s records
    (a shorter or smaller run reaches a target at another time, or never)."""
    got = (curve['iters'][-1], curve.get('num_train'), curve['num_val'])
    want = (target.student_iters, target.num_train, target.num_val)
    if got != want:
        raise ValueError(f'{name}: a curve of {got[0]} iterations on {got[1]} train / {got[2]} '
                         f'validation images; the {target.method} records it is compared with '
                         f'ran {want[0]} on {want[1]} / {want[2]}')


class Reached(NamedTuple):
    """Where one curve first reaches a target: None for "never"."""
    iteration: Optional[int]
    train_seconds: Optional[float]  # of the curve's own run; None for an older curve.json


def first_reaching(curve: dict, value: float) -> Reached:
    """The first validation of ``curve`` at or above ``value``."""
    seconds = curve.get('train_seconds') or [None] * len(curve['iters'])
    for it, v, s in zip(curve['iters'], curve['values'], seconds):
        if v >= value:
            return Reached(it, s)
    return Reached(None, None)


def cost_ratios(records: Sequence[dict], target: Target) -> dict:
    """``{method: seconds per iteration / the target method's}`` from the median pace of
    ``target.task``'s records of each method (the records must have run under one load for
    these to mean anything; give measured ratios otherwise)."""
    paces = {}
    for r in records:
        if r['task'] == target.task and r.get('s_per_iter'):
            paces.setdefault(r['method'], []).append(r['s_per_iter'])
    if target.s_per_iter is None:
        return {}
    return {
        method: statistics.median(values) / target.s_per_iter
        for method, values in paces.items()
    }


def time_to_target_table(curves: Sequence[dict], target: Target, ratios: dict) -> List[str]:
    """Markdown lines: each curve of ``target.task`` against ``target``.

    The time a curve takes is given three ways: iterations (what no machine's load changes);
    the seconds of training of the curve's own run; and a share of the target method's whole
    training, ``iteration * ratio / its iterations``, where ``ratio`` is the curve's method's
    cost per iteration relative to the target method's (1.00: as long as the target method
    trains; below: sooner).

    Args:
        curves (list[dict]): Curves of ``target.task`` (other tasks are skipped).
        target (Target): What each curve must reach.
        ratios (dict): ``{method: cost per iteration / the target method's}`` (see
            :func:`cost_ratios`); a method without one gets no share.

    Returns:
        list[str]: The table, a line each (header first), then the target method's own row.
    """
    metric = next((c['metric'] for c in curves if c['task'] == target.task), '')
    lines = [
        f'| {target.task}: method | seed | final {metric} of the curve | first validation '
        f'>= {target.value:.2f} | seconds of training then (the curve\'s run) | '
        f'share of {target.method}\'s training |', '|---|---|---|---|---|---|'
    ]
    for curve in sorted((c for c in curves if c['task'] == target.task),
                        key=lambda c: (c['method'], c['seed'])):
        reached = first_reaching(curve, target.value)
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
        lines.append(f'| {curve["method"]} | {curve["seed"]} | {curve["values"][-1]:.2f} | ' +
                     ' | '.join(cells) + ' |')
    seeds = ', '.join(str(s) for s in target.seeds)
    lines.append(f'| {target.method} (its records, seeds {seeds}) | - | {target.value:.2f} '
                 f'(mean) | {target.student_iters} (its schedule) | - | 1.00 |')
    return lines
