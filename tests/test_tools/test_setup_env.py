"""tools/setup_env.sh stops with one line, before pip starts, when the set-up cannot succeed."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_setup(tmp_path, **env):
    return subprocess.run(
        ['bash', str(ROOT / 'tools/setup_env.sh')],
        env={
            **os.environ, 'PYTHON': sys.executable,
            'DIFFKD_VENV': str(tmp_path / 'venv'),
            'DIFFKD_CACHE_DIR': str(tmp_path / 'cache'),
            **env
        },
        capture_output=True,
        text=True,
        timeout=300)


def test_too_little_disk_for_torch_is_one_line_before_pip(tmp_path):
    result = run_setup(tmp_path, DIFFKD_MIN_FREE_GIB='1000000')
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if 'ERROR' in line]
    assert len(error) == 1, result.stderr
    assert "installing torch for the 'default' stack needs about 1000000 GiB free" in error[0]
    assert str(tmp_path / 'venv') in error[0] and 'DIFFKD_VENV=/path' in error[0]
    # Stopped before pip touched the environment: it has no torch, and nothing was cached.
    assert not list((tmp_path / 'venv').glob('lib/python*/site-packages/torch'))
    assert not (tmp_path / 'cache').exists()


@pytest.mark.parametrize('stack', ['torch21', 'cuda'])
def test_unknown_stack_is_named(tmp_path, stack):
    result = run_setup(tmp_path, DIFFKD_STACK=stack)
    assert result.returncode == 2
    assert f"unknown DIFFKD_STACK='{stack}' (known: default, torch2.1)" in result.stderr
    assert not (tmp_path / 'venv').exists()
