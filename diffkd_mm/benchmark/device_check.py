"""The one table of ``tools/device_check.sh``: its CUDA tests, its demo run and the cost of
DiffKD, FitNet and PKD on COCO-size inputs, read from the files each step leaves in its folder."""
import glob
import json
import os.path as osp
import re
from typing import List

#: The methods whose cost the check compares, FitNet first (the ratios' base); DiffKD's graph
#: mode where it was timed (on CUDA).
METHODS = ('fitnet', 'pkd', 'diffkd', 'diffkd_graph', 'diffkd_cudagraphs')


def tests_line(log: str) -> str:
    """pytest's summary (``'3 passed, 8 skipped in 3.1s'``) from its log, or why there is none."""
    if not osp.isfile(log):
        return 'not run'
    with open(log) as f:
        lines = [line.strip('= \n') for line in f if re.search(r'\b(passed|failed|error)', line)]
    return lines[-1] if lines else 'no pytest summary in ' + osp.basename(log)


def demo_line(status: str) -> str:
    """``'exit 0 in 95 s'`` from the ``<exit code> <seconds>`` the script wrote."""
    if not osp.isfile(status):
        return 'not run'
    with open(status) as f:
        code, seconds = f.read().split()[:2]
    return f'exit {code} in {float(seconds):.0f} s'


def cost_rows(folder: str) -> List[str]:
    """One Markdown row per pair, precision and method from ``bench_*/benchmark.json``: ms per
    iteration and peak memory, each with its ratio to FitNet of the same pair and precision."""
    rows = []
    for path in sorted(glob.glob(osp.join(folder, 'bench_*', 'benchmark.json'))):
        with open(path) as f:
            result = json.load(f)
        precision = osp.basename(osp.dirname(path)).rsplit('_', 1)[-1]
        size = f'{result["size"]}x{result.get("width", result["size"])}'
        base = result['rows'].get('fitnet')
        for method in METHODS:
            row = result['rows'].get(method)
            if row is None:
                continue
            time_ratio = f'{row["sec"] / base["sec"]:.2f}' if base else '-'
            mem_ratio = f'{row["mem"] / base["mem"]:.2f}' if base and base['mem'] else '-'
            rows.append(f'| {result["pair"]} | {size}, batch {result["batch"]} | {precision} | '
                        f'{method} | {1000 * row["sec"]:.1f} | {time_ratio} | '
                        f'{row["mem"] / 2**20:.0f} | {mem_ratio} |')
    return rows


def device_check_table(folder: str, device: str) -> List[str]:
    """The check's Markdown page, as lines."""
    lines = [
        f'# Device check: {device}', '', f'- CUDA tests (`tests/test_cuda.py`): '
        f'{tests_line(osp.join(folder, "cuda_tests.log"))}',
        f'- the demo, `--quick`: {demo_line(osp.join(folder, "demo.status"))}', '',
        '| pair | input | precision | method | ms / iter | x FitNet | peak memory (MiB) | '
        'mem x FitNet |', '|---|---|---|---|---|---|---|---|'
    ]
    rows = cost_rows(folder)
    for path in sorted(glob.glob(osp.join(folder, 'bench_*.skipped'))):
        pair, precision = osp.basename(path)[len('bench_'):-len('.skipped')].rsplit('_', 1)
        with open(path) as f:
            rows.append(f'| {pair} | | {precision} | not measured: {f.read().strip()} '
                        '| | | | |')
    return lines + (rows or ['| (no cost measured) | | | | | | | |'])
