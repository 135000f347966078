"""The demo's teacher cache heals itself: a file that cannot be read, or that was made for
another teacher, is set aside (renamed, not deleted) with one warning line and retrained."""
import os
import os.path as osp
import subprocess
from pathlib import Path

import pytest
import torch

from diffkd_mm.demo import teacher_cache
from diffkd_mm.demo.teacher_cache import META_KEY, reuse_teacher, store_teacher
from diffkd_mm.engine import load_checkpoint_file, save_checkpoint_atomic
from diffkd_mm.fileio import set_aside

RECORD = dict(key='0123abcd', task='seg', definition=dict(iters=20, seed=0, data='seg_x'))


@pytest.fixture
def warnings(monkeypatch):
    said = []
    monkeypatch.setattr(teacher_cache, 'print_log', lambda msg, **kwargs: said.append(msg))
    return said


@pytest.fixture
def cached(tmp_path):
    """A cache file stored from a training checkpoint, as the demo stores its teachers."""
    run_ckpt = tmp_path / 'iter_20.pth'
    torch.save(
        dict(state_dict=dict(w=torch.arange(6.)), optimizer=dict(lr=0.1), meta=dict(iter=20)),
        run_ckpt)
    path = tmp_path / 'cache' / f'seg_teacher_{RECORD["key"]}.pth'
    store_teacher(str(run_ckpt), str(path), RECORD)
    return path


def test_stored_teacher_holds_weights_and_record_only(cached, warnings):
    loaded = load_checkpoint_file(str(cached))
    assert set(loaded) == {'state_dict', 'meta'} and loaded['meta'] == {META_KEY: RECORD}
    assert torch.equal(loaded['state_dict']['w'], torch.arange(6.))
    assert reuse_teacher(str(cached), RECORD) and warnings == []
    assert not reuse_teacher(str(cached.parent / 'absent.pth'), RECORD) and warnings == []
    # Written atomically: no temporary file is left beside it.
    assert os.listdir(cached.parent) == [cached.name]


def test_store_deletes_what_a_killed_store_left(cached, tmp_path):
    proc = subprocess.Popen(['true'])
    proc.wait()  # a process that no longer runs, as one killed during its store
    leftover = cached.parent / f'.{cached.name}.{proc.pid}-0123abcd.tmp'
    leftover.write_bytes(b'half a teacher')
    store_teacher(str(tmp_path / 'iter_20.pth'), str(cached), RECORD)
    assert os.listdir(cached.parent) == [cached.name]


def _cut_in_half(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return data[:len(data) // 2]


def _rewrite(path, **changes):
    checkpoint = load_checkpoint_file(str(path))
    checkpoint.update(changes)
    save_checkpoint_atomic(checkpoint, str(path))


@pytest.mark.parametrize(
    'damage, reason',
    [(_cut_in_half, 'cannot be read (not a readable checkpoint'),
     (lambda p: p.write_bytes(b''), 'cannot be read'),
     (lambda p: _rewrite(p, meta={}), 'has no record of what it was trained with'),
     (lambda p: _rewrite(p, meta={META_KEY: dict(RECORD, key='ffff0000')}),
      "was stored under key 'ffff0000', not '0123abcd'"),
     (lambda p: _rewrite(p, meta={META_KEY: dict(RECORD, definition=dict(iters=10))}),
      'was trained with other settings (definition)'),
     (lambda p: torch.save([1, 2], p), 'holds no state_dict')],
    ids=['cut-in-half', 'empty', 'older-format', 'other-key', 'other-settings', 'not-a-dict'])
def test_unusable_cache_is_set_aside_with_one_line(cached, warnings, damage, reason):
    damage(cached)
    before = cached.read_bytes()
    assert not reuse_teacher(str(cached), RECORD)
    assert not cached.exists()  # to be retrained and stored again under the same name
    aside = [f for f in os.listdir(cached.parent) if f.startswith(cached.name + '.bad-')]
    assert len(aside) == 1 and (cached.parent / aside[0]).read_bytes() == before  # kept intact
    assert len(warnings) == 1 and '\n' not in warnings[0], warnings
    assert reason in warnings[0] and str(cached) in warnings[0] and aside[0] in warnings[0]
    assert 'training the teacher again' in warnings[0]


def test_set_aside_never_overwrites_and_tolerates_a_concurrent_run(cached):
    said = []
    first = set_aside(str(cached), f'{cached} is stale', 'trying again', say=said.append)
    cached.write_bytes(b'second')
    second = set_aside(str(cached), f'{cached} is stale', 'trying again', say=said.append)
    assert first != second and open(first, 'rb').read() != b'second'
    assert open(second, 'rb').read() == b'second'
    # another run moved it first (and said so): nothing to rename, nothing said
    assert set_aside(str(cached), f'{cached} is stale', 'trying again', say=said.append) is None
    assert said == [
        f'{cached} is stale: set aside as {osp.basename(p)}, trying again' for p in (first, second)
    ]


@pytest.mark.slow
def test_main_job_retrains_a_cut_teacher_and_reuses_the_new_one(tmp_path, warnings):
    """The demo's own path: a cached teacher cut in half, or holding another model's
    weights, does not stop it; the retrained one is reused."""
    from mmengine.registry import DefaultScope

    from diffkd_mm.datasets import ensure_dataset
    from diffkd_mm.demo import QUICK_SCHEDULES, DemoSettings, check_configs
    from diffkd_mm.demo.console import Console
    from diffkd_mm.demo.teacher_cache import teacher_run, train_or_reuse_teacher
    from diffkd_mm.engine import CheckpointGuard
    settings = DemoSettings(
        tasks=('seg', ), schedules=QUICK_SCHEDULES, cache_dir=str(tmp_path / 'cache'))
    check_configs(settings)
    sched = settings.schedules['seg']
    data = ensure_dataset(
        'seg', root=tmp_path / 'data', num_train=sched.num_train, num_val=sched.num_val)

    def teacher(run):
        cfg, record, cached = teacher_run(settings, 'seg', 0, data, str(tmp_path / run))
        return train_or_reuse_teacher(cfg, record, cached, 'seg', f'seg seed 0 teacher ({run})',
                                      console), cached

    # The Runners set mmengine's default scope for the process: restore it for later tests.
    with DefaultScope.overwrite_default_scope('mmseg'), CheckpointGuard(), Console() as console:
        first, cached = teacher('run1')
        assert not first['cached'] and warnings == [] and osp.isfile(cached)
        _cut_in_half(Path(cached))
        second, cached_again = teacher('run2')
        assert not second['cached'] and cached_again == cached
        assert len(warnings) == 1 and 'cannot be read' in warnings[0]
        # Readable, with the right record, but weights of another model: found when loaded.
        save_checkpoint_atomic(
            dict(state_dict=dict(w=torch.zeros(3)), meta=load_checkpoint_file(cached)['meta']),
            cached)
        third, _ = teacher('run3')
        assert not third['cached'] and len(warnings) == 2
        assert 'does not fit the teacher model' in warnings[1] and '\n' not in warnings[1]
        fourth, _ = teacher('run4')
    assert fourth['cached'] and fourth['value'] == pytest.approx(third['value'])
    assert len(warnings) == 2
    assert [f for f in os.listdir(osp.dirname(cached)) if '.bad-' in f]
