"""Writing files and folders so that a reader never sees half of one.

Every writer of the project goes through these helpers: a file is written to a hidden temporary
file in the same folder and renamed over its destination (:func:`atomic_open`,
:func:`atomic_write_text`); a folder is filled under a temporary name and renamed into place
(:func:`publish_directory`). A rename within one file system is atomic on POSIX, so a kill, a full
disk or a concurrent writer leaves either the previous content or the new one. A write that
fails because the disk is full raises :class:`DiskFullError`: one line naming the file and the
space left, whatever layer (torch, matplotlib) the failure went through.
"""
import contextlib
import errno
import os
import os.path as osp
import re
import shutil
import tempfile
import time
import uuid
from typing import IO, Callable, Iterator, List, Optional

#: errno values of a write that failed for lack of space (a full disk, a quota).
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A file could not be written for lack of space; the file at its path was left as it was.

    ``str(err)`` is one line: the path, the free space of its file system, and what is at the
    path now (its previous content, or nothing: no partial file is ever left).
    """

    def __init__(self, path: str, cause: OSError) -> None:
        folder = osp.dirname(osp.abspath(path))
        kept = (f'the previous {osp.basename(path)} is kept intact'
                if osp.exists(path) else 'no partial file was left')
        super().__init__(
            cause.errno, f'no space left on device while writing {path} ({_free_space(folder)} '
            f'free in {folder}); {kept}')
        self.path = path

    def __str__(self) -> str:
        return self.strerror


def _free_space(folder: str) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return 'unknown space'
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if free < 1024:
            break
        free /= 1024
    else:
        unit = 'TiB'
    return f'{free:.0f} {unit}' if unit == 'B' else f'{free:.1f} {unit}'


def _no_space_cause(err: BaseException) -> Optional[OSError]:
    """The ENOSPC/EDQUOT ``OSError`` behind ``err``, if any.

    Writers wrap the error of the failed ``write``: ``torch.save`` (2.14) raises a RuntimeError
    ("unexpected pos") whose context is the OSError, so the chain is followed; a wrapper that
    kept only the OSError's text is recognised by it.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            return err
        for code in _NO_SPACE:
            if os.strerror(code) in str(err):
                return OSError(code, os.strerror(code))
        err = err.__cause__ or err.__context__
    return None


def _raise_if_no_space(err: BaseException, path: str) -> None:
    """Raise :class:`DiskFullError` for ``path`` if ``err`` comes from a lack of space."""
    no_space = _no_space_cause(err)
    if no_space is not None and not isinstance(err, DiskFullError):
        raise DiskFullError(path, no_space) from err


def _fsync_folder(folder: str) -> None:
    """Make a rename inside ``folder`` survive a power cut, where the file system can."""
    with contextlib.suppress(OSError):  # not every file system can fsync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = 'w') -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the ``with`` block ends without error.

    The data are flushed and fsynced before the rename. On any exception (KeyboardInterrupt
    included) the temporary file is removed and ``path`` is left as it was; a failure for lack
    of space is raised as :class:`DiskFullError`.

    Args:
        path (str): Destination (local file system); its folder is created if missing.
        mode (str): ``'w'`` (text) or ``'wb'`` (bytes). Defaults to ``'w'``.

    Yields:
        IO: The open temporary file.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # A unique name opened with 'x' rather than mkstemp, whose 0o600 mode would stay on the file.
    tmp = osp.join(folder, f'.{osp.basename(path)}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp')
    try:
        with open(tmp, mode.replace('w', 'x')) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        _raise_if_no_space(err, path)
        raise
    _fsync_folder(folder)


