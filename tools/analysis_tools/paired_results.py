"""Compare methods paired by seed from the demo's records (``results.json``).

    python tools/analysis_tools/paired_results.py docs/results/embedded_benchmark.json
    python tools/analysis_tools/paired_results.py RUN_A/report/results.json B/report/results.json

Several files are read as one set of records (seeds run apart, on other machines); a run given
twice, or records of two schedules or benchmark versions of one task, are refused in one line.

Prints, per task, the table of the demo's report (a column per seed, mean ± std, the share
of the teacher-student gap closed), then each KD method against no KD, FitNet and PKD: the mean
of the per-seed differences, its 95% t-interval and whether it excludes zero (see
``diffkd_mm.demo.paired``). ``--plot PNG`` draws those differences, each seed a dot;
``--plot-diagnostics STEM`` draws each task's KD-signal diagnostics into ``STEM_<task>.png``.
"""
import argparse
import os
import sys

from diffkd_mm.demo.diagnostics_report import diagnostics_figure, diagnostics_table
from diffkd_mm.demo.figures import paired_figure
from diffkd_mm.demo.paired import paired_table
from diffkd_mm.demo.records import read_records
from diffkd_mm.demo.report import task_table
from diffkd_mm.demo.selection import select_finalists, selection_lines
from diffkd_mm.demo.settings import method_title


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        'records', nargs='+', help='results.json files written by tools/run_demo.py')
    parser.add_argument(
        '--seeds',
        nargs='+',
        type=int,
        metavar='SEED',
        help='only the records of these seeds (e.g. those every method has diagnostics for)')
    parser.add_argument(
        '--plot',
        metavar='PNG',
        help='also draw the paired differences of every task into this picture (an existing '
        'file is not replaced)')
    parser.add_argument(
        '--plot-diagnostics',
        metavar='STEM',
        help='also draw the KD-signal diagnostics of each task that has them into '
        'STEM_<task>.png (existing files are not replaced)')
    parser.add_argument(
        '--select',
        nargs='+',
        metavar='METHOD',
        help='candidates to choose finalists from, per task: the (at most) --finalists '
        'highest held-out means, each above the --reference method\'s')
    parser.add_argument(
        '--reference', default='diffkd', help='what a finalist must beat (default: diffkd)')
    parser.add_argument(
        '--finalists', type=int, default=2, help='at most this many per task (default: 2)')
    args = parser.parse_args(argv)
    records = []
    for path in args.records:
        try:
            loaded = read_records(path)
        except (OSError, ValueError, TypeError, KeyError) as err:
            sys.exit(f'paired_results.py: {path} is not a records file of tools/run_demo.py '
                     f'(a JSON list of records with task, seed, method, value): {err}')
        records += loaded
    if args.seeds is not None:
        records = [r for r in records if r['seed'] in args.seeds]
        if not records:
            sys.exit(f'paired_results.py: --seeds {" ".join(map(str, args.seeds))}: no record '
                     'of these seeds')
    named = ', '.join(args.records)
    if args.plot and os.path.exists(args.plot):
        sys.exit(f'paired_results.py: --plot {args.plot} exists; give a new file name')
    tasks = list(dict.fromkeys(r['task'] for r in records))
    diagnostics_plots = {
        task: f'{args.plot_diagnostics}_{task}.png'
        for task in tasks if args.plot_diagnostics and diagnostics_table(records, task)
    }
    for path in diagnostics_plots.values():
        if os.path.exists(path):
            sys.exit(f'paired_results.py: --plot-diagnostics {args.plot_diagnostics}: {path} '
                     'exists; give a new stem')
    for task in tasks:
        try:
            table = paired_table(records, task, method_title)
        except ValueError as err:
            sys.exit(f'paired_results.py: {named}: {err}')
        print(f'## {task}\n')
        print('\n'.join(task_table(records, task)) + '\n')
        print('\n'.join(table or ['(no pairs)']) + '\n')
        diagnostics = diagnostics_table(records, task)
        if diagnostics:
            print('\n'.join(diagnostics) + '\n')
        if args.select:
            try:
                selection = select_finalists(records, task, args.select, args.reference,
                                             args.finalists)
            except ValueError as err:
                sys.exit(f'paired_results.py: --reference: {err}')
            metric = next(r['metric'] for r in records if r['task'] == task)
            print('\n'.join(selection_lines(selection, metric)) + '\n')
    for task, path in diagnostics_plots.items():
        diagnostics_figure(records, task, path)
        print(f'{task} diagnostics drawn: {path}')
    if args.plot_diagnostics and not diagnostics_plots:
        print('no record carries diagnostics: nothing drawn')
    if args.plot:
        if paired_figure(records, tasks, args.plot):
            print(f'paired differences drawn: {args.plot}')
        else:
            print('no pair with 2 seeds or more: nothing drawn')
    return 0


if __name__ == '__main__':
    sys.exit(main())
