"""The benchmark tool keeps working (a smoke run: its numbers are not asserted), and its reference
formulation computes what DiffKDBranch computes."""
import json
import os.path as osp
import subprocess
import sys

import torch

import diffkd_mm

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'benchmark_train_step.py')


def test_reference_formulation_has_identical_math():
    sys.path.insert(0, osp.dirname(TOOL))
    try:
        from benchmark_train_step import ReferenceDiffKDBranch
    finally:
        sys.path.pop(0)
    from diffkd_mm.models.diffkd import DiffKDBranch
    torch.manual_seed(0)
    ours = DiffKDBranch(8, 16, ae_channels=8)
    ref = ReferenceDiffKDBranch(8, 16, ae_channels=8)
    ref.load_state_dict(ours.state_dict())
    s, t = torch.randn(2, 8, 6, 6), torch.randn(2, 16, 6, 6)
    noise, ddim_noise, steps = torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6, 6), torch.tensor([3, 900])
    a = ours(s, t, noise=noise, diffusion_noise=ddim_noise, timesteps=steps)
    b = ref(s, t, noise=noise, diffusion_noise=ddim_noise, timesteps=steps)
    torch.testing.assert_close(a.refined, b.refined, rtol=1e-5, atol=1e-5)


def test_benchmark_smoke_run(tmp_path):
    res = subprocess.run(
        [sys.executable, TOOL, '--size', '64', '--iters', '1', '--warmup', '0', '--no-scaling',
         '--variants', 'student', 'fitnet', 'diffkd', 'reference', '--out-dir', str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    table = (tmp_path / 'benchmark.md').read_text()
    assert '| diffkd |' in table and '| reference |' in table
    rows = json.loads((tmp_path / 'benchmark.json').read_text())['rows']
    assert set(rows) == {'student', 'fitnet', 'diffkd', 'reference'}
    assert all(r['sec'] > 0 and r['mem'] > 0 for r in rows.values())
