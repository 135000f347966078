"""tools/analysis_tools/convergence_curve.py: a model of the demo, validated along
the way, on tiny data."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'convergence_curve.py')


def run(tmp_path, *args):
    return subprocess.run([sys.executable, TOOL, *args, '--work-dir',
                           str(tmp_path / 'work')],
                          capture_output=True,
                          text=True,
                          env=dict(os.environ, DIFFKD_DATA_ROOT=str(tmp_path / 'data')),
                          timeout=600)


@pytest.mark.slow
def test_curve_has_one_point_per_validation_and_the_end(tmp_path):
    out = run(tmp_path, '--task', 'det', '--method', 'student', '--seed', '3', '--iters', '5',
              '--val-interval', '2', '--num-train', '16', '--num-val', '8')
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    points = [line for line in out.stdout.splitlines() if ': iteration ' in line]
    assert [int(line.split()[3]) for line in points] == [2, 4, 5]
    assert len(out.stdout.splitlines()) <= 10  # the run's own log is in its folder
    [curve_file] = list((tmp_path / 'work').glob('*/*/curve.json'))
    curve = json.loads(curve_file.read_text())
    assert curve['iters'] == [2, 4, 5] and len(curve['values']) == 3
    assert (curve['num_train'], curve['num_val'], curve['metric']) == (16, 8, 'mAP')
    assert (curve_file.parent / 'curve.png').stat().st_size > 0
    assert (curve_file.parent / 'iter_5.pth').is_file()
    # That training checkpoint (optimizer state, logs) is a teacher for a KD student.
    out = run(tmp_path, '--task', 'det', '--method', 'diffkd', '--seed', '3', '--iters', '2',
              '--val-interval', '2', '--num-train', '16', '--num-val', '8', '--teacher-ckpt',
              str(curve_file.parent / 'iter_5.pth'), '--loss-weight', '3')
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert 'det_diffkd_seed3_2it_w3: iteration      2  mAP' in out.stdout
    [curve_file] = list((tmp_path / 'work').glob('det_diffkd_*/*/curve.json'))
    assert json.loads(curve_file.read_text())['loss_weight'] == 3.0
    [config] = list(curve_file.parent.glob('det_diffkd.py'))  # the config the run used
    assert 'loss_weight=3.0' in config.read_text()  # its one DiffKD entry (3 FPN levels)


def test_kd_student_without_teacher_and_unknown_method_are_named(tmp_path):
    out = run(tmp_path, '--task', 'seg', '--method', 'diffkd', '--seed', '0', '--iters', '4',
              '--val-interval', '2')
    assert out.returncode == 2 and 'Traceback' not in out.stderr
    assert '--method diffkd distils from a teacher: give --teacher-ckpt' in out.stderr
    out = run(tmp_path, '--task', 'seg', '--method', 'difkd', '--seed', '0', '--iters', '5',
              '--val-interval', '0')
    assert out.returncode == 2 and '--val-interval must be a positive int, got 0' in out.stderr
    for method, weight in (('teacher', '3'), ('fitnet', '0')):
        out = run(tmp_path, '--task', 'seg', '--method', method, '--seed', '0', '--iters', '5',
                  '--val-interval', '5', '--loss-weight', weight)
        assert out.returncode == 2 and 'a number > 0, for a KD student only' in out.stderr


def _curve(path, **changes):
    curve = dict(
        task='seg',
        method='student',
        seed=100,
        metric='mIoU',
        iters=[250, 500],
        values=[30.0, 40.5],
        num_train=400,
        num_val=300)
    curve.update(changes)
    path.write_text(json.dumps(curve))
    return str(path)


def test_plot_curves_draws_several_runs_and_names_a_bad_file(tmp_path):
    tool = osp.join(ROOT, 'tools', 'analysis_tools', 'plot_curves.py')
    files = [
        _curve(tmp_path / 'a.json'),
        _curve(tmp_path / 'b.json', method='teacher', values=[35.0, 50.0]),
        _curve(tmp_path / 'c.json', method='fitnet', loss_weight=0.3)
    ]
    out = subprocess.run([sys.executable, tool, *files, '--out',
                          str(tmp_path / 'p.png')],
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / 'p.png').stat().st_size > 0
    sys.path.insert(0, osp.dirname(tool))
    try:
        import plot_curves
    finally:
        sys.path.pop(0)
    assert plot_curves.label(plot_curves.load_curve(
        files[2])) == ('fitnet (weight 0.3), seed 100, 300 val')
    (tmp_path / 'bad.json').write_text('{"task": "seg"}')
    mixed = _curve(tmp_path / 'd.json', metric='mAP')
    for args, message in (([str(tmp_path / 'bad.json')], 'not a curve.json of convergence_curve'),
                          ([files[0], mixed], 'different metrics')):
        out = subprocess.run([sys.executable, tool, *args, '--out',
                              str(tmp_path / 'q.png')],
                             capture_output=True,
                             text=True,
                             timeout=300)
        assert out.returncode == 1 and 'Traceback' not in out.stderr and message in out.stderr
    assert not (tmp_path / 'q.png').exists()


@pytest.mark.slow
def test_validating_along_the_way_trains_as_validating_at_the_end(tmp_path):
    """A curve's last point is the final value of the same run without its validations (a
    validation's data loader draws from the random state DiffKD's noise is drawn from next)."""
    import torch
    common = ('--seed', '4', '--num-train', '16', '--num-val', '8')
    out = run(tmp_path / 'teacher', '--task', 'det', '--method', 'student', '--iters', '2',
              '--val-interval', '2', *common)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    [teacher] = list((tmp_path / 'teacher' / 'work').glob('*/*/iter_2.pth'))
    weights, finals = {}, {}
    for interval in ('2', '6'):
        out = run(tmp_path / interval, '--task', 'det', '--method', 'diffkd', '--iters', '6',
                  '--val-interval', interval, '--teacher-ckpt', str(teacher), *common)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        [ckpt] = list((tmp_path / interval / 'work').glob('*/*/iter_6.pth'))
        weights[interval] = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
        curve = json.loads((ckpt.parent / 'curve.json').read_text())
        assert curve['iters'] == ([2, 4, 6] if interval == '2' else [6])
        assert len(curve['train_seconds']) == len(curve['iters'])
        assert 0 < curve['train_seconds'][0] and curve['train_seconds'] == sorted(
            curve['train_seconds'])
        finals[interval] = curve['values'][-1]
    assert finals['2'] == finals['6']  # the same last point, and the same weights:
    assert weights['2'].keys() == weights['6'].keys()
    assert all(torch.equal(weights['2'][k], weights['6'][k]) for k in weights['2'])
