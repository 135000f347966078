"""The benchmark tool keeps working: a smoke run (its numbers are not asserted; the variants and
the report are tested in tests/test_benchmark)."""
import json
import os.path as osp
import subprocess
import sys

import pytest

import diffkd_mm

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark_train_step.py')


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path):
    res = subprocess.run([
        sys.executable, TOOL, '--size', '64', '--iters', '1', '--warmup', '0', '--no-scaling',
        '--variants', 'student', 'fitnet', 'diffkd', 'diffkd_per_level', 'diffkd_pkd', 'reference',
        '--out-dir',
        str(tmp_path)
    ],
                         capture_output=True,
                         text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    table = (tmp_path / 'benchmark.md').read_text()
    assert '| diffkd |' in table and '| reference |' in table
    rows = json.loads((tmp_path / 'benchmark.json').read_text())['rows']
    assert set(rows) == {
        'student', 'fitnet', 'diffkd', 'diffkd_per_level', 'diffkd_pkd', 'reference'
    }
    assert all(r['sec'] > 0 and r['mem'] > 0 for r in rows.values())
