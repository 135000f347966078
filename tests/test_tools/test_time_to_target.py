"""tools/analysis_tools/time_to_target.py: when a curve first reaches another method's final
value, seed by seed, on curves and records made here."""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest

from diffkd_mm.demo.curves import (check_curve, cost_ratios, first_reaching, load_curve, mean_curve,
                                   target_of, time_to_target_table)
from diffkd_mm.demo.records import read_records

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'time_to_target.py')


def _record(method, seed, value, task='det', pace=0.5, **changes):
    record = dict(
        task=task,
        seed=seed,
        method=method,
        metric='mAP',
        benchmark_version=2,
        teacher_iters=2000,
        student_iters=2000,
        num_train=400,
        num_val=300,
        value=value,
        s_per_iter=pace)
    record.update(changes)
    return record


def _curve(method, seed, values, seconds=None, task='det', **changes):
    iters = [500 * (i + 1) for i in range(len(values))]
    curve = dict(
        task=task,
        method=method,
        seed=seed,
        metric='mAP',
        iters=iters,
        values=values,
        train_seconds=seconds or [it * 0.7 for it in iters],
        num_train=400,
        num_val=300)
    curve.update(changes)
    return curve


RECORDS = [_record('fitnet', s, v) for s, v in enumerate([30.0, 32.0, 34.0])
           ] + [_record('diffkd_pull', s, 33.0, pace=0.8)
                for s in range(3)] + [_record('diffkd_pull', 0, 33.0, pace=2.0)]


def test_target_per_seed_its_mean_and_the_records_pace():
    target = target_of(RECORDS, 'det', 'fitnet')
    assert target.values == {0: 30.0, 1: 32.0, 2: 34.0} and target.s_per_iter == 0.5
    assert target.mean([0, 1]) == pytest.approx(31.0)
    assert (target.student_iters, target.num_train, target.num_val) == (2000, 400, 300)
    assert cost_ratios(RECORDS, target) == {'fitnet': 1.0, 'diffkd_pull': pytest.approx(1.6)}
    with pytest.raises(ValueError, match='det: no pkd records'):
        target_of(RECORDS, 'det', 'pkd')
    with pytest.raises(ValueError, match='two records of one seed'):
        target_of(RECORDS, 'det', 'diffkd_pull')
    mixed = RECORDS[:2] + [_record('fitnet', 2, 34.0, num_val=50)]
    with pytest.raises(ValueError, match='different schedules'):
        target_of(mixed, 'det', 'fitnet')
    with pytest.raises(
            ValueError,
            match='a curve of 1500 iterations on 400 train / 300 '
            'validation images; the fitnet records it is compared with ran 2000'):
        check_curve(_curve('diffkd_pull', 0, [1.0, 2.0, 3.0]), target, 'c.json')
    with pytest.raises(
            ValueError,
            match=r'seed 7, which the det fitnet records do not have '
            r'\(they have \[0, 1, 2\]\)'):
        check_curve(_curve('diffkd_pull', 7, [1.0] * 4), target, 'c.json')


def test_first_validation_at_or_above_the_target_or_never():
    curve = _curve('diffkd_pull', 0, [20.0, 32.0, 31.0, 35.0], seconds=[400, 800, 1200, 1600])
    assert first_reaching(curve, 32.0) == (1000, 800)  # equal counts as reached
    assert first_reaching(curve, 33.0) == (2000, 1600)
    assert first_reaching(curve, 35.1) == (None, None)
    del curve['train_seconds']  # a curve.json from before the clock was kept
    assert first_reaching(curve, 33.0) == (2000, None)


def test_mean_curve_over_seeds_validated_alike():
    mean = mean_curve([
        _curve('diffkd_pull', 1, [20.0, 30.0], seconds=[300, 600]),
        _curve('diffkd_pull', 0, [10.0, 40.0], seconds=[500, 1000])
    ])
    assert mean['seed'] == (0, 1) and mean['values'] == [15.0, 35.0]
    assert mean['train_seconds'] == [400, 800]
    with pytest.raises(ValueError, match=r'two curves of one seed \(\[0, 0\]\)'):
        mean_curve([_curve('diffkd_pull', 0, [1.0]), _curve('diffkd_pull', 0, [2.0])])
    with pytest.raises(ValueError, match='validated at different iterations'):
        mean_curve([_curve('diffkd_pull', 0, [1.0]), _curve('diffkd_pull', 1, [1.0, 2.0])])


def test_table_pairs_each_seed_and_the_mean_with_the_targets():
    target = target_of(RECORDS, 'det', 'fitnet')
    curves = [
        _curve('diffkd_pull', 1, [20.0, 32.0, 33.0, 34.0]),
        _curve('diffkd_pull', 0, [20.0, 25.0, 29.0, 29.5]),
        _curve('diffkd_pull', 0, [1.0] * 4, task='seg', metric='mIoU'),  # another task's
    ]
    lines = time_to_target_table(curves, target, cost_ratios(RECORDS, target))
    assert lines[0].startswith("| det: method | seed | final mAP of the curve | fitnet's final")
    assert lines[0].endswith("| share of fitnet's training |")
    assert lines[2:] == [
        '| diffkd_pull | 0 | 29.50 | 30.00 | never | - | - |',
        '| diffkd_pull | 1 | 34.00 | 32.00 | 1000 of 2000 | 700 of 1400 | 0.80 (1.60x per '
        'iteration) |',
        # mean curve 20, 28.5, 31, 31.75 against (30 + 32) / 2
        '| diffkd_pull | mean of 0, 1 | 31.75 | 31.00 | 1500 of 2000 | 1050 of 1400 | 1.20 '
        '(1.60x per iteration) |',
    ]
    # Runs of another loss weight are another group, named with their weight.
    weighted = _curve('diffkd_pull', 0, [40.0] * 4, loss_weight=2.0)
    lines = time_to_target_table(curves[:2] + [weighted], target, {})
    assert [line.split(' | ')[:2] for line in lines[2:]] == [['| diffkd_pull', '0'],
                                                             ['| diffkd_pull', '1'],
                                                             ['| diffkd_pull (weight 2)', '0'],
                                                             ['| diffkd_pull', 'mean of 0, 1']]
    # A method without a ratio gets no share.
    assert time_to_target_table(curves[:1], target, {})[2].endswith('| 700 of 1400 | - |')


