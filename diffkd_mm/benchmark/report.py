"""The cost benchmark's report: Markdown tables for people, the same numbers as JSON."""
import json
import os.path as osp
from typing import Dict, List, Optional

from ..fileio import atomic_write_text
from .variants import SAME_MATH_AS_DIFFKD


def diffkd_math(kind: str) -> str:
    """How a variant's DiffKD relates to the config's: default, same math, changed, or none."""
    if not kind.startswith('diffkd') and kind != 'reference':
        return '-'
    if kind == 'diffkd':
        return 'default'
    return 'same' if kind in SAME_MATH_AS_DIFFKD else 'changed'


def _ratio(value: float, base: Optional[dict], key: str) -> str:
    return f'{value / base[key]:.2f}' if base else '-'


def cost_table(title: str, setting: str, rows: Dict[str, dict]) -> List[str]:
    """Time and memory of each variant, and their ratios to FitNet and to the reference; with
    operator counts (``--count-ops``), the operators of one iteration and their ratio to FitNet.

    Args:
        title (str): The page title.
        setting (str): One sentence on the device, the statistics and what memory means.
        rows (dict): Per variant, ``sec`` (median seconds per iteration) and ``mem`` (bytes);
            optionally ``ops`` (operators that launch work) and ``dispatched`` (all operators).
    """
    fit, ref = rows.get('fitnet'), rows.get('reference')
    counted = all('ops' in r for r in rows.values())
    head = ('| variant | DiffKD math | s / iter | x FitNet | x reference | memory (MiB) | '
            'mem x FitNet |')
    rule = '|---|---|---|---|---|---|---|'
    if counted:
        head += ' ops / iter | ops x FitNet | all dispatched |'
        rule += '---|---|---|'
    lines = [f'# {title}', '', setting, '', head, rule]
    for kind, r in rows.items():
        line = (f'| {kind} | {diffkd_math(kind)} | {r["sec"]:.3f} | '
                f'{_ratio(r["sec"], fit, "sec")} | {_ratio(r["sec"], ref, "sec")} | '
                f'{r["mem"] / 2**20:.1f} | {_ratio(r["mem"], fit, "mem")} |')
        if counted:
            line += f' {r["ops"]} | {_ratio(r["ops"], fit, "ops")} | {r["dispatched"]} |'
        lines.append(line)
    if counted:
        lines += [
            '', 'ops: the ATen operators one training iteration (forward, backward, optimizer '
            'step) dispatches that launch work (views, aliases and bare allocations left out): on '
            'a GPU, about one kernel launch each. all dispatched: every operator.'
        ]
    return lines


def parts_table(parts: Dict[str, float],
                channels: int,
                size: int,
                ops: Optional[Dict[str, int]] = None) -> List[str]:
    """Seconds of each part of one DiffKD branch, and its share of their sum; with ``ops``, the
    operators that launch work in each part's forward and backward."""
    total = sum(parts.values())
    head, rule = '| part | s | share |', '|---|---|---|'
    if ops:
        head, rule = head + ' ops |', rule + '---|'
    return [
        '', f'## DiffKD branch, one level ({channels} channels, {size}x{size}): fwd+bwd by part',
        '', head, rule, *(f'| {k} | {v:.4f} | {v / total:.0%} |' + (f' {ops[k]} |' if ops else '')
                          for k, v in parts.items())
    ]


def scaling_table(scaling: List[dict]) -> List[str]:
    """The branch alone against the reference as size, channels, steps and levels grow."""
    return [
        '', '## DiffKD branch alone, fwd+bwd: scaling (first level size, halving per level)', '',
        '| varied | size | channels | steps | levels | ours (s) | reference (s) | '
        'ours / reference |', '|---|---|---|---|---|---|---|---|',
        *(f'| {r["what"]} | {r["size"]} | {r["channels"]} | {r["steps"]} | {r["levels"]} '
          f'| {r["ours"]:.4f} | {r["reference"]:.4f} | {r["ours"] / r["reference"]:.2f} |'
          for r in scaling)
    ]


def write_report(out_dir: str, lines: List[str], result: dict) -> str:
    """Write ``benchmark.md`` and ``benchmark.json`` into ``out_dir``; returns the Markdown path."""
    path = osp.join(out_dir, 'benchmark.md')
    atomic_write_text(path, '\n'.join(lines) + '\n')
    atomic_write_text(osp.join(out_dir, 'benchmark.json'), json.dumps(result, indent=2) + '\n')
    return path
