"""The demo's console: a run's output goes to its log file, the job's own lines and warnings
between runs reach the terminal, a failed run names its log, and each run shows one line."""
import contextlib
import io
import sys
import types

import pytest

from diffkd_mm.demo import console as console_mod
from diffkd_mm.demo.console import Console, RunProgress


class _Terminal(io.StringIO):

    def __init__(self, tty=False):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@contextlib.contextmanager
def _terminal():
    """The process's streams for the block (set in the test's body: pytest puts its own back
    between a fixture's set-up and the test)."""
    out, saved = _Terminal(), (sys.stdout, sys.stderr)
    sys.stdout = sys.stderr = out
    try:
        yield out
    finally:
        sys.stdout, sys.stderr = saved


def test_run_output_goes_to_its_log_and_the_rest_to_the_terminal(tmp_path):
    log = tmp_path / 'run' / 'console.log'
    with _terminal() as terminal, Console() as console:
        print('before')
        with console.quiet(str(log), 'seg seed 0 student'):
            print('config dump')
            sys.stderr.write('a warning of the run\n')
        print('warning between runs', file=sys.stderr)
        console.say('[demo] done')
        switched = sys.stdout
    assert switched is not terminal and sys.stdout is not switched  # put back after the job
    assert terminal.getvalue() == 'before\nwarning between runs\n[demo] done\n'
    assert log.read_text() == 'config dump\na warning of the run\n'


def test_failed_run_names_its_log_and_raises(tmp_path):
    log = tmp_path / 'console.log'
    with _terminal() as terminal, Console() as console:
        with pytest.raises(RuntimeError, match='boom'):
            with console.quiet(str(log), 'det seed 1 diffkd'):
                print('the run so far')
                raise RuntimeError('boom')
        print('after')
    assert terminal.getvalue() == (f'\n[demo] det seed 1 diffkd failed; its full log: {log}\n'
                                   'after\n')
    assert log.read_text() == 'the run so far\n'


def test_verbose_streams_everything(tmp_path):
    with _terminal() as terminal, Console(verbose=True) as console:
        with console.quiet(str(tmp_path / 'console.log'), 'x'):
            print('config dump')
    assert terminal.getvalue() == 'config dump\n'
    assert not (tmp_path / 'console.log').exists()


def _runner(it, loss):
    hub = types.SimpleNamespace(
        log_scalars={'train/loss': types.SimpleNamespace(current=lambda: loss)})
    return types.SimpleNamespace(iter=it - 1, message_hub=hub)


def test_progress_off_a_terminal_is_one_line_per_run_with_a_line_every_30_s(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(console_mod.time, 'perf_counter', lambda: clock[0])
    out = _Terminal()
    progress = RunProgress('seg seed 0 student', 300, out)
    for it in range(1, 301):
        clock[0] += 0.25  # 75 s in all: lines at 30 s and 60 s, then the final one
        progress.after_train_iter(_runner(it, 1.0 / it), it - 1)
    progress.finish('mIoU 33.21')
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and '\r' not in out.getvalue()
    assert lines[0].startswith('[demo] seg seed 0 student') and '120/300 it' in lines[0]
    assert 'ETA 0:00:45' in lines[0]  # 30 s for 120 iterations: 45 s for the 180 left
    assert lines[-1].endswith('300/300 it  loss 0.003  took 0:01:15  mIoU 33.21')


def test_progress_on_a_terminal_rewrites_one_line(monkeypatch):
    out = _Terminal(tty=True)
    progress = RunProgress('det seed 0 teacher', 3, out)
    for it in (1, 2, 3):
        progress.after_train_iter(_runner(it, 0.5), it - 1)
    progress.finish('mAP 24.00')
    text = out.getvalue()
    assert text.count('\r') == 3 and text.count('\n') == 1 and text.rstrip().endswith('mAP 24.00')


def test_verbose_progress_is_never_rewritten_in_place():
    tty = _Terminal(tty=True)
    console = Console()
    console.terminal = tty
    assert console.progress('x', 3).live
    console = Console(verbose=True)
    console.terminal = tty
    assert not console.progress('x', 3).live  # the run's streamed log would be overwritten
