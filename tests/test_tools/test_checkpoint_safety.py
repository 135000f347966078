"""Checkpoints that cannot hurt, through the tools as a user runs them: a malicious checkpoint is
refused everywhere and its payload never runs; our own and zoo-shaped checkpoints load without
the opt-in; a checkpoint of another model stops tools/test.py; a run killed with SIGKILL (also
in the middle of a save) and resumed ends with the uninterrupted run's weights; a full disk
during a save stops the run with one line and it resumes; a truncated last checkpoint is skipped
on resume; a failed download names the config key."""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub

import diffkd_mm
from diffkd_mm.datasets import ensure_dataset
from diffkd_mm.engine.checkpoint import (EXPORTER, TRUST_ENV, CheckpointGuard,
                                         MismatchedCheckpointError, UnreadableCheckpointError,
                                         UnsafeCheckpointError, load_checkpoint_file)
from diffkd_mm.testing import assert_same_weights, write_tiny_seg_config
from mmrazor.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
DEMO = osp.join(ROOT, 'configs', 'diffkd', 'demo')
TOOLS = osp.join(ROOT, 'tools')
TRAIN = osp.join(TOOLS, 'train.py')
MAX_ITERS = 8


class Payload:
    """Pickles as ``os.system('touch <marker>')``: what a malicious checkpoint carries."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def run(args, env=None, timeout=600):
    out = subprocess.run([sys.executable, *map(str, args)],
                         capture_output=True,
                         text=True,
                         timeout=timeout,
                         env=env)
    return out.returncode, out.stdout + out.stderr


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Tiny data, a tiny DiffKD config that saves every iteration, and checkpoints to load."""
    tmp = tmp_path_factory.mktemp('ckpt_safety')
    data = ensure_dataset('seg', root=tmp / 'data', num_train=8, num_val=4)
    cfg = write_tiny_seg_config(
        str(tmp / 'tiny_diffkd.py'), data, MAX_ITERS, 'interval=1, max_keep_ckpts=-1')
    torch.manual_seed(0)
    distill = tmp / 'distill.pth'  # keys under architecture. / teacher. / distiller.
    algo = MODELS.build(Config.fromfile(osp.join(DEMO, 'seg_diffkd.py')).model)
    torch.save(dict(state_dict=algo.state_dict(), meta=dict(iter=1)), distill)
    evil = tmp / 'evil.pth'
    marker = tmp / 'payload_ran'
    torch.save(dict(meta=dict(iter=3), state_dict=algo.state_dict(), x=Payload(marker)), evil)
    opts = [f'{d}.dataset.data_root={data}' for d in ('val_dataloader', 'test_dataloader')]
    return dict(
        tmp=tmp,
        data=data,
        cfg=cfg,
        distill=distill,
        evil=evil,
        marker=marker,
        data_opts=opts,
        algo=algo)


@pytest.fixture(scope='module')
def full_run(setup):
    """An uninterrupted run of the tiny config: its work dir."""
    work_dir = setup['tmp'] / 'full'
    code, log = run([TRAIN, setup['cfg'], '--work-dir', work_dir])
    assert code == 0, log[-3000:]
    return work_dir


def test_payload_is_real_when_trusted(setup, tmp_path):
    """Control for the refusal tests: the payload does run when unpickled without restriction."""
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save(dict(x=Payload(marker)), path)
    with pytest.raises(UnsafeCheckpointError, match=f'posix.system.*{TRUST_ENV}=1'):
        load_checkpoint_file(str(path))
    assert not marker.exists()
    load_checkpoint_file(str(path), trust=True)
    assert marker.exists()


def _evil_work_dir(setup, tmp_path):
    """A work dir whose latest checkpoint is the malicious file."""
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'iter_3.pth').write_bytes(setup['evil'].read_bytes())
    (work / 'last_checkpoint').write_text(str(work / 'iter_3.pth'))
    return work


