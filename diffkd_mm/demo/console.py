"""What the demo shows a person: one progress line per training run, the run's full output in
its folder.

mmengine prints every config (hundreds of lines) and every logged iteration of every run. Inside
:class:`Console`, the process's ``sys.stdout`` and ``sys.stderr`` are a switch: while a run trains
they go to ``<run folder>/console.log``, between runs to the terminal, so warnings of the main
job itself (a damaged cache, a missing metric) still reach the person. Each run shows one line,
updated in place on a terminal (iteration, loss, ETA), printed every 30 s otherwise, and closed
with the run's result. ``verbose=True`` streams everything as before.
"""
import contextlib
import io
import os
import sys
import time
from typing import IO, Iterator, Optional

from mmengine.hooks import Hook

from ..patches import swapped

#: On a stream that is not a terminal (a pipe, a file), the least seconds between two lines.
_LINE_EVERY_S = 30.0


class _Switch(io.TextIOBase):
    """A text stream that writes to ``target``, which the console switches."""

    def __init__(self, terminal: IO) -> None:
        self.terminal = terminal
        self.target = terminal

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def fileno(self) -> int:  # for code that asks for the descriptor (faulthandler, subprocess)
        return self.terminal.fileno()

    def isatty(self) -> bool:
        return self.target.isatty()


def clock(seconds: float) -> str:
    """``3725`` -> ``'1:02:05'``."""
    minutes, sec = divmod(int(round(seconds)), 60)
    return f'{minutes // 60}:{minutes % 60:02d}:{sec:02d}'


class RunProgress(Hook):
    """One line for one training run: ``<title>  it/total  loss x  ETA h:mm:ss``.

    On a terminal the line is rewritten in place; elsewhere it is printed at most every
    :data:`_LINE_EVERY_S` seconds. :meth:`finish` ends it with the run's result.

    Args:
        title (str): What runs, e.g. ``'seg seed 0 student'``.
        total (int): Training iterations.
        stream (IO): Where the line goes (the terminal, not the switched stream).
        live (bool, optional): Rewrite the line in place; defaults to whether ``stream`` is a
            terminal.
        line_every (float): When not live, the least seconds between two lines.
    """

    priority = 'VERY_LOW'

    def __init__(self,
                 title: str,
                 total: int,
                 stream: IO,
                 live: Optional[bool] = None,
                 line_every: float = _LINE_EVERY_S) -> None:
        self.title, self.total, self.stream = title, total, stream
        self.live = stream.isatty() if live is None else live
        self.line_every = line_every
        self.started = time.perf_counter()
        self.last_line = self.started
        self.iteration, self.loss = 0, None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.iteration = runner.iter + 1
        loss = runner.message_hub.log_scalars.get('train/loss')
        self.loss = None if loss is None else float(loss.current())
        now = time.perf_counter()
        if self.live:
            self._show(self._line(now), end='\r')
        elif now - self.last_line >= self.line_every and self.iteration < self.total:
            self._show(self._line(now))
            self.last_line = now

    def _line(self, now: float, result: Optional[str] = None) -> str:
        elapsed = now - self.started
        parts = [f'[demo] {self.title:<28}', f'{self.iteration:>5}/{self.total} it']
        if self.loss is not None:
            parts.append(f'loss {self.loss:.3f}')
        if result is None:
            left = elapsed / self.iteration * (self.total - self.iteration) if self.iteration else 0
            parts.append(f'ETA {clock(left)}')
        else:
            parts += [f'took {clock(elapsed)}', result]
        return '  '.join(parts)

    def _show(self, line: str, end: str = '\n') -> None:
        # pad, so that a shorter line fully covers the one it rewrites on a terminal
        self.stream.write(line.ljust(100) + end if self.live else line + end)
        self.stream.flush()

    def finish(self, result: str) -> None:
        """End the line with ``result`` (e.g. ``'mIoU 33.21'``)."""
        self._show(self._line(time.perf_counter(), result))


class Console:
    """Where the demo's output goes; use as a context manager around the whole job.

    Args:
        verbose (bool): Stream every run's full output to the terminal (no switching).
        shared (bool): Other processes write to the same terminal (parallel runs): progress
            lines are never rewritten in place, and come at most every ``line_every`` seconds.
        line_every (float): See ``shared``; also the interval when the terminal is not one.
    """

    def __init__(self,
                 verbose: bool = False,
                 shared: bool = False,
                 line_every: float = _LINE_EVERY_S) -> None:
        self.verbose = verbose
        self.shared = shared
        self.line_every = line_every
        self.terminal: IO = sys.stdout
        self._stdout: Optional[_Switch] = None
        self._stderr: Optional[_Switch] = None

    def __enter__(self) -> 'Console':
        self.terminal = sys.stdout
        self._swaps = contextlib.ExitStack()
        if not self.verbose:  # the swap is documented in diffkd_mm.patches ('console')
            self._stdout, self._stderr = _Switch(sys.stdout), _Switch(sys.stderr)
            self._swaps.enter_context(swapped(sys, 'stdout', self._stdout, patch='console'))
            self._swaps.enter_context(swapped(sys, 'stderr', self._stderr, patch='console'))
        return self

    def __exit__(self, *exc_info) -> None:
        self._swaps.close()

    def say(self, line: str) -> None:
        """Print one line of the demo's own to the terminal."""
        self.terminal.write(line + '\n')
        self.terminal.flush()

    def progress(self, title: str, total: int) -> RunProgress:
        """A progress line for a run of ``total`` iterations (register it with the Runner).

        With ``verbose`` or ``shared``, the line is never rewritten in place: the run's log or
        other processes' lines stream around it.
        """
        live = False if self.verbose or self.shared else None
        return RunProgress(title, total, self.terminal, live=live, line_every=self.line_every)

    @contextlib.contextmanager
    def quiet(self, log_path: str, what: str) -> Iterator[None]:
        """The block's output (a run's) goes to ``log_path`` instead of the terminal.

        If the block fails, the terminal is told where the full log is before the error
        propagates (its traceback then prints in full).
        """
        if self.verbose:
            yield
            return
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, 'a') as log:
            self._point(log)
            try:
                yield
            except BaseException:
                self._point(None)
                self.say(f'\n[demo] {what} failed; its full log: {log_path}')
                raise
            finally:
                self._point(None)

    def _point(self, log: Optional[IO]) -> None:
        for switch in (self._stdout, self._stderr):
            switch.target = switch.terminal if log is None else log