def remove_stale_temporaries(path: str) -> List[str]:
    """Delete the temporary files that :func:`atomic_open` left for ``path`` in processes that
    no longer run (a SIGKILL during a write cannot clean up after itself).

    A temporary file is ``.<name>.<pid>-<random>.tmp`` next to ``path``; one whose process is
    still alive (or whose pid was reused) is kept.

    Args:
        path (str): The destination file the temporaries were written for.

    Returns:
        list[str]: The files deleted.
    """
    folder, name = osp.split(osp.abspath(path))
    pattern = re.compile(rf'^\.{re.escape(name)}\.(\d+)-[0-9a-f]{{8}}\.tmp$')
    removed = []
    for entry in os.listdir(folder) if osp.isdir(folder) else ():
        found = pattern.match(entry)
        if found is None or _process_alive(int(found.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):  # a concurrent clean-up
            os.remove(osp.join(folder, entry))
            removed.append(osp.join(folder, entry))
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` with :func:`atomic_open`."""
    with atomic_open(path, 'w') as f:
        f.write(text)


def atomic_copy(src: str, dst: str) -> None:
    """Copy the file ``src`` to ``dst`` with :func:`atomic_open`."""
    with open(src, 'rb') as source, atomic_open(dst, 'wb') as target:
        shutil.copyfileobj(source, target)


def save_figure(fig, path: str, dpi: int = 100) -> None:
    """Save a matplotlib figure to ``path`` with :func:`atomic_open` (format from the suffix)."""
    fmt = osp.splitext(path)[1].lstrip('.').lower() or 'png'
    with atomic_open(path, 'wb') as f:
        fig.savefig(f, format=fmt, dpi=dpi)


def publish_directory(target: str, fill: Callable[[str], None], owner_file: str,
                      is_current: Callable[[str], bool]) -> bool:
    """Fill a new folder under a temporary name next to ``target``, then rename it to ``target``.

    Only folders this project created may be replaced: the first file written into the new folder
    is ``owner_file``, and an existing non-empty ``target`` without it raises. ``fill`` should
    write whatever makes ``is_current`` true last (a completion marker), so that a folder
    interrupted half-way is never taken for a finished one.

    Args:
        target (str): Absolute destination folder.
        fill (Callable[[str], None]): ``fill(folder)`` writes the content into ``folder``.
        owner_file (str): Name of the (empty) file that marks a folder as created here.
        is_current (Callable[[str], bool]): Whether a folder already holds what ``fill`` writes;
            a current ``target`` published concurrently (another rank) is kept.

    Returns:
        bool: True if this call published ``target``, False if a concurrent call published an
        equal folder first.

    Raises:
        FileExistsError: ``target`` exists, is not empty and was not created here.
        DiskFullError: The disk filled up while ``fill`` wrote; ``target`` is as it was.
    """
    if osp.lexists(target) and (not osp.isdir(target) or
                                (os.listdir(target)
                                 and not osp.isfile(osp.join(target, owner_file)))):
        raise FileExistsError(
            f'{target} exists and was not created by diffkd_mm: refusing to overwrite it; '
            'remove it or choose another directory')
    parent = osp.dirname(target)
    os.makedirs(parent, exist_ok=True)
    # Not tempfile.mkdtemp: its 0o700 mode would stay on the published folder.
    tmp = osp.join(parent, f'.{osp.basename(target)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}')
    os.mkdir(tmp)
    try:
        open(osp.join(tmp, owner_file), 'w').close()
        fill(tmp)
        if osp.isdir(target) and os.listdir(target) and not is_current(target):
            # Ours (checked above) but incomplete or stale: move it away, then delete it, so
            # that the target path never shows a half-deleted folder.
            trash = tempfile.mkdtemp(prefix=f'.{osp.basename(target)}.old-', dir=parent)
            os.rename(target, osp.join(trash, 'old'))
            shutil.rmtree(trash)
        try:
            os.rename(tmp, target)
        except OSError:
            # Renaming onto a non-empty folder fails: a concurrent call published first.
            if not is_current(target):
                raise
            shutil.rmtree(tmp)
            return False
    except BaseException as err:
        # Also on KeyboardInterrupt: never leave a temporary folder behind.
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_if_no_space(err, target)
        raise
    _fsync_folder(parent)
    return True


def cache_root() -> str:
    """The project's cache folder: ``$DIFFKD_CACHE_DIR``, else ``$XDG_CACHE_HOME/diffkd_mm``
    (``~/.cache/diffkd_mm``). Each cache (the demo's teachers, the denoiser warm-ups) keeps
    a sub-folder of it."""
    return os.environ.get('DIFFKD_CACHE_DIR') or osp.join(
        os.environ.get('XDG_CACHE_HOME', osp.expanduser('~/.cache')), 'diffkd_mm')


def set_aside(path: str, problem: str, then: str, say: Callable[[str], None]) -> Optional[str]:
    """Rename an unusable cache file to ``<path>.bad-<time>[-n]`` and say so in one line.

    A cache file that cannot be used is kept (for a look) rather than deleted, never renamed over
    an existing file, and moved out of the way of the next run, which writes a new one.

    Args:
        path (str): The cache file.
        problem (str): What is wrong, naming the file, e.g. ``'cached teacher <path> is stale'``.
        then (str): What happens instead, e.g. ``'training the teacher again'``.
        say (callable): Called once with ``'<problem>: set aside as <new name>, <then>'``.

    Returns:
        str or None: The new name; None if the file was gone already (a concurrent run set it
        aside first, and said so): then nothing is said.
    """
    stamp = time.strftime('%Y%m%d-%H%M%S')
    for n in range(100):
        aside = f'{path}.bad-{stamp}' + (f'-{n}' if n else '')
        if osp.lexists(aside):
            continue
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return None
        say(f'{problem}: set aside as {osp.basename(aside)}, {then}')
        return aside
    raise FileExistsError(f'{path}: 100 set-aside copies from this second already exist')
