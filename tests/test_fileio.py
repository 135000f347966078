"""Writers that a full disk cannot hurt: one clear error naming the file and the free space, the
previous content intact, no temporary file left; through torch.save and matplotlib too."""
import errno
import os
import os.path as osp
import subprocess

import pytest
import torch

from diffkd_mm.engine import load_checkpoint_file, save_checkpoint_atomic
from diffkd_mm.fileio import (DiskFullError, atomic_copy, atomic_open, atomic_write_text,
                              remove_stale_temporaries, save_figure)
from diffkd_mm.testing import simulated_full_disk


def _only(folder):
    return sorted(os.listdir(folder))


def _check_one_line(err, path, kept):
    text = str(err)
    assert '\n' not in text and err.errno == errno.ENOSPC
    assert text.startswith(f'no space left on device while writing {path} (')
    assert f'free in {osp.dirname(path)})' in text
    expected = f'previous {osp.basename(path)} is kept intact' if kept else \
        'no partial file was left'
    assert expected in text


def test_text_write_on_a_full_disk_keeps_the_previous_file(tmp_path):
    path = str(tmp_path / 'report.md')
    atomic_write_text(path, 'previous report')
    with simulated_full_disk('report.md', budget=10) as failed:
        with pytest.raises(DiskFullError) as info:
            atomic_write_text(path, 'x' * 100)
    assert len(failed) == 1 and not osp.exists(failed[0])  # the cut-short temporary file is gone
    _check_one_line(info.value, path, kept=True)
    assert open(path).read() == 'previous report' and _only(tmp_path) == ['report.md']


def test_checkpoint_save_on_a_full_disk_through_torch(tmp_path):
    path = str(tmp_path / 'iter_6.pth')
    save_checkpoint_atomic(dict(state_dict=dict(w=torch.zeros(3))), str(tmp_path / 'iter_3.pth'))
    with simulated_full_disk('iter_6.pth', budget=700):
        with pytest.raises(DiskFullError) as info:
            save_checkpoint_atomic(dict(state_dict=dict(w=torch.randn(10000))), path)
    # whatever torch wraps the failed write in (torch 2.14: a RuntimeError whose context is it)
    assert info.value.__cause__ is not None
    _check_one_line(info.value, path, kept=False)
    assert _only(tmp_path) == ['iter_3.pth']
    assert torch.equal(
        load_checkpoint_file(str(tmp_path / 'iter_3.pth'))['state_dict']['w'], torch.zeros(3))


def test_figure_and_copy_on_a_full_disk(tmp_path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    save_figure(fig, str(tmp_path / 'a.png'))
    assert open(tmp_path / 'a.png', 'rb').read(4) == b'\x89PNG'
    with simulated_full_disk('b.png', budget=100):
        with pytest.raises(DiskFullError):
            save_figure(fig, str(tmp_path / 'b.png'))
        with pytest.raises(DiskFullError):
            atomic_copy(str(tmp_path / 'a.png'), str(tmp_path / 'b.png'))
    plt.close(fig)
    assert _only(tmp_path) == ['a.png']


def test_wrapped_text_of_a_full_disk_is_recognised(tmp_path):
    path = str(tmp_path / 'x.txt')
    with pytest.raises(DiskFullError):
        with atomic_open(path) as f:
            f.write('a')
            raise RuntimeError('write failed: [Errno 28] No space left on device')
    assert _only(tmp_path) == []


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(OSError) as info:
        with atomic_open(str(tmp_path / 'x.txt')) as f:
            f.write('a')
            raise OSError(errno.EIO, 'Input/output error')
    assert type(info.value) is OSError and info.value.errno == errno.EIO
    assert _only(tmp_path) == []


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 256 KiB file system (tmpfs), where the kernel itself answers ENOSPC."""
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    out = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs',
                          str(mnt)],
                         capture_output=True,
                         text=True)
    if out.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here ({out.stderr.strip()}); the simulated full disk '
                    'tests above cover the same paths')
    yield mnt
    subprocess.run(['umount', str(mnt)], check=True)


def test_real_full_filesystem(small_filesystem):
    first = str(small_filesystem / 'iter_3.pth')
    save_checkpoint_atomic(dict(w=torch.ones(20000)), first)  # 80 KB: fits
    with pytest.raises(DiskFullError) as info:
        save_checkpoint_atomic(dict(w=torch.zeros(50000)), first)  # 200 KB more: does not
    _check_one_line(info.value, first, kept=True)
    assert _only(small_filesystem) == ['iter_3.pth']
    assert torch.equal(load_checkpoint_file(first)['w'], torch.ones(20000))


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    proc = subprocess.Popen(['true'])
    proc.wait()  # its pid no longer runs
    stale = tmp_path / f'.teacher.pth.{proc.pid}-0123abcd.tmp'
    alive = tmp_path / f'.teacher.pth.{os.getpid()}-89abcdef.tmp'
    other = tmp_path / f'.other.pth.{proc.pid}-0123abcd.tmp'
    for f in (stale, alive, other):
        f.write_bytes(b'partial')
    assert remove_stale_temporaries(str(tmp_path / 'teacher.pth')) == [str(stale)]
    assert _only(tmp_path) == sorted([alive.name, other.name])
    assert remove_stale_temporaries(str(tmp_path / 'absent' / 'x.pth')) == []
