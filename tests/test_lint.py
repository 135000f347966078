"""The lint check of .pre-commit-config.yaml (flake8, isort, yapf, whitespace), run by the suite
so that CI enforces it; the settings are in setup.cfg."""
import os
import os.path as osp
import subprocess
import sys

import pytest

import diffkd_mm

pytestmark = pytest.mark.slow  # subprocess runs over the whole tree (see pytest.ini)

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
PATHS = ['diffkd_mm', 'tools', 'tests', 'configs', 'setup.py']
TEXT_SUFFIXES = ('.py', '.md', '.yml', '.yaml', '.sh', '.txt', '.cfg', '.ini', '.json')
SKIP_DIRS = {'.git', '.mim', '__pycache__', 'work_dirs', 'build', 'dist'}


def _lint(module, *args):
    out = subprocess.run([sys.executable, '-m', module, *args],
                         cwd=ROOT,
                         capture_output=True,
                         text=True,
                         timeout=600)
    return out.returncode, (out.stdout + out.stderr)[-5000:]


@pytest.mark.parametrize('module,args', [
    ('flake8', PATHS),
    ('isort', ['--check-only', '--diff', *PATHS]),
    ('yapf', ['--diff', '--recursive', '--exclude', 'diffkd_mm/.mim/*', *PATHS]),
])
def test_tree_is_clean_under(module, args):
    code, output = _lint(module, *args)
    assert code == 0, f'{module} (settings in setup.cfg) reports:\n{output}'


def _text_files():
    for top in [*PATHS, 'docs', 'requirements', '.ci', 'README.md', '.pre-commit-config.yaml']:
        path = osp.join(ROOT, top)
        if osp.isfile(path):
            yield path
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith('.venv')]
            yield from (osp.join(folder, f) for f in files
                        if f.endswith(TEXT_SUFFIXES) or folder.endswith('.ci'))


def test_no_trailing_whitespace_and_one_final_newline():
    bad = []
    for path in _text_files():
        with open(path, 'rb') as f:
            data = f.read()
        name = osp.relpath(path, ROOT)
        if data and not data.endswith(b'\n') or data.endswith(b'\n\n'):
            bad.append(f'{name}: must end with exactly one newline')
        for number, line in enumerate(data.split(b'\n'), 1):
            if line != line.rstrip():
                bad.append(f'{name}:{number}: trailing whitespace')
    assert not bad, '\n'.join(bad[:50])
