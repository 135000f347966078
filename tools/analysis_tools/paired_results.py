"""Compare methods paired by seed from the main job's records (``results.json``).

    python tools/analysis_tools/paired_results.py docs/results/embedded_benchmark.json

Prints, per task, each KD method against no KD, FitNet and PKD: the mean of the per-seed
differences, its 95% t-interval and whether it excludes zero (see ``diffkd_mm.demo.paired``).
"""
import argparse
import json
import sys

from diffkd_mm.demo.paired import paired_table
from diffkd_mm.demo.settings import method_title


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('records', help='a results.json written by tools/run_demo.py')
    args = parser.parse_args(argv)
    try:
        with open(args.records) as f:
            records = json.load(f)
        tasks = list(dict.fromkeys(r['task'] for r in records))
    except (OSError, ValueError, TypeError, KeyError) as err:
        sys.exit(f'paired_results.py: {args.records} is not a records file of tools/run_demo.py '
                 f'(a JSON list of records with task, seed, method, value): {err}')
    for task in tasks:
        try:
            table = paired_table(records, task, method_title)
        except ValueError as err:
            sys.exit(f'paired_results.py: {args.records}: {err}')
        print(f'## {task}\n')
        print('\n'.join(table or ['(no pairs)']) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
