"""The demo on a full disk: the report write fails with one line naming the file and the free
space, nothing partial is left, and the trained models' results are printed rather than lost."""
import os
import subprocess
import sys

import pytest

from diffkd_mm.demo import DemoSettings, runner
from diffkd_mm.fileio import DiskFullError
from diffkd_mm.testing import simulated_full_disk

CURVES = {'distill.loss_diffkd_kd': [1.0, 0.5, 0.25], 'distill.diffkd_gate': [0.5, 0.7, 0.9]}
SCHEDULE = dict(teacher_iters=800, student_iters=300, num_train=400, num_val=100)
RECORDS = [
    dict(
        task='seg',
        seed=0,
        method=m,
        metric='mIoU',
        benchmark_version=2,
        **SCHEDULE,
        value=v,
        s_per_iter=0.1,
        curves=c)
    for m, v, c in (('teacher', 45.5, {}), ('student', 33.25, {}), ('diffkd', 39.75, CURVES))
]


@pytest.mark.parametrize('name', ['report.md', 'results.json', 'seg_diffkd_gate.png'])
def test_report_on_a_full_disk_prints_the_results(tmp_path, monkeypatch, capsys, name):
    monkeypatch.setattr(runner, 'run_task', lambda *args: RECORDS)
    settings = DemoSettings(tasks=('seg', ), methods=('student', 'diffkd'))
    with simulated_full_disk(name, budget=10):
        with pytest.raises(DiskFullError) as info:
            runner.run_demo(str(tmp_path), settings)
    text = str(info.value)
    assert '\n' not in text and text.startswith('no space left on device while writing ')
    assert text.split(' (')[0].endswith(name)
    out = capsys.readouterr().out
    assert '[demo] the report could not be written; the results were:' in out
    for r in RECORDS:
        assert f'{r["task"]} seed 0 {r["method"]}: mIoU {r["value"]:.2f}' in out
    (run_dir, ) = os.listdir(tmp_path)
    assert not [f for f in os.listdir(tmp_path / run_dir) if f.endswith('.tmp')]


def test_run_demo_tool_turns_a_full_disk_into_one_line(tmp_path):
    """tools/run_demo.py's own handler: no traceback, the message and what to do."""
    code = '''
import runpy, sys
from diffkd_mm.demo import runner
from diffkd_mm.fileio import DiskFullError
def full(*args, **kwargs):
    raise DiskFullError('/x/report.md', OSError(28, 'No space left on device'))
runner.run_task = full
sys.modules['diffkd_mm.demo'].run_demo = lambda *a, **k: full()
sys.argv = ['run_demo.py', '--quick', '--work-dir', sys.argv[1]]
runpy.run_path('tools/run_demo.py', run_name='__main__')
'''
    out = subprocess.run([sys.executable, '-c', code, str(tmp_path)],
                         capture_output=True,
                         text=True,
                         cwd=os.path.dirname(
                             os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         timeout=300)
    assert out.returncode == 1 and 'Traceback' not in out.stderr, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1].startswith(
        'run_demo.py: no space left on device while writing /x/report.md (')
    assert out.stderr.strip().endswith(
        'Free some space and run again with --resume RUN_DIR (the run folder printed first): the '
        'data, the teachers and the finished runs are reused.')
