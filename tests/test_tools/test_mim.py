"""`mim train diffkd_mm CONFIG` must find our package, configs and tools (diffkd_mm/.mim)."""
import os.path as osp
import subprocess
import sys

import pytest

import diffkd_mm

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
MIM = osp.join(osp.dirname(sys.executable), 'mim')


def test_mim_resolves_package_tools_and_configs():
    from mim.utils import get_installed_path, is_installed
    assert is_installed('diffkd_mm')
    pkg_root = get_installed_path('diffkd_mm')
    assert osp.samefile(pkg_root, osp.dirname(diffkd_mm.__file__))
    train_script = osp.join(pkg_root, '.mim', 'tools', 'train.py')
    assert osp.isfile(train_script)
    # an editable install links .mim to the checkout, so edits apply without reinstalling
    assert osp.samefile(train_script, osp.join(ROOT, 'tools', 'train.py'))
    assert osp.isdir(osp.join(pkg_root, '.mim', 'configs'))


@pytest.mark.slow
def test_mim_train_reaches_our_train_script(tmp_path):
    """mim finds the package and runs our .mim/tools/train.py, which names the missing key."""
    cfg = tmp_path / 'empty_cfg.py'
    cfg.write_text('x = 1\n')
    out = subprocess.run(
        [MIM, 'train', 'diffkd_mm',
         str(cfg), '--work-dir', str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert '.mim/tools/train.py' in text, text[-2000:]
    assert 'the config defines no `model`' in text, text[-2000:]


@pytest.mark.slow
def test_mim_train_trains_a_packaged_config(tmp_path):
    """`mim train diffkd_mm <config shipped in .mim>` trains: 2 DiffKD iterations on tiny data."""
    from diffkd_mm.datasets import ensure_dataset
    data = ensure_dataset('seg', root=tmp_path / 'data', num_train=4, num_val=2)
    opts = [
        f'{loader}.dataset.data_root={data}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]
    opts += [
        'train_dataloader.batch_size=2', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=2'
    ]
    out = subprocess.run([
        MIM, 'train', 'diffkd_mm', 'configs/diffkd/demo/seg_diffkd.py', '--work-dir',
        str(tmp_path / 'w'), '--cfg-options', *opts
    ],
                         capture_output=True,
                         text=True,
                         timeout=600,
                         cwd=tmp_path)  # not the checkout: mim resolves it
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert 'distill.loss_diffkd_kd' in text and osp.isfile(tmp_path / 'w' / 'iter_2.pth')
