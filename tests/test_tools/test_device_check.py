"""tools/device_check.sh: the GPU machine's one prepared check, run here with --no-cuda."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from diffkd_mm.benchmark.device_check import device_check_table

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_the_table_reads_each_step_and_gives_ratios_to_fitnet(tmp_path):
    (tmp_path / 'cuda_tests.log').write_text('....\n===== 5 passed, 2 skipped in 9.1s =====\n')
    (tmp_path / 'demo.status').write_text('0 95\n')
    bench = tmp_path / 'bench_retinanet_fp16'
    bench.mkdir()
    rows = dict(
        fitnet=dict(sec=0.2, mem=2 * 2**30),
        pkd=dict(sec=0.21, mem=2 * 2**30),
        diffkd=dict(sec=0.3, mem=3 * 2**30))
    (bench / 'benchmark.json').write_text(
        json.dumps(dict(pair='retinanet', size=800, width=1333, batch=2, rows=rows)))
    (tmp_path / 'bench_faster_rcnn_bf16.skipped').write_text('a reason\n')
    lines = device_check_table(str(tmp_path), 'NVIDIA H200')
    assert lines[0] == '# Device check: NVIDIA H200'
    assert '5 passed, 2 skipped in 9.1s' in lines[2] and 'exit 0 in 95 s' in lines[3]
    assert '| retinanet | 800x1333, batch 2 | fp16 | diffkd | 300.0 | 1.50 | 3072 | 1.50 |' \
        in lines
    assert '| faster_rcnn | | bf16 | not measured: a reason | | | | |' in lines


def test_missing_steps_say_so(tmp_path):
    lines = device_check_table(str(tmp_path), 'cpu')
    assert 'not run' in lines[2] and 'not run' in lines[3]
    assert lines[-1].startswith('| (no cost measured)')


@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA device is visible here')
def test_without_a_gpu_it_says_how_to_run_it(tmp_path):
    out = subprocess.run(['bash', osp.join(ROOT, 'tools', 'device_check.sh'),
                          str(tmp_path)],
                         capture_output=True,
                         text=True,
                         env=dict(os.environ, PYTHON=sys.executable),
                         timeout=300)
    assert out.returncode == 2
    assert 'no CUDA device is visible' in out.stderr and '--no-cuda' in out.stderr


@pytest.mark.slow  # the CUDA tests, the demo's --quick and six small cost runs: minutes
def test_the_whole_check_runs_on_the_cpu_with_no_cuda(tmp_path):
    out = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'device_check.sh'), '--no-cuda',
         str(tmp_path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHON=sys.executable),
        timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = (tmp_path / 'device_check.md').read_text()
    assert table.splitlines()[0] in out.stdout  # the table is printed too
    assert 'skipped' in table.splitlines()[2] and 'exit 0 in' in table.splitlines()[3]
    for pair, precision in (('retinanet', 'fp32'), ('retinanet', 'bf16'), ('faster_rcnn', 'fp32')):
        for method in ('fitnet', 'pkd', 'diffkd'):
            assert f'| {pair} | 128x128, batch 2 | {precision} | {method} |' in table
        fitnet = next(line for line in table.splitlines()
                      if line.startswith(f'| {pair} | 128x128, batch 2 | {precision} | fitnet |'))
        assert fitnet.split('|')[6].strip() == '1.00', fitnet  # the ratios' base
    assert '| faster_rcnn | | bf16 | not measured:' in table
