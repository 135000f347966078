"""DDP without GPUs: tools/dist_train.sh starts 2 real torchrun processes (gloo) on the embedded
demo data, and both ranks end with identical weights after a few DiffKD iterations."""
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

import diffkd_mm
from diffkd_mm.datasets import ensure_dataset

pytestmark = pytest.mark.slow  # subprocess runs of the tools (see pytest.ini)

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes(tmp_path):
    data = ensure_dataset('seg', root=tmp_path / 'data', num_train=16, num_val=8)
    cfg = tmp_path / 'ddp_diffkd.py'
    cfg.write_text(f'''
_base_ = [{osp.join(ROOT, 'configs', 'diffkd', 'demo', 'seg_diffkd.py')!r}]
custom_imports = dict(imports=['diffkd_mm', 'diffkd_mm.testing'], allow_failed_imports=False)
custom_hooks = [dict(type='ParamDigestHook')]
model = dict(teacher_ckpt=None)
train_dataloader = dict(batch_size=2, dataset=dict(data_root={data!r}))
val_dataloader = dict(batch_size=2, dataset=dict(data_root={data!r}))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=3, val_interval=3)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=3))
''')
    work_dir = tmp_path / 'work'
    env = dict(os.environ, PORT=str(_free_port()), PYTHON=sys.executable, OMP_NUM_THREADS='1')
    out = subprocess.run([
        'bash',
        osp.join(ROOT, 'tools', 'dist_train.sh'),
        str(cfg), '2', '--work-dir',
        str(work_dir)
    ],
                         capture_output=True,
                         text=True,
                         env=env,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]

    digests = [json.load(open(work_dir / f'param_digest_rank{r}.json')) for r in (0, 1)]
    assert all(d['world_size'] == 2 and d['iter'] == 3 for d in digests)
    assert digests[0]['params'] == digests[1]['params']
    diffkd = [k for k in digests[0]['params'] if '.distill_losses.loss_diffkd.' in k]
    assert len(diffkd) > 50  # the DiffKD branches are among the compared parameters
    moved = [k for k in diffkd if digests[0]['params'][k] != digests[0]['initial'][k]]
    assert len(moved) > len(diffkd) // 2  # and training changed them
    logs = glob.glob(str(work_dir / '*' / '*.log'))
    assert len(logs) == 1, logs  # one log, from rank 0
    text = open(logs[0]).read()
    assert 'distill.loss_diffkd_kd' in text and 'Iter(train) [3/3]' in text
