"""Diagnostics of reruns attached to the records made before the diagnostics hook existed, and
the table of means when methods were measured on different seeds."""
import json
import os.path as osp
import subprocess
import sys

import diffkd_mm
from diffkd_mm.demo.diagnostics_report import diagnostics_table
from diffkd_mm.demo.records import attach_rerun_diagnostics, run_folder_records

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'attach_diagnostics.py')
SCHEDULE = dict(
    benchmark_version=2, teacher_iters=2000, student_iters=2000, num_train=400, num_val=300)


def _record(seed, method, value, diagnostics=None, **changes):
    record = dict(task='seg', seed=seed, method=method, metric='mIoU', value=value, **SCHEDULE)
    if diagnostics is not None:
        record['diagnostics'] = diagnostics
    record.update(changes)
    return record


def _points(grad_norm, cos=0.5):
    return [dict(iter=i, kd_grad_norm=grad_norm, cos_student=cos) for i in (20, 500)]


def test_only_a_rerun_that_ends_where_the_record_did_gets_attached():
    records = [
        _record(0, 'fitnet', 58.54),
        _record(1, 'fitnet', 57.53),
        _record(0, 'pkd', 57.03, diagnostics=_points(0.1)),
        _record(0, 'student', 46.11),
    ]
    reruns = [
        _record(0, 'fitnet', 58.54, _points(0.4)),  # the same run: attached
        _record(1, 'fitnet', 57.50, _points(0.3)),  # ended elsewhere: not that run
        _record(0, 'pkd', 57.03, _points(0.2)),  # the record has its own: kept
        _record(2, 'fitnet', 57.01, _points(0.3)),  # no such record
        _record(0, 'fitnet', 58.54, _points(0.4), student_iters=1000),  # another schedule
        _record(0, 'student', 46.11),  # no diagnostics to give
    ]
    before = json.dumps(records)
    completed, lines = attach_rerun_diagnostics(records, reruns)
    assert json.dumps(records) == before  # the input is not changed
    assert [r.get('diagnostics') for r in completed] == [_points(0.4), None, _points(0.1), None]
    assert lines == [
        'seg seed 0 fitnet: 58.54 again; diagnostics attached',
        'seg seed 1 fitnet: the rerun ended at 57.5, the record at 57.53: not the same run, '
        'left out',
        "seg seed 0 pkd: the record has diagnostics already: kept (the rerun's differ)",
        'seg seed 2 fitnet: no record of this run (task, seed, method, benchmark version and '
        'schedule) to attach to: left out',
        'seg seed 0 fitnet: no record of this run (task, seed, method, benchmark version and '
        'schedule) to attach to: left out',
    ]


def test_the_table_says_which_seeds_each_mean_is_over():
    same = [_record(s, m, 50.0, _points(0.1)) for s in (0, 1) for m in ('fitnet', 'pkd')]
    assert diagnostics_table(same, 'seg')[0].startswith('Where the KD signal goes (mean over '
                                                        'seeds 0, 1; one training batch')
    fewer = same[:3]  # PKD measured on seed 0 only
    assert diagnostics_table(fewer, 'seg')[0].startswith(
        "Where the KD signal goes (mean over each method's seeds: Student + FitNet: seeds 0, 1; "
        'Student + PKD: seed 0; one training batch')


def _run_folder(tmp_path, records):
    for record in records:
        folder = tmp_path / 'run' / f'{record["task"]}_seed{record["seed"]}' / record['method']
        folder.mkdir(parents=True)
        (folder / 'record.json').write_text(json.dumps(dict(record, run_digest='abc')))
    return tmp_path / 'run'


def test_tool_reads_a_run_folder_and_never_replaces_a_file_unasked(tmp_path):
    shipped = tmp_path / 'shipped.json'
    shipped.write_text(json.dumps([_record(0, 'fitnet', 58.54), _record(0, 'pkd', 57.03)]))
    run = _run_folder(tmp_path, [_record(0, 'fitnet', 58.54, _points(0.4))])
    assert run_folder_records(str(run)) == [_record(0, 'fitnet', 58.54, _points(0.4))]
    out = tmp_path / 'out.json'

    def tool(*args):
        return subprocess.run([sys.executable, TOOL,
                               str(shipped), str(run), *args],
                              capture_output=True,
                              text=True,
                              timeout=300)

    done = tool('--out', str(out))
    assert done.returncode == 0, done.stderr
    assert 'seg seed 0 fitnet: 58.54 again; diagnostics attached' in done.stdout
    assert '1 of 2 records carry diagnostics' in done.stdout
    assert json.loads(out.read_text())[0]['diagnostics'] == _points(0.4)
    again = tool('--out', str(out))
    assert again.returncode == 1 and 'Traceback' not in again.stderr
    assert f'--out {out} exists; give a new file name' in again.stderr
    in_place = tool('--in-place')
    assert in_place.returncode == 0, in_place.stderr
    assert json.loads(shipped.read_text()) == json.loads(out.read_text())
    shipped.write_text('{"not": "records"}')
    bad = tool('--out', str(tmp_path / 'other.json'))
    assert bad.returncode == 1 and 'Traceback' not in bad.stderr
    assert 'is not a run folder or records file of tools/run_demo.py' in bad.stderr
    shipped.write_text(json.dumps([_record(0, 'fitnet', 58.54)]))
    damaged = run / 'seg_seed0' / 'fitnet' / 'record.json'
    damaged.write_text('{"task": "se')  # cut short
    cut = tool('--out', str(tmp_path / 'other.json'))
    assert cut.returncode == 1 and 'Traceback' not in cut.stderr
    assert str(damaged) in cut.stderr


