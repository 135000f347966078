"""The tools: student export, denoising pictures, test.py through mim, Slurm scripts, --help."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

import diffkd_mm
from diffkd_mm.datasets import ensure_dataset
from mmrazor.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
DEMO = osp.join(ROOT, 'configs', 'diffkd', 'demo')
BIN = osp.dirname(sys.executable)


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope='module')
def distill_ckpt(tmp_path_factory):
    """A checkpoint of the demo DiffKD algorithm after one training step, and its data."""
    tmp = tmp_path_factory.mktemp('ckpt')
    data = ensure_dataset('seg', root=tmp / 'data', num_train=8, num_val=4)
    cfg = Config.fromfile(osp.join(DEMO, 'seg_diffkd.py'))
    torch.manual_seed(0)
    algo = MODELS.build(cfg.model)
    path = tmp / 'iter_1.pth'
    torch.save(dict(state_dict=algo.state_dict(), meta=dict(iter=1)), path)
    return algo, path, data


@pytest.mark.slow
def test_export_student_loads_into_plain_student(distill_ckpt, tmp_path):
    algo, ckpt, _ = distill_ckpt
    out = tmp_path / 'student.pth'
    script = osp.join(ROOT, 'tools', 'model_converters', 'convert_kd_ckpt_to_student.py')
    res = run([sys.executable, script, str(ckpt), str(out)])
    assert res.returncode == 0, res.stderr
    exported = torch.load(out, weights_only=True)['state_dict']
    assert not any(k.startswith(('teacher.', 'distiller.', 'architecture.')) for k in exported)

    student = MODELS.build(Config.fromfile(osp.join(DEMO, 'seg_student.py')).model)
    student.load_state_dict(exported, strict=True)
    x = torch.randn(2, 3, 64, 64)
    algo.eval()
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            student(x, mode='tensor'), algo.student(x, mode='tensor'), rtol=0, atol=0)

    again = run([sys.executable, script, str(ckpt), str(out)])
    assert again.returncode != 0 and 'exists; pass --force' in again.stderr
    assert run([sys.executable, script, str(ckpt), str(out), '--force']).returncode == 0
    bad = run([sys.executable, script, str(out), str(tmp_path / 'x.pth')])
    assert bad.returncode != 0 and 'not an mmrazor distillation checkpoint' in bad.stderr


@pytest.mark.slow
def test_mim_test_evaluates_exported_student(distill_ckpt, tmp_path):
    _, ckpt, data = distill_ckpt
    student = tmp_path / 'student.pth'
    script = osp.join(ROOT, 'tools', 'model_converters', 'convert_kd_ckpt_to_student.py')
    assert run([sys.executable, script, str(ckpt), str(student)]).returncode == 0
    opts = [
        f'{loader}.dataset.data_root={data}' for loader in ('val_dataloader', 'test_dataloader')
    ]
    res = run([
        osp.join(BIN, 'mim'), 'test', 'diffkd_mm',
        osp.join(DEMO, 'seg_student.py'), '--checkpoint',
        str(student), '--work-dir',
        str(tmp_path / 'w'), '--cfg-options', *opts
    ])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'mIoU' in res.stdout + res.stderr


@pytest.mark.slow
def test_visualize_denoising_writes_one_picture_per_level(distill_ckpt, tmp_path):
    _, ckpt, data = distill_ckpt
    res = run([
        sys.executable,
        osp.join(ROOT, 'tools', 'analysis_tools', 'visualize_denoising.py'),
        osp.join(DEMO, 'seg_diffkd.py'),
        str(ckpt), '--out-dir',
        str(tmp_path), '--num-images', '2', '--cfg-options',
        f'val_dataloader.dataset.data_root={data}'
    ])
    assert res.returncode == 0, res.stderr[-3000:]
    for level in range(4):
        assert osp.getsize(tmp_path / f'loss_diffkd_level{level}.png') > 1000
    bad = run([
        sys.executable,
        osp.join(ROOT, 'tools', 'analysis_tools', 'visualize_denoising.py'),
        osp.join(DEMO, 'seg_fitnet.py'),
        str(ckpt)
    ])
    assert bad.returncode != 0 and 'has no DiffKDLoss entry' in bad.stderr


@pytest.mark.parametrize('script,args', [
    ('slurm_train.sh', ['part', 'job', 'cfg.py', 'wd', '--amp']),
    ('slurm_test.sh', ['part', 'job', 'cfg.py', 'ckpt.pth']),
])
def test_slurm_scripts_call_srun_with_our_tools(tmp_path, script, args):
    fake = tmp_path / 'srun'
    fake.write_text('#!/usr/bin/env bash\necho "$@" > "$SRUN_LOG"\n')
    fake.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f'{tmp_path}:{os.environ["PATH"]}',
        GPUS='16',
        SRUN_LOG=str(tmp_path / 'srun.log'))
    res = run(['bash', osp.join(ROOT, 'tools', script), *args], env=env)
    assert res.returncode == 0, res.stderr
    called = (tmp_path / 'srun.log').read_text()
    tool = 'train.py' if 'train' in script else 'test.py'
    assert f'tools/{tool} cfg.py' in called and '--launcher=slurm' in called
    assert '-p part' in called and '--ntasks=16' in called and '--gres=gpu:8' in called


@pytest.mark.slow
@pytest.mark.parametrize('tool,flags', [
    ('train.py', [
        '--work-dir', '--resume', '--amp', '--allow-overwrite', '--auto-scale-lr', '--cfg-options',
        '--launcher', '--local_rank'
    ]),
    ('test.py', ['--work-dir', '--cfg-options', '--launcher', '--local_rank']),
    ('run_demo.py', [
        '--work-dir', '--task', '--seeds', '--methods', '--loss-weight', '--teacher-iters',
        '--student-iters', '--quick', '--schedule', '--jobs', '--parallel', '--resume', '--verbose',
        '--device'
    ]),
    ('analysis_tools/convergence_curve.py', [
        '--task', '--method', '--seed', '--iters', '--val-interval', '--num-train', '--num-val',
        '--teacher-ckpt', '--loss-weight', '--work-dir', '--device'
    ]),
    ('analysis_tools/recipe_parity.py', [
        '--official', '--size', '--batch', '--seed', '--dtype', '--official-commit', '--tolerance',
        '--write-golden'
    ]),
    ('analysis_tools/paired_results.py',
     ['--seeds', '--plot', '--plot-diagnostics', '--select', '--reference', '--finalists']),
    ('analysis_tools/attach_diagnostics.py', ['--out', '--in-place']),
    ('analysis_tools/time_to_target.py', ['--records', '--target-method', '--cost-ratio', '--plot'
                                          ]),
    ('model_converters/convert_kd_ckpt_to_student.py', ['--force']),
    ('analysis_tools/visualize_denoising.py',
     ['--out-dir', '--num-images', '--loss-name', '--cfg-options']),
])
def test_help_describes_every_flag(tool, flags):
    """Every option the parser has is one of the documented flags, and each has a description
    (on its line of ``--help``, or on the next line when the option's name is long)."""
    res = run([sys.executable, osp.join(ROOT, 'tools', tool), '--help'])
    assert res.returncode == 0, res.stderr
    options = res.stdout.split('options:', 1)[1].splitlines()
    col = next(line for line in options if '--help' in line).index('show this help')
    found = {}
    for i, line in enumerate(options):
        match = re.match(r'\s{2}(--[\w-]+)(.*)', line)  # an option's own line
        if match and match[1] != '--help':
            # argparse starts every description at one column: on this line, or on the next.
            nxt = options[i + 1] if i + 1 < len(options) else ''
            found[match[1]] = bool((line[col - 2:col] == '  ' and line[col:].strip())
                                   or (nxt.startswith(' ' * col) and nxt.strip()))
    assert sorted(found) == sorted(flags), 'documented flags differ from the parser\'s'
    assert all(found.values()), [flag for flag, ok in found.items() if not ok]
