"""A demo run goes on where an earlier one stopped: each finished run leaves its record in its
folder, a resumed run reuses the records made from the same config, refuses those made from
another, and trains again a run whose record is damaged.

Training is replaced by a stand-in here (what is tested is which runs train); a real resumed
run is in ``test_demo.py``.
"""
import json
import os
import os.path as osp

import pytest

from diffkd_mm.demo import DemoSettings, ResumeConflict, Schedule, configs, records
from diffkd_mm.demo import task as task_seed
from diffkd_mm.demo.console import Console

SETTINGS = dict(tasks=('seg', ), methods=('student', 'fitnet'))


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """Stand-ins for training: record which runs trained (and which teacher was evaluated)."""
    calls = []

    def train(cfg, task, console, title, picture=None):
        calls.append(title)
        value = 30.0 + len(calls)
        return dict(value=value, s_per_iter=0.5, curves={'loss': [1.0, 0.5]})

    def teacher(cfg, record, cached, task, title, console):
        calls.append(title)
        return dict(value=45.0, s_per_iter=None, curves={}, cached=True)

    data = tmp_path / 'data'
    data.mkdir()
    monkeypatch.setattr(task_seed, 'train_run', train)
    monkeypatch.setattr(task_seed, 'train_or_reuse_teacher', teacher)
    monkeypatch.setattr(task_seed, 'ensure_dataset', lambda task, **kwargs: str(data))
    monkeypatch.setenv('DIFFKD_CACHE_DIR', str(tmp_path / 'cache'))
    return calls


def _run(run_dir, **changes):
    settings = DemoSettings(**dict(SETTINGS, **changes))
    configs.check_configs(settings)
    with Console() as console:
        return task_seed.run_task(settings, 'seg', 0, str(run_dir), console)


def test_a_resumed_run_reuses_every_finished_run(tmp_path, trained):
    first = _run(tmp_path / 'run')
    assert trained == ['seg seed 0 teacher', 'seg seed 0 student', 'seg seed 0 fitnet']
    for method in ('teacher', 'student', 'fitnet'):
        saved = json.load(open(tmp_path / 'run' / 'seg_seed0' / method / records.RECORD_FILE))
        assert saved['method'] == method and len(saved['run_digest']) == 64
    trained.clear()
    again = _run(tmp_path / 'run')
    assert trained == []  # not even the teacher: every student of the seed is done
    assert again == first


def test_only_the_missing_runs_train_and_the_teacher_is_needed_again(tmp_path, trained):
    first = _run(tmp_path / 'run')
    os.remove(tmp_path / 'run' / 'seg_seed0' / 'fitnet' / records.RECORD_FILE)
    trained.clear()
    again = _run(tmp_path / 'run', methods=('student', 'fitnet', 'pkd'))
    assert trained == ['seg seed 0 teacher', 'seg seed 0 fitnet', 'seg seed 0 pkd']
    assert again[1] == first[1]  # the student of the earlier run
    assert [r['method'] for r in again] == ['teacher', 'student', 'fitnet', 'pkd']


@pytest.mark.parametrize(
    'changes, what',
    [(dict(loss_weight=2.0), 'seg seed 0 fitnet'),
     (dict(schedules=dict(seg=Schedule(800, 301, 400, 100))), 'seg seed 0 student')])
def test_a_run_made_with_other_settings_is_refused_not_mixed(tmp_path, trained, changes, what):
    _run(tmp_path / 'run')
    trained.clear()
    with pytest.raises(ResumeConflict, match=what) as info:
        _run(tmp_path / 'run', **changes)
    assert 'options it was started with' in str(info.value) and '\n' not in str(info.value)
    assert trained == []  # refused before anything trained


def test_a_damaged_record_is_set_aside_and_its_run_trained_again(tmp_path, trained, capsys):
    _run(tmp_path / 'run')
    folder = tmp_path / 'run' / 'seg_seed0' / 'student'
    with open(folder / records.RECORD_FILE, 'w') as f:
        f.write('{"value": 3')  # cut short
    trained.clear()
    _run(tmp_path / 'run')
    assert trained == ['seg seed 0 teacher', 'seg seed 0 student']
    assert any(name.startswith(records.RECORD_FILE + '.bad-') for name in os.listdir(folder))
    assert 'cannot be read' in capsys.readouterr().out


def test_the_digest_ignores_where_the_data_and_cache_are(tmp_path):
    settings = DemoSettings(tasks=('seg', ))
    configs.check_configs(settings)
    path = configs.config_path(settings.config_dir, 'seg', 'fitnet')

    def digest(root, iters=300):
        places = dict(data=f'{root}/data/seg_x', run=f'{root}/run/seg_seed0', cache=f'{root}/c')
        cfg = configs.build_cfg(path, places['data'], osp.join(places['run'], 'fitnet'), iters, 0,
                                20, f'{root}/c/demo/seg_teacher_k.pth')
        return records.run_digest(cfg, places)

    assert digest('/home/a') == digest('/scratch/b')
    assert digest('/home/a') != digest('/home/a', iters=301)
