"""When does each method's validation first reach FitNet's final accuracy, seed by seed?

    python tools/analysis_tools/convergence_curve.py --task det --method diffkd_pull --seed 0 \
        --iters 2000 --val-interval 250 --num-train 400 --num-val 300 --teacher-ckpt T.pth
    python tools/analysis_tools/time_to_target.py work_dirs/convergence/*/*/curve.json \
        --records docs/results/converged_benchmark.json --plot time_to_fitnet.png

Paired by seed, as the benchmark is: each curve, which must have trained on the records' data
and schedule, is held to the ``--target-method``'s final value on its seed, and the mean curve of
a method's seeds to that method's mean over the same seeds. Each gives the first validation at
or above its target: the iteration, the seconds of training its own run took to get there, and
the share of the target method's whole training that is:
iterations times the method's cost per iteration relative to the target method's
(``--cost-ratio``, or the ratio of the records' median paces). "never" is an answer.
"""
import argparse
import math
import os
import sys

from diffkd_mm.demo.curves import (by_run_name, check_curve, cost_ratios, load_curve, mean_curve,
                                   target_of, time_to_target_table)
from diffkd_mm.demo.records import read_records
from diffkd_mm.demo.settings import method_title
from diffkd_mm.fileio import save_figure


def plot(curves, targets, path):
    """Per task and method: each seed's curve (thin), their mean (bold) and, dashed in the same
    colour, its target (the target method's mean over the same seeds)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 3.6), squeeze=False)
    for ax, target in zip(axes[0], targets):
        mine = [c for c in curves if c['task'] == target.task]
        for name, seeds in by_run_name(mine).items():
            mean = mean_curve(seeds)
            [line] = ax.plot(
                mean['iters'],
                mean['values'],
                marker='o',
                markersize=3,
                linewidth=2,
                label=f'{method_title(seeds[0]["method"])}{name[len(seeds[0]["method"]):]}, '
                f'seed{"s" if len(seeds) > 1 else ""} {", ".join(map(str, mean["seed"]))}')
            for curve in seeds if len(seeds) > 1 else []:
                ax.plot(
                    curve['iters'],
                    curve['values'],
                    color=line.get_color(),
                    linewidth=0.6,
                    alpha=0.5)
            ax.axhline(
                target.mean(mean['seed']), linestyle='--', color=line.get_color(), linewidth=1)
        ax.set_title(
            f'{target.task}; dashed: {method_title(target.method)}, final, same seeds', fontsize=9)
        ax.set_xlabel('iteration')
        ax.set_ylabel(f'{mine[0]["metric"]} (%)')
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('curves', nargs='+', help='curve.json files of convergence_curve.py')
    parser.add_argument(
        '--records',
        nargs='+',
        required=True,
        help='results.json files (tools/run_demo.py) with the target method\'s records and, '
        'for their pace, the curves\' methods\'')
    parser.add_argument(
        '--target-method',
        default='fitnet',
        help='whose final values are the targets (default: fitnet)')
    parser.add_argument(
        '--cost-ratio',
        nargs='+',
        default=[],
        metavar='METHOD=RATIO',
        help='cost per iteration of a method relative to the target method\'s, measured apart '
        '(e.g. diffkd_pull=1.07 from benchmark_train_step.py); default: the ratio of the '
        'records\' median seconds per iteration')
    parser.add_argument(
        '--plot', metavar='PNG', help='also draw the curves and targets (not replaced if there)')
    args = parser.parse_args(argv)
    if args.plot and os.path.exists(args.plot):
        sys.exit(f'time_to_target.py: --plot {args.plot} exists: give another path or remove it')
    given = {}
    for item in args.cost_ratio:
        method, _, ratio = item.partition('=')
        try:
            value = float(ratio)
        except ValueError:
            value = math.nan
        if not method or not (math.isfinite(value) and value > 0) or method in given:
            sys.exit(f'time_to_target.py: --cost-ratio {item}: expected METHOD=RATIO, each '
                     'method once, with a finite ratio > 0, e.g. diffkd_pull=1.07')
        given[method] = value
    try:
        curves = [load_curve(path) for path in args.curves]
        records = []
        for path in args.records:
            try:
                records += read_records(path)
            except (OSError, ValueError, TypeError, KeyError) as err:
                raise ValueError(f'--records {path}: not a results.json of run_demo.py '
                                 f'({type(err).__name__}: {err})') from None
        unknown = sorted(set(given) - {c['method'] for c in curves})
        if unknown:
            raise ValueError(f'--cost-ratio {unknown}: no curve of these methods (the curves\' '
                             f'are {sorted({c["method"] for c in curves})})')
        targets = [
            target_of(records, task, args.target_method)
            for task in sorted({c['task']
                                for c in curves})
        ]
        tables = []
        for path, curve in zip(args.curves, curves):
            check_curve(curve, next(t for t in targets if t.task == curve['task']), path)
        for target in targets:
            ratios = dict(cost_ratios(records, target), **given)
            tables.append('\n'.join(time_to_target_table(curves, target, ratios)))
    except ValueError as err:
        sys.exit(f'time_to_target.py: {err}')
    print('\n\n'.join(tables))
    if args.plot:
        plot(curves, targets, args.plot)
        print(f'time_to_target.py: {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
