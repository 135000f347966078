"""The README's main job, shortened: the whole flow runs and writes a report with real numbers."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

import diffkd_mm

pytestmark = pytest.mark.slow  # subprocess runs of the tools (see pytest.ini)

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))


def test_quick_demo_writes_report(tmp_path):
    env = dict(os.environ, DIFFKD_CACHE_DIR=str(tmp_path / 'cache'),
               DIFFKD_DATA_ROOT=str(tmp_path / 'data'))
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'run_demo.py'), '--quick',
           '--work-dir', str(tmp_path / 'work')]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith('[demo] report: ') and last.endswith('report.md')
    report_dir = osp.dirname(last[len('[demo] report: '):])
    for name in ('report.md', 'report.json', 'losses.png', 'gate.png', 'features.png'):
        assert osp.getsize(osp.join(report_dir, name)) > 0, name
    summary = json.load(open(osp.join(report_dir, 'report.json')))
    assert set(summary['results']) == {'teacher', 'student', 'fitnet', 'diffkd'}
    for role, res in summary['results'].items():
        assert 0.0 <= res['metric'] <= 100.0, (role, res)
        assert res['sec_per_iter'] > 0, (role, res)
    md = open(osp.join(report_dir, 'report.md')).read()
    assert '| Student + DiffKD |' in md and '![' in md
    # The teacher is cached: a second run reuses it and trains no teacher.
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert '[demo] teacher: reusing' in again.stdout
    runs = sorted(os.listdir(tmp_path / 'work'))
    assert len(runs) == 2  # a new folder per run: nothing of the first is overwritten
