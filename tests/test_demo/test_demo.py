"""The README's demo, shortened: the whole flow runs and writes a report with real numbers."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

import diffkd_mm

pytestmark = pytest.mark.slow  # subprocess runs of the tools (see pytest.ini)

ROOT = osp.dirname(osp.abspath(osp.dirname(diffkd_mm.__file__)))
METHODS = ('teacher', 'student', 'fitnet', 'pkd', 'diffkd')


def _invoke(tmp_path, *args, timeout=1500):
    """``run_demo.py --quick ARGS`` with the test's own caches and work dir."""
    env = dict(
        os.environ,
        DIFFKD_CACHE_DIR=str(tmp_path / 'cache'),
        DIFFKD_DATA_ROOT=str(tmp_path / 'data'))
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'run_demo.py'), '--quick', '--work-dir',
        str(tmp_path / 'work'), *args
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def _run(tmp_path, *args):
    out = _invoke(tmp_path, *args)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # A tool's output, not a log: a line per run, the table; the runs' output is in their folders
    printed = (out.stdout + out.stderr).count('\n')
    if '--verbose' not in args:
        assert printed <= 150, f'{printed} lines:\n' + out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_quick_demo_runs_both_tasks_and_writes_report_and_records(tmp_path):
    stdout = _run(tmp_path, '--seeds', '0', '1')
    last = stdout.strip().splitlines()[-1]
    assert last.startswith('[demo] report: ') and last.endswith('report.md')
    report_dir = osp.dirname(last[len('[demo] report: '):])
    pictures = [
        f'{task}_{name}.png' for task in ('det', 'seg')
        for name in ('diffkd_losses', 'diffkd_gate', 'diffkd_features', 'distill_terms', 'paired',
                     'diagnostics')
    ]
    for name in ('report.md', 'results.json', *pictures):
        assert osp.getsize(osp.join(report_dir, name)) > 0, name
    records = json.load(open(osp.join(report_dir, 'results.json')))
    md = open(osp.join(report_dir, 'report.md')).read()
    assert {(r['task'], r['seed'], r['method'])
            for r in records} == {(task, seed, method)
                                  for task in ('det', 'seg')
                                  for seed in (0, 1)
                                  for method in METHODS}
    for r in records:
        kd = r['method'] not in ('teacher', 'student')
        assert set(r) == {
            'task', 'seed', 'method', 'metric', 'benchmark_version', 'teacher_iters',
            'student_iters', 'num_train', 'num_val', 'value', 's_per_iter', 'device'
        } | ({'diagnostics'} if kd else set()), r.keys()
        assert r['device'] == 'cpu'
        if kd:  # at 20, 25%, 50% and the end of 10 iterations: 10, 2, 5
            assert [d['iter'] for d in r['diagnostics']] == [2, 5, 10]
            assert all(d['kd_grad_norm'] > 0 and -1 <= d['cos_student'] <= 1
                       for d in r['diagnostics'])
            assert all(('gate' in d) == (r['method'] == 'diffkd') for d in r['diagnostics'])
        assert (r['teacher_iters'], r['student_iters']) == (20, 10)  # --quick's schedule
        assert r['metric'] == dict(det='mAP', seg='mIoU')[r['task']]
        assert 0.0 <= r['value'] <= 100.0, r
        # The report is written from these records: each value is in its table.
        assert f"{r['value']:.2f}" in md, r
        assert r['s_per_iter'] > 0, r  # every model of this run was trained, none cached
    assert '| Student + DiffKD |' in md and '| Student + PKD |' in md and '± ' in md
    assert '## det' in md and '## seg' in md and '![paired differences](det_paired.png)' in md
    assert md.count('### Where the KD signal goes') == 2 and '![KD signal diagnostics]' in md
    # Two seeds: each KD method against no KD, FitNet and PKD, paired by seed, in the report
    # and in what the run prints.
    for pair in ('Student + DiffKD - Student (no KD)', 'Student + DiffKD - Student + FitNet',
                 'Student + DiffKD - Student + PKD', 'Student + PKD - Student + FitNet'):
        assert md.count(f'| {pair} | 2 | ') == 2 and stdout.count(f'| {pair} | 2 | ') == 2, pair
    # One progress line per run, ended with its metric; each run's full output in its folder.
    run_dir = osp.dirname(report_dir)
    for task in ('det', 'seg'):
        metric = dict(det='mAP', seg='mIoU')[task]
        for method in METHODS:
            finished = [
                line for line in stdout.splitlines()
                if line.startswith(f'[demo] {task} seed 1 {method} ') and f' {metric} ' in line
            ]
            assert len(finished) == 1, (task, method, stdout)
            log = open(osp.join(run_dir, f'{task}_seed1', method, 'console.log')).read()
            assert 'Iter(train)' in log and 'Saving checkpoint' in log
    assert 'Iter(train)' not in stdout
    # The teachers are cached: a second run reuses them and trains no teacher.
    again = _run(tmp_path, '--task', 'seg', '--methods', 'student', '--verbose')
    assert '[demo] seg seed 0 teacher: reusing' in again and 'teacher: training' not in again
    assert 'Iter(train)' in again  # --verbose streams the runs' output
    assert len(os.listdir(tmp_path / 'work')) == 2  # a new folder per run: nothing overwritten


