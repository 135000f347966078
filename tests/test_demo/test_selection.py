"""Finalists chosen on held-out seeds by the rule written down before the runs."""
import json
import os.path as osp
import subprocess
import sys

import pytest

import diffkd_mm
from diffkd_mm.demo.selection import select_finalists, selection_lines

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'paired_results.py')


def _records(table, task='seg'):
    return [
        dict(task=task, seed=seed, method=method, metric='mIoU', value=value)
        for method, per_seed in table.items() for seed, value in per_seed.items()
    ]


TABLE = dict(
    diffkd={
        101: 50.0,
        102: 52.0
    },  # mean 51
    a={
        101: 55.0,
        102: 50.0
    },  # 52.5
    b={
        101: 49.0,
        102: 52.0
    },  # 50.5: below the reference
    c={
        101: 60.0,
        102: 56.0
    },  # 58
    d={101: 70.0},  # misses a seed
    fitnet={
        101: 57.0,
        102: 57.0
    })


def test_top_k_above_the_reference_on_the_same_seeds():
    sel = select_finalists(_records(TABLE), 'seg', ['a', 'b', 'c', 'd'], 'diffkd', k=2)
    assert sel.seeds == (101, 102)
    assert sel.finalists == ['c', 'a']
    assert sel.incomplete == ['d']
    assert sel.means['fitnet'] == 57.0  # baselines are shown, never chosen
    one = select_finalists(_records(TABLE), 'seg', ['a', 'b', 'c'], 'diffkd', k=1)
    assert one.finalists == ['c']
    none = select_finalists(_records(TABLE), 'seg', ['b'], 'diffkd')
    assert none.finalists == []
    lines = selection_lines(none, 'mIoU')
    assert 'Finalists (seg): none' in lines


def test_missing_reference_is_named():
    with pytest.raises(ValueError, match="no record of the reference 'diffkd' for task 'det'"):
        select_finalists(_records(TABLE), 'det', ['a'], 'diffkd')


def test_tool_prints_the_selection(tmp_path):
    path = tmp_path / 'records.json'
    path.write_text(json.dumps(_records(TABLE)))
    out = subprocess.run(
        [sys.executable, TOOL, str(path), '--select', 'a', 'b', 'c'],
        capture_output=True,
        text=True)
    assert out.returncode == 0, out.stderr
    assert 'Finalists (seg): c, a' in out.stdout
    assert '| c | 58.00 |' in out.stdout  # method_title keeps unknown names
    out = subprocess.run(
        [sys.executable, TOOL,
         str(path), '--select', 'a', '--reference', 'official'],
        capture_output=True,
        text=True)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert "--reference: no record of the reference 'official'" in out.stderr


def test_shipped_selection_page_quotes_the_tool():
    """Every table row of the held-out selection page (seed tables, held-out means,
    diagnostics) and each task's finalists are what the tool prints from the shipped records."""
    records = osp.join(ROOT, 'docs', 'results', 'variant_selection_heldout.json')
    out = subprocess.run([
        sys.executable, TOOL, records, '--select', 'diffkd_prematch', 'diffkd_kdproof',
        'diffkd_pull'
    ],
                         capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    page = open(osp.join(ROOT, 'docs', 'results', '2026-12-04_variant_selection_heldout.md')).read()
    quoted = [
        line for line in page.splitlines()
        if line.startswith(('| Teacher |', '| Student')) and line.endswith('|')
    ]
    assert len(quoted) == 2 * (8 + 8 + 24)  # per task: seed table, means, diagnostics
    for line in quoted:
        assert line in out.stdout, line
    for task, finalists in (('det', 'diffkd_pull, diffkd_prematch'),
                            ('seg', 'diffkd_kdproof, diffkd_pull')):
        assert f'Finalists ({task}): {finalists}' in out.stdout
        first, second = finalists.split(', ')
        assert f'**Finalists ({task}): `{first}` and `{second}`**' in page
