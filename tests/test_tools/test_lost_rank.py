"""A distributed run that loses a process: tools/dist_train.sh starts 2 torchrun processes (gloo,
CPU), one is killed with SIGKILL in the middle of training; the survivor is stopped within a
bounded time (no hang), the script says how to resume, and --resume ends with the uninterrupted
run's weights. A process that hangs instead of dying is bounded by env_cfg.dist_cfg.timeout.
A run that completes destroys its process group and ends its threads before the interpreter
shuts down (no abort at exit)."""
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import time

import pytest

import diffkd_mm
from diffkd_mm.datasets import ensure_dataset
from diffkd_mm.engine import load_checkpoint_file
from diffkd_mm.testing import assert_same_weights, write_tiny_seg_config

pytestmark = pytest.mark.slow  # subprocess runs of the tools (see pytest.ini)

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
DIST_TRAIN = osp.join(ROOT, 'tools', 'dist_train.sh')
TRAIN = osp.join(ROOT, 'tools', 'train.py')
TEST = osp.join(ROOT, 'tools', 'test.py')
MAX_ITERS = 8
# Rank 1 stops before iteration 6: rank 0 has saved iter_4.pth (before iteration 5, which needs
# rank 1) and waits for rank 1 in iteration 6.
KILLED_AT = 6
# torchrun's agent polls every 0.1 s (dist_train.sh) and gives the survivors 30 s after SIGTERM
# before SIGKILL; the survivor's collective also fails as soon as the peer's socket closes.
BOUND_S = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _dist_train(cfg, work_dir, *extra, log=None):
    env = dict(os.environ, PORT=str(_free_port()), PYTHON=sys.executable, OMP_NUM_THREADS='1')
    return subprocess.Popen(
        ['bash', DIST_TRAIN, str(cfg), '2', '--work-dir',
         str(work_dir), *extra],
        stdout=log or subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env)


def _weights(work_dir):
    return load_checkpoint_file(str(work_dir / f'iter_{MAX_ITERS}.pth'))['state_dict']


@pytest.fixture(scope='module')
def cfg(tmp_path_factory):
    """The demo DiffKD config on tiny data; a checkpoint every 2 iterations, the last one kept."""
    tmp_path = tmp_path_factory.mktemp('lost_rank')
    data = ensure_dataset('seg', root=tmp_path / 'data', num_train=16, num_val=8)
    return write_tiny_seg_config(str(tmp_path / 'ddp.py'), data, MAX_ITERS, 'interval=2')


def _stalling(cfg, tmp_path, **dist_cfg):
    """``cfg`` where rank 1 stops before iteration KILLED_AT: it writes its pid and sleeps."""
    marker = tmp_path / 'rank1_pid'
    path = tmp_path / 'ddp_stall.py'
    env = f'env_cfg = dict(dist_cfg=dict({", ".join(f"{k}={v!r}" for k, v in dist_cfg.items())}))'
    path.write_text(f'''
_base_ = [{str(cfg)!r}]
custom_imports = dict(imports=['diffkd_mm', 'diffkd_mm.testing'], allow_failed_imports=False)
custom_hooks = [dict(type='StallRankHook', rank=1, at_iter={KILLED_AT}, marker={str(marker)!r})]
{env if dist_cfg else ''}
''')
    return path, marker


def _wait_for_stall(proc, marker, log_path):
    end = time.time() + 600
    while not marker.exists():
        assert proc.poll() is None and time.time() < end, open(log_path).read()
        time.sleep(0.05)
    return int(marker.read_text())


def _stopped_within(proc, bound_s, start):
    try:
        proc.wait(timeout=bound_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f'the surviving process still ran {bound_s} s later')
    return time.monotonic() - start