def test_unknown_method_is_refused_before_any_training(tmp_path):
    out = _invoke(tmp_path, '--methods', 'fitnet', 'dfkd', timeout=300)
    assert out.returncode != 0
    assert "no config" in out.stderr and "'dfkd'" in out.stderr and 'diffkd' in out.stderr
    assert not osp.exists(tmp_path / 'data')  # nothing was drawn or trained


def test_parallel_task_seeds_then_a_resumed_run_adds_a_method(tmp_path):
    """--jobs 2: both seeds at once, a line per finished task-seed; --resume of that folder
    with one more method trains only that method and writes the report of all of them."""
    stdout = _run(tmp_path, '--task', 'det', '--seeds', '0', '1', '--methods', 'student', '--jobs',
                  '2')
    assert '[demo] 2 task-seeds, 2 at a time' in stdout
    finished = [line for line in stdout.splitlines() if ' task-seeds finished: det seed ' in line]
    assert len(finished) == 2 and all(' done; elapsed ' in line and 'ETA' in line
                                      for line in finished), stdout
    (run_dir, ) = os.listdir(tmp_path / 'work')
    run_dir = str(tmp_path / 'work' / run_dir)
    first = json.load(open(osp.join(run_dir, 'report', 'results.json')))
    assert {(r['seed'], r['method'])
            for r in first} == {(s, m)
                                for s in (0, 1)
                                for m in ('teacher', 'student')}

    again = _run(tmp_path, '--task', 'det', '--seeds', '0', '1', '--methods', 'student', 'fitnet',
                 '--resume', run_dir)
    assert f'[demo] run folder: {run_dir} (resumed)' in again
    for seed in (0, 1):
        assert f'[demo] det seed {seed} student: done in an earlier run' in again
        assert f'[demo] det seed {seed} teacher: reusing' in again  # fitnet needs its weights
        trained = [line for line in again.splitlines() if '/10 it' in line]
        assert [line for line in trained if line.startswith(f'[demo] det seed {seed} ')] == [
            line for line in trained if line.startswith(f'[demo] det seed {seed} fitnet')
        ]
        assert any(line.startswith(f'[demo] det seed {seed} fitnet') for line in trained)
    records = json.load(open(osp.join(run_dir, 'report', 'results.json')))
    assert {(r['seed'], r['method'])
            for r in records} == {(s, m)
                                  for s in (0, 1)
                                  for m in ('teacher', 'student', 'fitnet')}
    for r in first:  # the earlier runs' numbers, unchanged
        assert r in records, r
    assert len(os.listdir(tmp_path / 'work')) == 1  # no new folder

    # The same folder with other settings: refused in one line, nothing trained.
    out = _invoke(
        tmp_path,
        '--task',
        'det',
        '--methods',
        'student',
        '--student-iters',
        '11',
        '--resume',
        run_dir,
        timeout=600)
    assert out.returncode == 1 and 'Traceback' not in out.stderr, out.stderr[-3000:]
    assert 'det seed 0 student' in out.stderr and 'options it was started with' in out.stderr


def test_parallel_runs_start_students_as_their_teacher_is_done(tmp_path):
    """--parallel run: a process per run; the student without KD starts with the teacher, the KD
    students once the teacher is done; a line per finished run with the time left."""
    stdout = _run(tmp_path, '--task', 'det', '--seeds', '0', '--methods', 'diffkd', 'fitnet',
                  'student', '--parallel', 'run', '--jobs', '2')
    assert '[demo] 4 runs, 2 at a time, 1 thread(s) each' in stdout
    finished = [line for line in stdout.splitlines() if ' runs: det seed 0 ' in line]
    assert len(finished) == 4 and all('ETA' in line for line in finished), stdout
    order = [line.split(' runs: det seed 0 ')[1].split()[0] for line in finished]
    assert order.index('teacher') < min(order.index('diffkd'), order.index('fitnet'))
    (run_dir, ) = os.listdir(tmp_path / 'work')
    records = json.load(open(tmp_path / 'work' / run_dir / 'report' / 'results.json'))
    assert {r['method'] for r in records} == {'teacher', 'diffkd', 'fitnet', 'student'}
    teacher = next(r for r in records if r['method'] == 'teacher')
    assert teacher['s_per_iter'] > 0  # trained here, not taken from the cache