@pytest.mark.slow
@pytest.mark.parametrize('entry', [
    'train load_from', 'train --resume PATH', 'train --resume', 'train teacher_ckpt', 'test',
    'visualiser', 'exporter'
])
def test_malicious_checkpoint_is_refused(setup, tmp_path, entry):
    evil, cfg = setup['evil'], setup['cfg']
    work = ['--work-dir', tmp_path / 'w']
    if entry == 'train load_from':
        args = [TRAIN, cfg, *work, '--cfg-options', f'load_from={evil}']
    elif entry == 'train --resume PATH':
        args = [TRAIN, cfg, *work, '--resume', evil]
    elif entry == 'train --resume':  # the work dir's latest checkpoint is the malicious one
        args = [TRAIN, cfg, '--work-dir', _evil_work_dir(setup, tmp_path), '--resume']
        evil = tmp_path / 'work' / 'iter_3.pth'
    elif entry == 'train teacher_ckpt':
        args = [TRAIN, cfg, *work, '--cfg-options', f'model.teacher_ckpt={evil}']
    elif entry == 'test':
        args = [osp.join(TOOLS, 'test.py'), cfg, evil, *work]
    elif entry == 'visualiser':
        args = [
            osp.join(TOOLS, 'analysis_tools', 'visualize_denoising.py'), cfg, evil, '--out-dir',
            tmp_path / 'vis', '--num-images', '1'
        ]
    else:
        args = [
            osp.join(TOOLS, 'model_converters', 'convert_kd_ckpt_to_student.py'), evil,
            tmp_path / 'student.pth'
        ]
    env = {k: v for k, v in os.environ.items() if k != TRUST_ENV}
    code, log = run(args, env=env)
    assert code != 0, log[-3000:]
    assert f'{evil}: refused to load this checkpoint: it needs the global posix.system' \
        in log, log[-3000:]
    assert f'set {TRUST_ENV}=1' in log and 'Traceback' not in log, log[-3000:]
    assert 'Iter(train)' not in log
    assert not setup['marker'].exists(), 'the payload ran'
    assert not (tmp_path / 'student.pth').exists()