def test_paired_tool_draws_the_diagnostics_of_each_task_that_has_them(tmp_path):
    records = tmp_path / 'records.json'
    seg = [_record(s, m, 50.0 + s, _points(0.1)) for s in (0, 1) for m in ('fitnet', 'pkd')]
    det = [dict(r, task='det', metric='mAP', diagnostics=None) for r in seg]
    records.write_text(json.dumps(seg + det))
    tool = osp.join(ROOT, 'tools', 'analysis_tools', 'paired_results.py')

    def draw():
        return subprocess.run(
            [sys.executable, tool,
             str(records), '--plot-diagnostics',
             str(tmp_path / 'diag')],
            capture_output=True,
            text=True,
            timeout=300)

    done = draw()
    assert done.returncode == 0, done.stderr
    assert f'seg diagnostics drawn: {tmp_path / "diag_seg.png"}' in done.stdout
    assert (tmp_path / 'diag_seg.png').stat().st_size > 0
    assert not (tmp_path / 'diag_det.png').exists()  # no diagnostics there: nothing drawn
    again = draw()
    assert again.returncode == 1 and 'Traceback' not in again.stderr
    assert f'{tmp_path / "diag_seg.png"} exists; give a new stem' in again.stderr


def test_paired_tool_keeps_the_seeds_asked_for(tmp_path):
    records = tmp_path / 'records.json'
    records.write_text(
        json.dumps(
            [_record(s, m, 50.0 + s, _points(0.1 + s)) for s in (0, 1) for m in ('fitnet', 'pkd')]))
    tool = osp.join(ROOT, 'tools', 'analysis_tools', 'paired_results.py')

    def run(*seeds):
        return subprocess.run(
            [sys.executable, tool, str(records), '--seeds', *seeds],
            capture_output=True,
            text=True,
            timeout=300)

    one = run('1')
    assert one.returncode == 0, one.stderr
    assert '| model | seed 1 |' in one.stdout and 'seed 0' not in one.stdout
    assert '| Student + FitNet | 20 | 1.100 |' in one.stdout  # seed 1's diagnostics only
    none = run('7')
    assert none.returncode == 1 and 'Traceback' not in none.stderr
    assert '--seeds 7: no record of these seeds' in none.stderr


def test_shipped_converged_records_carry_the_diagnostics_their_page_quotes():
    """The baselines and the paper's DiffKD, trained again with the hook on and ending where
    their shipped records did, carry its measurements; the page's tables are what the tool
    prints on the seeds every method was measured on."""
    results = osp.join(ROOT, 'docs', 'results')
    converged = osp.join(results, 'converged_benchmark.json')
    with open(converged) as f:
        records = json.load(f)
    kd = [r['method'] not in ('teacher', 'student') for r in records]
    assert sum(kd) == 35
    for r, distilled in zip(records, kd):  # four iterations each; none without KD
        assert len(r.get('diagnostics') or ()) == (4 if distilled else 0), r['method']
    seeds = [0, 1, 2, 3, 4]  # the seeds of the page's tables
    tool = osp.join(ROOT, 'tools', 'analysis_tools', 'paired_results.py')
    out = subprocess.run([
        sys.executable, tool, converged,
        osp.join(results, 'confirmation_seeds0-4.json'), '--seeds', *map(str, seeds)
    ],
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    page = open(osp.join(results, '2026-12-05_converged_diagnostics.md')).read()
    quoted = [line for line in page.splitlines() if line.startswith('| Student + ')]
    assert len(quoted) == (5 + 6) * 4  # seg's five methods, det's six, four iterations each
    for line in quoted:
        assert line in out.stdout, line
