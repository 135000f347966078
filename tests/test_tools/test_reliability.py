"""Reliability through tools/train.py: exact resume, bf16 AMP on CPU, nothing overwritten,
missing teacher checkpoint, bad recorder source."""
import json
import os.path as osp
import subprocess
import sys

import pytest

import diffkd_mm
from diffkd_mm.datasets import ensure_dataset
from diffkd_mm.testing import write_tiny_seg_config

pytestmark = pytest.mark.slow  # subprocess runs of the tools (see pytest.ini)

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
TRAIN = osp.join(ROOT, 'tools', 'train.py')


@pytest.fixture(scope='module')
def cfg_file(tmp_path_factory):
    """The demo DiffKD config on tiny data, with a schedule that does not depend on max_iters."""
    tmp = tmp_path_factory.mktemp('cfg')
    data = ensure_dataset('seg', root=tmp / 'data', num_train=8, num_val=4)
    return write_tiny_seg_config(str(tmp / 'tiny_diffkd.py'), data, 6, 'interval=3')


def train(cfg, work_dir, *extra):
    out = subprocess.run([sys.executable, TRAIN, cfg, '--work-dir',
                          str(work_dir), *extra],
                         capture_output=True,
                         text=True,
                         timeout=600)
    return out.returncode, out.stdout + out.stderr


def losses(work_dir):
    """{iteration: {loss key: value}} from mmengine's scalars.json (every iteration logged)."""
    rows = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in open(path):
            rec = json.loads(line)
            if 'loss' in rec:
                rows[rec['iter']] = {k: v for k, v in rec.items() if 'loss' in k}
    return rows


def test_resume_repeats_the_uninterrupted_run(cfg_file, tmp_path):
    code, log = train(cfg_file, tmp_path / 'full')
    assert code == 0, log[-3000:]
    code, log = train(cfg_file, tmp_path / 'cut', '--cfg-options', 'train_cfg.max_iters=3')
    assert code == 0, log[-3000:]
    code, log = train(cfg_file, tmp_path / 'cut', '--resume')  # the latest: iter_3.pth
    assert code == 0, log[-3000:]
    assert 'Load checkpoint from' in log and 'resumed' in log.lower()
    full, cut = losses(tmp_path / 'full'), losses(tmp_path / 'cut')
    assert sorted(full) == sorted(cut) == [1, 2, 3, 4, 5, 6]
    for it in (4, 5, 6):
        for key in ('loss', 'distill.loss_diffkd_kd', 'distill.loss_diffkd_ddim'):
            assert cut[it][key] == pytest.approx(full[it][key], rel=1e-5, abs=1e-6), (it, key)


def test_amp_on_cpu_trains_with_bf16(cfg_file, tmp_path):
    code, log = train(cfg_file, tmp_path, '--amp', '--cfg-options', 'train_cfg.max_iters=2')
    assert code == 0, log[-3000:]
    assert 'CPUAmpOptimWrapper' in log
    rows = losses(tmp_path)
    assert rows[2]['distill.loss_diffkd_kd'] > 0 and all(v == v and abs(v) != float('inf')
                                                         for r in rows.values() for v in r.values())


def test_existing_checkpoints_are_not_overwritten(cfg_file, tmp_path):
    ckpt = tmp_path / 'iter_3.pth'
    ckpt.write_bytes(b'precious')
    code, log = train(cfg_file, tmp_path)
    assert code != 0 and 'already holds iter_3.pth' in log and '--allow-overwrite' in log
    assert ckpt.read_bytes() == b'precious'


def test_missing_teacher_checkpoint_fails_before_training(cfg_file, tmp_path):
    code, log = train(cfg_file, tmp_path, '--cfg-options', 'model.teacher_ckpt=/no/such.pth')
    assert code != 0
    assert 'model.teacher_ckpt: /no/such.pth does not exist' in log
    assert 'Iter(train)' not in log


def test_recorder_source_that_names_no_module(cfg_file, tmp_path):
    code, log = train(cfg_file, tmp_path, '--cfg-options',
                      'model.distiller.student_recorders.fpn.source=nek')
    assert code != 0
    assert "distiller.student_recorders.fpn.source = 'nek' names no module of the student; " \
           "did you mean 'neck'" in log
