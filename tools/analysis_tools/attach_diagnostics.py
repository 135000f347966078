"""Give the demo's records made before ``KDDiagnosticsHook`` existed the diagnostics of reruns.

    python tools/run_demo.py --task seg --seeds 0 1 2 3 4 --schedule converged \
        --methods fitnet pkd diffkd --resume RUN_DIR
    python tools/analysis_tools/attach_diagnostics.py docs/results/converged_benchmark.json \
        RUN_DIR --out completed.json

A rerun's diagnostics go to the record of the same run (task, seed, method, benchmark version,
schedule) only when the rerun ends at exactly the record's value: then it trained the same way,
and what the hook measured along the way is that run's. Each rerun gets one line saying whether
its diagnostics were attached or why not. ``RERUNS`` are run folders of ``tools/run_demo.py``
(the record of each finished run is read, also while others still train) or ``results.json``
files. The records are written to ``--out``, a new file; ``--in-place`` rewrites the records
file itself.
"""
import argparse
import json
import os.path as osp
import sys

from diffkd_mm.demo.records import attach_rerun_diagnostics, read_records, run_folder_records
from diffkd_mm.fileio import atomic_write_text


def _load(path: str) -> list:
    """The records of a ``results.json`` file or of a run folder's finished runs."""
    return run_folder_records(path) if osp.isdir(path) else read_records(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('records', help='the records to complete (a results.json file)')
    parser.add_argument(
        'reruns', nargs='+', help='run folders of tools/run_demo.py or results.json files')
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument('--out', help='write the completed records here (a new file)')
    target.add_argument('--in-place', action='store_true', help='write them over the records file')
    args = parser.parse_args(argv)
    if args.out is not None and osp.exists(args.out):
        sys.exit(f'attach_diagnostics.py: --out {args.out} exists; give a new file name '
                 '(or --in-place to rewrite the records file)')
    loaded = []
    for path in [args.records] + args.reruns:
        try:
            loaded.append(_load(path))
        except (OSError, ValueError, TypeError, KeyError) as err:
            sys.exit(f'attach_diagnostics.py: {path} is not a run folder or records file of '
                     f'tools/run_demo.py (a JSON list of records with task, seed, method, '
                     f'value): {err}')
    records, reruns = loaded[0], [r for more in loaded[1:] for r in more]
    completed, lines = attach_rerun_diagnostics(records, reruns)
    print('\n'.join(lines or ['(no rerun with diagnostics)']))
    attached = sum(1 for r in completed if r.get('diagnostics'))
    out = args.records if args.in_place else args.out
    atomic_write_text(out, json.dumps(completed, indent=1) + '\n')
    print(f'{attached} of {len(completed)} records carry diagnostics; written to {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
