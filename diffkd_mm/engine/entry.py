"""What tools/train.py and tools/test.py share: launcher arguments, loading the config they run,
checkpoint errors and a full disk as one-line exits."""
import argparse
import contextlib
import os.path as osp
import re
import sys
from typing import Iterator, Optional

from mmengine.config import Config

from ..fileio import DiskFullError
from .checkpoint import CheckpointError


def add_launcher_arguments(parser: argparse.ArgumentParser, purpose: str) -> None:
    """``--launcher`` and ``--local_rank`` / ``--local-rank``, as OpenMMLab's tools take them.

    Args:
        parser (ArgumentParser): The entry point's parser.
        purpose (str): What is launched, for the help text (``'training'``, ``'evaluation'``).
    """
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help=f'job launcher for distributed {purpose}')
    parser.add_argument(
        '--local_rank',
        '--local-rank',
        type=int,
        default=0,
        help='set by torch.distributed.launch (torchrun uses LOCAL_RANK)')


def load_entry_config(path: str,
                      cfg_options: Optional[dict] = None,
                      work_dir: Optional[str] = None,
                      launcher: str = 'none') -> Config:
    """Load the config an entry point runs, apply ``--cfg-options``, the work dir and launcher.

    Exits with a message (not a stack trace) when the file defines no ``model``. The work dir
    defaults to ``./work_dirs/<config name>``, as in OpenMMLab's tools.
    """
    cfg = Config.fromfile(path)
    if 'model' not in cfg:
        sys.exit(f'{path}: the config defines no `model`; is it a model config?')
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


@contextlib.contextmanager
def exit_on_checkpoint_error() -> Iterator[None]:
    """Turn a :class:`CheckpointError` of the block into a one-line exit (no stack trace).

    mmengine's registry re-raises an error of a constructor (mmrazor loads ``teacher_ckpt`` in
    one) with ``class `X` in Y.py:`` in front; that prefix is dropped.
    """
    try:
        yield
    except CheckpointError as err:
        sys.exit(re.sub(r'^(class `[^`]+` in [^:]+: )+', '', str(err)))


@contextlib.contextmanager
def exit_on_full_disk(advice: str, prefix: str = '') -> Iterator[None]:
    """Turn a :class:`~diffkd_mm.fileio.DiskFullError` of the block into a one-line exit.

    The line is ``prefix``, then the file, the free space and what is left at its path, then
    ``advice`` (what to do: e.g. how to resume).
    """
    try:
        yield
    except DiskFullError as err:
        sys.exit(f'{prefix}{err}. {advice}')