@pytest.mark.slow
def test_tool_prints_each_task_and_draws_the_picture(tmp_path):
    (tmp_path / 'results.json').write_text(json.dumps(RECORDS[:6]))
    paths = []
    for seed, values in ((0, [20.0, 30.0, 33.0, 33.5]), (1, [10.0, 20.0, 25.0, 28.0])):
        paths.append(tmp_path / f'c{seed}.json')
        paths[-1].write_text(json.dumps(_curve('diffkd_pull', seed, values)))
    plot = tmp_path / 'ttt.png'
    args = [sys.executable, TOOL, *map(str, paths)]
    records = ['--records', str(tmp_path / 'results.json')]
    out = subprocess.run(
        args + records + ['--plot', str(plot)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '| diffkd_pull | 0 | 33.50 | 30.00 | 1000 of 2000 | 700 of 1400 | 0.80 (1.60x' in (
        out.stdout)
    assert '| diffkd_pull | 1 | 28.00 | 32.00 | never |' in out.stdout
    assert plot.stat().st_size > 0
    out = subprocess.run(
        args + ['--cost-ratio', 'diffkd_pull=1.1'] + records,
        capture_output=True,
        text=True,
        timeout=300)
    assert '| 700 of 1400 | 0.55 (1.10x per iteration) |' in out.stdout, out.stderr[-2000:]
    # An existing picture is kept; a short curve, a bad records file or ratio is named.
    short = tmp_path / 'short.json'
    short.write_text(json.dumps(_curve('diffkd_pull', 0, [1.0, 2.0])))
    (tmp_path / 'bad.json').write_text('[1, 2]')
    empty = tmp_path / 'empty.json'
    empty.write_text(json.dumps(_curve('diffkd_pull', 0, [])))
    unscheduled = tmp_path / 'unscheduled.json'
    unscheduled.write_text(json.dumps([dict(task='det', seed=0, method='fitnet', value=1.0)]))
    for extra, message in ((['--plot', str(plot)],
                            f'--plot {plot} exists'), ([str(short)], 'a curve of 1000 iterations'),
                           (['--records', str(tmp_path / 'bad.json')], 'not a results.json'),
                           ([str(empty)], 'must be lists of numbers of one length'), ([
                               '--records', str(unscheduled)
                           ], "a record without ['benchmark_"), (['--target-method', 'fitnett'],
                                                                 'no fitnett records to take the '
                                                                 'target from (the target method)'),
                           (['--cost-ratio', 'diffkd_pull=fast'],
                            'expected METHOD=RATIO'), (['--cost-ratio',
                                                        'diffkd_pull=inf'], 'a finite ratio > 0'),
                           (['--cost-ratio', 'diffkd_pull=1', 'diffkd_pull=2'], 'each method once'),
                           (['--cost-ratio', 'diffkd-pull=1.07'], "--cost-ratio ['diffkd-pull']: "
                            'no curve of these methods')):
        # (a curve before --records: that option takes every file after it)
        first = extra[0] in (str(short), str(empty))
        given = args + extra + records if first else args + records + extra
        out = subprocess.run(given, capture_output=True, text=True, timeout=300)
        assert out.returncode == 1 and 'Traceback' not in out.stderr, out.stderr[-2000:]
        assert message in out.stderr


@pytest.mark.slow
def test_shipped_curves_end_at_their_records_and_give_the_page_its_tables():
    """The curves behind the time-to-FitNet page are the confirmation's and FitNet's runs (each
    ends at its record's value), and the page's rows are what the tool prints from them with
    the ratios the page names."""
    results = osp.join(ROOT, 'docs', 'results')
    records = [
        osp.join(results, 'converged_benchmark.json'),
        osp.join(results, 'confirmation_seeds0-4.json')
    ]
    value = {
        (r['task'], r['method'], r['seed']): r['value']
        for path in records
        for r in read_records(path)
    }
    curves = sorted(glob.glob(osp.join(results, 'time_to_fitnet_curves', '*.json')))
    assert curves
    for path in curves:
        curve = load_curve(path)
        assert curve['values'][-1] == pytest.approx(
            value[curve['task'], curve['method'], curve['seed']], abs=1e-9), path
    out = ''
    for ratios in (('diffkd_pull=1.07', 'diffkd_prematch=1.09', 'diffkd_kdproof=1.06'),
                   ('diffkd_pull=1.93', 'diffkd_prematch=1.93', 'diffkd_kdproof=1.59')):
        res = subprocess.run(
            [sys.executable, TOOL, *curves, '--cost-ratio', *ratios, '--records', *records],
            capture_output=True,
            text=True,
            timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        out += res.stdout
    page = open(osp.join(results, '2026-12-05_time_to_fitnet.md')).read()
    rows = ('| diffkd_', '| fitnet ')
    quoted = [line for line in page.splitlines() if line.startswith(rows)]
    # every row of both tables, and nothing else
    assert len(quoted) == sum(1 for line in out.splitlines() if line.startswith(rows))
    for line in quoted:
        assert line in out, line