@pytest.mark.slow
def test_own_checkpoints_load_without_opt_in(setup, full_run, tmp_path):
    """tools/train.py's checkpoints (message hub, numpy, RNG state), the exporter's and the demo
    cache's load with weights_only; torch's bare allow-list refuses the first (the test is not
    vacuous)."""
    from diffkd_mm.demo.teacher_cache import META_KEY, reuse_teacher, store_teacher
    ckpt = full_run / f'iter_{MAX_ITERS}.pth'
    with pytest.raises(Exception, match='Weights only load failed'):
        torch.load(ckpt, weights_only=True)
    loaded = load_checkpoint_file(str(ckpt), trust=False)
    assert loaded['meta']['iter'] == MAX_ITERS
    assert isinstance(loaded['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert loaded['torch_rng_state']['cpu'].dtype == torch.uint8
    student = tmp_path / 'student.pth'
    code, log = run(
        [osp.join(TOOLS, 'model_converters', 'convert_kd_ckpt_to_student.py'), ckpt, student])
    assert code == 0, log
    assert load_checkpoint_file(str(student), trust=False)['state_dict']
    cached = tmp_path / 'cache' / 'teacher.pth'
    record = dict(key='abc', task='seg', definition=dict(iters=MAX_ITERS))
    store_teacher(str(ckpt), str(cached), record)
    assert load_checkpoint_file(str(cached), trust=False)['meta'] == {META_KEY: record}
    assert reuse_teacher(str(cached), record)


def _zoo_shaped(model, legacy):
    """A checkpoint shaped like the published mmseg/mmdet (mmcv 1.x) or mmpretrain (mmengine)
    ones: class names and palette in meta, numpy scalars, a message hub."""
    hub = MessageHub('zoo_shaped')
    hub.update_scalar('train/loss', np.float64(0.5))
    hub.update_info('best_score', np.float32(0.75))
    meta = dict(
        mmcv_version='1.7.0',
        config='model = dict()',
        env_info='sys.platform: linux',
        CLASSES=('road', 'car'),
        PALETTE=[[128, 64, 128], [0, 0, 142]],
        epoch=12,
        iter=80000,
        hook_msgs=dict(last_ckpt='x.pth', best_score=np.float64(0.8)),
        dataset_meta=dict(classes=('road', 'car'), palette=[(128, 64, 128)]))
    state = OrderedDict(model.state_dict())
    ckpt = dict(meta=meta, state_dict=state)
    if not legacy:
        ckpt['message_hub'] = hub.state_dict()
    return ckpt


@pytest.mark.parametrize('legacy', [True, False], ids=['mmcv1-legacy-format', 'mmengine'])
def test_zoo_shaped_checkpoints_load_without_opt_in(setup, tmp_path, legacy):
    path = tmp_path / 'zoo.pth'
    torch.save(
        _zoo_shaped(setup['algo'].student, legacy), path, _use_new_zipfile_serialization=not legacy)
    loaded = load_checkpoint_file(str(path), trust=False)
    assert loaded['meta']['CLASSES'] == ('road', 'car')
    # and through mmengine's loader, as model.teacher_ckpt / load_from use it
    from mmengine.runner import load_checkpoint
    fresh = MODELS.build(Config.fromfile(osp.join(DEMO, 'seg_student.py')).model)
    with CheckpointGuard(trust=False):
        load_checkpoint(fresh, str(path), strict=True)
    for (name, a), b in zip(fresh.state_dict().items(), loaded['state_dict'].values()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_checkpoint_of_another_model_stops_test(setup, tmp_path):
    """A distillation checkpoint given to the plain student's config: an error, not an mIoU."""
    code, log = run([
        osp.join(TOOLS, 'test.py'),
        osp.join(DEMO, 'seg_student.py'), setup['distill'], '--work-dir', tmp_path, '--cfg-options',
        *setup['data_opts']
    ])
    assert code != 0
    assert (f"checkpoint ({setup['distill']}) holds none of the weights of the EncoderDecoder "
            'being loaded') in log, log[-3000:]
    assert "'architecture.' (" in log and "'teacher.' (" in log and "'backbone.' (" in log
    assert EXPORTER in log and 'Traceback' not in log and 'Iter(test)' not in log


@pytest.mark.slow
def test_partial_match_keeps_mmengine_warning(setup, tmp_path):
    """One tensor short: mmengine's missing-keys warning, and the evaluation runs."""
    state = OrderedDict((k[len('architecture.'):], v)
                        for k, v in setup['algo'].state_dict().items()
                        if k.startswith('architecture.'))
    state.pop('decode_head.conv_seg.bias')
    path = tmp_path / 'partial.pth'
    torch.save(dict(state_dict=state), path)
    code, log = run([
        osp.join(TOOLS, 'test.py'),
        osp.join(DEMO, 'seg_student.py'), path, '--work-dir', tmp_path, '--cfg-options',
        *setup['data_opts']
    ])
    assert code == 0, log[-3000:]
    assert 'missing keys in source state_dict: decode_head.conv_seg.bias' in log
    assert 'Iter(test)' in log and 'mIoU:' in log


@pytest.mark.slow
def test_teacher_checkpoint_of_another_model_stops_training(setup, tmp_path):
    """The student's weights as teacher_ckpt: same keys, other shapes, so nothing loads."""
    student = tmp_path / 'student.pth'
    state = OrderedDict((k[len('architecture.'):], v)
                        for k, v in setup['algo'].state_dict().items()
                        if k.startswith('architecture.'))
    torch.save(dict(state_dict=state), student)
    code, log = run([
        TRAIN, setup['cfg'], '--work-dir', tmp_path / 'w', '--cfg-options',
        f'model.teacher_ckpt={student}'
    ])
    assert code != 0
    assert f'model.teacher_ckpt ({student}) holds none of the weights' in log, log[-3000:]
    assert 'Traceback' not in log and 'Iter(train)' not in log


# A driver that runs tools/train.py and, at the n-th checkpoint save of the process, writes half
# of the file, flushes it and stalls, so that the test kills it in the middle of the save.
STALLING_DRIVER = '''
import io, os, runpy, sys, time
import torch
n = int(os.environ['STALL_AT_SAVE'])
marker = os.environ['STALL_MARKER']
real_save, saves = torch.save, [0]
def stalling_save(obj, f, *args, **kwargs):
    name = getattr(f, 'name', '')
    # diffkd_mm.fileio.atomic_open's temporary file: .<name>.pth.<pid>-<random>.tmp
    if isinstance(name, str) and '.pth.' in name and name.endswith('.tmp'):
        saves[0] += 1
        if saves[0] == n:
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
            f.flush()
            with open(marker + '.part', 'w') as m:  # the marker appears with its content
                m.write(name)
            os.replace(marker + '.part', marker)
            time.sleep(600)
    return real_save(obj, f, *args, **kwargs)
torch.save = stalling_save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def _final_weights(work_dir):
    return load_checkpoint_file(str(work_dir / f'iter_{MAX_ITERS}.pth'))['state_dict']


def _start(args, log_path, env=None):
    with open(log_path, 'w') as log:
        return subprocess.Popen([sys.executable, *map(str, args)],
                                stdout=log,
                                stderr=subprocess.STDOUT,
                                env=env), log_path


def _wait_for(predicate, proc, timeout=300):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise TimeoutError('the training process did not get there')


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted_run(setup, full_run, tmp_path):
    """Kill tools/train.py with SIGKILL in the middle of a save and at random moments of
    training, resume with --resume each time, and end with the uninterrupted run's weights."""
    work = tmp_path / 'cut'
    driver = tmp_path / 'driver.py'
    driver.write_text(STALLING_DRIVER)
    marker = tmp_path / 'stalled'
    env = dict(os.environ, STALL_AT_SAVE='3', STALL_MARKER=str(marker))
    # 1. in the middle of the 3rd save: half of iter_3.pth written, not yet renamed
    proc, log = _start([driver, TRAIN, setup['cfg'], '--work-dir', work], tmp_path / 'l0', env)
    assert _wait_for(marker.exists, proc), open(log).read()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = marker.read_text()
    assert osp.getsize(partial) > 0 and not (work / 'iter_3.pth').exists()
    assert open(work / 'last_checkpoint').read().strip().endswith('iter_2.pth')
    # 2. at random moments: a random moment shortly after a random iteration, which can fall
    #    in the iteration that follows or in the checkpoint save that comes right after the log
    rng = random.Random(0)
    kills = 0
    for attempt in range(1, 4):
        done = max([int(p.stem.split('_')[1]) for p in work.glob('iter_*.pth')], default=0)
        if done + 1 > MAX_ITERS - 1:
            break
        step = rng.randint(done + 1, min(done + 2, MAX_ITERS - 1))
        proc, log = _start([TRAIN, setup['cfg'], '--work-dir', work, '--resume'],
                           tmp_path / f'l{attempt}')
        line = f'Iter(train) [{step}/{MAX_ITERS}]'
        assert _wait_for(lambda: line in open(log).read(), proc), open(log).read()[-3000:]
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    # 3. resume until done
    code, out = run([TRAIN, setup['cfg'], '--work-dir', work, '--resume'])
    assert code == 0, out[-3000:]
    assert_same_weights(_final_weights(full_run), _final_weights(work))


@pytest.mark.slow
def test_truncated_last_checkpoint_is_skipped_on_resume(setup, full_run, tmp_path):
    """The last checkpoint cut short (as a kill or a full disk leave it with a plain write):
    --resume warns, resumes from the previous one and finishes with the same weights."""
    work = tmp_path / 'work'
    work.mkdir()
    for step in (MAX_ITERS - 2, MAX_ITERS - 1):
        (work / f'iter_{step}.pth').write_bytes((full_run / f'iter_{step}.pth').read_bytes())
    last = work / f'iter_{MAX_ITERS - 1}.pth'
    last.write_bytes(last.read_bytes()[:osp.getsize(last) // 3])
    (work / 'last_checkpoint').write_text(str(last))
    with pytest.raises(UnreadableCheckpointError):
        load_checkpoint_file(str(last))
    code, log = run([TRAIN, setup['cfg'], '--work-dir', work, '--resume'])
    assert code == 0, log[-3000:]
    assert f'--resume: skipping {last}: not a readable checkpoint' in log
    assert f'Load checkpoint from {work / f"iter_{MAX_ITERS - 2}.pth"}' in log
    assert_same_weights(_final_weights(full_run), _final_weights(work))


# A driver that runs tools/train.py with the disk full for one checkpoint file (ENOSPC once its
# first kilobyte is written, through torch.save as on a real full disk).
FULL_DISK_DRIVER = """
import runpy, sys
from diffkd_mm.testing import simulated_full_disk
with simulated_full_disk(sys.argv[1]):
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name='__main__')
"""


@pytest.mark.slow
def test_full_disk_during_a_save_stops_with_one_line_then_resumes(setup, full_run, tmp_path):
    """ENOSPC while saving iter_6.pth: one line naming the file and the free space, iter_5.pth
    intact, nothing partial left; --resume then ends with the uninterrupted run's weights.
    With max_keep_ckpts=1, as in the demo configs: mmengine would delete iter_5.pth before
    saving iter_6.pth, leaving nothing to resume from; the guard deletes it only after."""
    work = tmp_path / 'work'
    driver = tmp_path / 'driver.py'
    driver.write_text(FULL_DISK_DRIVER)
    keep_one = ['--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=1']
    out = subprocess.run(
        [sys.executable, driver, 'iter_6.pth', TRAIN, setup['cfg'], '--work-dir', work, *keep_one],
        capture_output=True,
        text=True,
        timeout=600)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert 'Traceback' not in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith(f'no space left on device while writing {work / "iter_6.pth"} (')
    assert f'free in {work}); no partial file was left. Free some space, then run the same ' \
        'command with --resume' in line
    assert sorted(p.name for p in work.glob('*.pth')) == ['iter_5.pth']
    assert not list(work.glob('.*.tmp'))
    assert open(work / 'last_checkpoint').read().strip().endswith('iter_5.pth')
    kept = load_checkpoint_file(str(work / 'iter_5.pth'))['state_dict']
    for name, value in load_checkpoint_file(str(full_run / 'iter_5.pth'))['state_dict'].items():
        torch.testing.assert_close(kept[name], value, rtol=0, atol=1e-5, msg=name)
    code, log = run([TRAIN, setup['cfg'], '--work-dir', work, '--resume', *keep_one])
    assert code == 0, log[-3000:]
    assert f'Load checkpoint from {work / "iter_5.pth"}' in log
    assert sorted(p.name for p in work.glob('*.pth')) == [f'iter_{MAX_ITERS}.pth']
    assert_same_weights(_final_weights(full_run), _final_weights(work))


@pytest.mark.parametrize('key,option', [
    ('model.architecture.backbone.init_cfg.checkpoint', [
        'model.architecture.backbone.init_cfg.type=Pretrained',
        'model.architecture.backbone.init_cfg.checkpoint=https://download.invalid/r18.pth'
    ]),
    ('model.teacher_ckpt', ['model.teacher_ckpt=https://download.invalid/r18.pth']),
])
@pytest.mark.slow
def test_failed_download_names_the_config_key(setup, tmp_path, key, option):
    """``.invalid`` never resolves, so this is the no-network case on any machine."""
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch_home'))
    code, log = run([TRAIN, setup['cfg'], '--work-dir', tmp_path / 'w', '--cfg-options', *option],
                    env=env)
    assert code != 0
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'r18.pth'
    assert (f'{key} (https://download.invalid/r18.pth): downloading '
            'https://download.invalid/r18.pth failed') in log, log[-3000:]
    assert f'place it at {cache}' in log and 'Traceback' not in log


def test_mismatch_message_names_prefixes_and_fix(setup):
    student = MODELS.build(Config.fromfile(osp.join(DEMO, 'seg_student.py')).model)
    from diffkd_mm.engine.checkpoint import check_weights_match
    with pytest.raises(MismatchedCheckpointError) as err:
        check_weights_match(student, setup['algo'].state_dict(), 'load_from (x.pth)')
    text = str(err.value)
    assert "'architecture.'" in text and "'teacher.'" in text and "'backbone.'" in text
    assert EXPORTER in text
    check_weights_match(student, student.state_dict(), 'load_from (x.pth)')  # passes
