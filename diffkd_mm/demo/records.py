"""The record each finished run keeps in its folder, and how a resumed run reuses it."""
import hashlib
import json
import os.path as osp
from typing import Dict, Optional

from mmengine.config import Config

from .. import fileio
from ..fileio import atomic_write_text
from .console import Console
from .settings import BENCHMARK_VERSION

#: Each finished run leaves its record in its folder, under this name; a resumed run reuses it.
RECORD_FILE = 'record.json'


class ResumeConflict(ValueError):
    """A run folder holds the record of a run built from another config than asked for now."""


def run_digest(cfg: Config, places: Dict[str, str]) -> str:
    """SHA-256 of everything a run is built from: its whole config, with data, schedule, seed,
    teacher and loss weights filled in.

    Args:
        cfg (Config): The run's config.
        places (dict): ``{name: folder}``: each folder is written as ``<name>`` in the text
            hashed, so that the same run gives the same digest from another cache or data
            folder (another machine).
    """
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    for name, folder in sorted(places.items(), key=lambda item: -len(item[1])):
        text = text.replace(folder, f'<{name}>')
    return hashlib.sha256(text.encode()).hexdigest()


def earlier_run(folder: str, digest: str, title: str, console: Console) -> Optional[dict]:
    """The record a finished run left in ``folder``, or None if it has none (or a damaged one,
    which is set aside, with a warning, to be trained again).

    Raises:
        ResumeConflict: the run there was built from another config.
    """
    path = osp.join(folder, RECORD_FILE)
    if not osp.exists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
        made_from = record.pop('run_digest')
        float(record['value'])
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        fileio.set_aside(
            path, f'[demo] {title}: WARNING: the record of its earlier run {path} cannot be read '
            f'({err!r})',
            'training it again',
            say=console.say)
        return None
    if made_from != digest:
        raise ResumeConflict(
            f'{title} in {osp.dirname(folder)} was run from another config or other settings '
            f'(schedule, methods\' configs, loss weight, teacher); resume a run folder with the '
            'options it was started with, or start a new one without --resume')
    # Same config, so the same benchmark (records of older versions of this code lack the field)
    record.setdefault('benchmark_version', BENCHMARK_VERSION)
    return record


def save_run(folder: str, record: dict, digest: str) -> None:
    """Keep a finished run's record in its folder, for a resumed run to reuse."""
    atomic_write_text(
        osp.join(folder, RECORD_FILE),
        json.dumps(dict(record, run_digest=digest), default=str) + '\n')