def test_lost_rank_stops_the_run_then_resume_matches_uninterrupted(cfg, tmp_path):
    stalling, marker = _stalling(cfg, tmp_path)
    full = _dist_train(cfg, tmp_path / 'full')
    out, _ = full.communicate(timeout=600)
    assert full.returncode == 0, out[-4000:]

    work = tmp_path / 'cut'
    with open(tmp_path / 'cut.log', 'w') as log:
        proc = _dist_train(stalling, work, log=log)
        os.kill(_wait_for_stall(proc, marker, tmp_path / 'cut.log'), signal.SIGKILL)
        stopped_s = _stopped_within(proc, BOUND_S, time.monotonic())
    text = open(tmp_path / 'cut.log').read()
    assert proc.returncode != 0
    last = text.strip().splitlines()[-1]
    assert last.startswith('dist_train.sh: training stopped: a process failed or was lost'), text
    assert last.endswith(f'bash {DIST_TRAIN} {stalling} 2 --work-dir {work} --resume')
    assert 'Signal 9 (SIGKILL)' in text  # torchrun names the lost process's fate
    print(f'survivor stopped {stopped_s:.1f} s after the SIGKILL')
    assert sorted(p.name for p in work.glob('*.pth')) == ['iter_4.pth']

    resumed = _dist_train(cfg, work, '--resume')
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-4000:]
    assert f'Load checkpoint from {work / "iter_4.pth"}' in out
    assert_same_weights(_weights(tmp_path / 'full'), _weights(work))


def test_hung_rank_is_bounded_by_the_dist_cfg_timeout(cfg, tmp_path):
    """Rank 1 hangs (alive, silent) instead of dying: nothing closes its connection, so only the
    process group's timeout ends rank 0's wait in the collective; then torchrun stops both."""
    timeout_s = 20
    stalling, marker = _stalling(cfg, tmp_path, backend='gloo', timeout=timeout_s)
    with open(tmp_path / 'hung.log', 'w') as log:
        proc = _dist_train(stalling, tmp_path / 'hung', log=log)
        _wait_for_stall(proc, marker, tmp_path / 'hung.log')
        stopped_s = _stopped_within(proc, timeout_s + BOUND_S, time.monotonic())
    text = open(tmp_path / 'hung.log').read()
    print(f'run stopped {stopped_s:.1f} s after rank 1 hung (timeout {timeout_s} s)')
    assert proc.returncode != 0 and stopped_s > timeout_s - 5, text[-3000:]
    assert text.strip().splitlines()[-1].startswith('dist_train.sh: training stopped'), text


# Runs tools/train.py as torchrun would start a world of one process, then reports, before the
# interpreter shuts down, whether the process group and the threads of its backend (gloo: the
# transport loop and the work threads; the store's server thread) outlived the run. Torn down
# during interpreter shutdown instead, they may abort the process.
PROCESS_GROUP_DRIVER = """
import os, runpy, sys
import torch.distributed as dist
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
threads = [open(f'/proc/self/task/{t}/comm').read().strip() for t in os.listdir('/proc/self/task')]
print('threads left:', sorted(t for t in threads if 'gloo' in t or 'tcpstore' in t))
print('process group left:', dist.is_initialized())
"""


def test_completed_runs_end_their_process_group_and_its_threads(cfg, tmp_path):
    """tools/train.py, then tools/test.py on its checkpoint, each in a distributed world."""
    driver = tmp_path / 'driver.py'
    driver.write_text(PROCESS_GROUP_DRIVER)
    work = tmp_path / 'w'
    runs = {
        TRAIN: [cfg, '--work-dir', work],
        TEST: [cfg, work / f'iter_{MAX_ITERS}.pth', '--work-dir', tmp_path / 'test'],
    }
    for tool, args in runs.items():
        env = dict(
            os.environ,
            RANK='0',
            LOCAL_RANK='0',
            WORLD_SIZE='1',
            MASTER_ADDR='127.0.0.1',
            MASTER_PORT=str(_free_port()),
            OMP_NUM_THREADS='1')
        out = subprocess.run([sys.executable, driver, tool, *args, '--launcher', 'pytorch'],
                             capture_output=True,
                             text=True,
                             timeout=600,
                             env=env)
        log = out.stdout + out.stderr
        assert out.returncode == 0, (tool, log[-6000:])
        assert 'Distributed training: True' in log, tool  # the run was distributed
        last = out.stdout.strip().splitlines()[-2:]
        assert last == ['threads left: []', 'process group left: False'], (tool, last)
