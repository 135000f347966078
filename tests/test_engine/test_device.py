"""--device of the demo and the convergence curve: the device is chosen, or refused clearly."""
import os
import subprocess
import sys

import pytest
import torch

from diffkd_mm.engine import select_device


def test_cpu_hides_the_gpus_from_the_process_and_its_children(monkeypatch):
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    code = ('import os, torch\nfrom diffkd_mm.engine import select_device\n'
            'print(select_device("cpu"), os.environ["CUDA_VISIBLE_DEVICES"] == "", '
            'torch.cuda.is_available())')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ['cpu', 'True', 'False']


def test_auto_is_cuda_when_visible_else_cpu():
    assert select_device('auto') == ('cuda' if torch.cuda.is_available() else 'cpu')


@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA device is visible here')
def test_cuda_without_a_device_names_the_option_and_the_way_out():
    with pytest.raises(
            ValueError, match=r'--device cuda: no CUDA device is visible.*--device '
            r'cpu or auto'):
        select_device('cuda')


def test_an_unknown_device_is_refused_with_the_choices():
    with pytest.raises(
            ValueError, match=r"--device must be one of \('auto', 'cpu', 'cuda'\), "
            r"got 'gpu'"):
        select_device('gpu')


@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA device is visible here')
@pytest.mark.parametrize('tool', ['run_demo.py', 'analysis_tools/convergence_curve.py'])
def test_the_tools_refuse_cuda_in_one_line(tool):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = ['--quick'] if tool == 'run_demo.py' else [
        '--task', 'det', '--method', 'student', '--seed', '0', '--iters', '1', '--val-interval', '1'
    ]
    out = subprocess.run(
        [sys.executable,
         os.path.join(root, 'tools', tool), '--device', 'cuda', *args],
        capture_output=True,
        text=True,
        timeout=300)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert out.stderr.strip().splitlines()[-1].endswith('use --device cpu or auto')
