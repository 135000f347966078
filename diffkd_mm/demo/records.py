"""The record each finished run keeps in its folder, and how a resumed run reuses it."""
import glob
import hashlib
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config

from .. import fileio
from ..fileio import atomic_write_text
from .console import Console
from .paired import COMPARABLE_KEYS
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


def read_records(path: str) -> List[dict]:
    """The records of a ``results.json`` file written by ``tools/run_demo.py`` (or shipped).

    Raises:
        OSError, ValueError, TypeError, KeyError: the file cannot be read or is not a JSON list
            of records with task, seed, method and value.
    """
    with open(path) as f:
        records = json.load(f)
    [(r['task'], r['seed'], r['method'], r['value']) for r in records]  # is it records?
    return records


def run_folder_records(run_dir: str) -> List[dict]:
    """The records of the finished runs in a run folder of ``tools/run_demo.py``
    (``<task>_seed<seed>/<method>/record.json``), in path order, without their digests.

    Unlike the folder's ``report/results.json``, which its last run writes at its end, these are
    there as soon as each run finishes (a run folder still in training, or resumed by several
    processes, each for other methods).

    Raises:
        ValueError: a record that is not JSON, naming its file.
    """
    records = []
    for path in sorted(glob.glob(osp.join(run_dir, '*_seed*', '*', RECORD_FILE))):
        try:
            with open(path) as f:
                record = json.load(f)
        except ValueError as err:
            raise ValueError(f'{path}: {err}') from err
        record.pop('run_digest', None)
        records.append(record)
    return records


#: What names one run of the benchmark: two records that agree on these are the same run.
RUN_KEYS = ('task', 'seed', 'method') + COMPARABLE_KEYS


def attach_rerun_diagnostics(records: Sequence[dict],
                             reruns: Sequence[dict]) -> Tuple[List[dict], List[str]]:
    """Give records made before ``KDDiagnosticsHook`` existed the diagnostics of their reruns.

    A rerun's diagnostics describe a record only if the rerun is that run: the same task, seed,
    method, benchmark version and schedule (so the same data, teacher and config), ending at
    exactly the same value (the training was the same, to the last digit kept). Any other rerun
    is reported and left out; diagnostics a record already has are never replaced.

    Args:
        records (list[dict]): The records to complete (not changed).
        reruns (list[dict]): Records of the same runs trained again with the hook on.

    Returns:
        tuple[list[dict], list[str]]: Copies of ``records``, with ``diagnostics`` where a rerun
        gave them, and one line per rerun saying what became of it.
    """
    out = [dict(r) for r in records]
    by_run = {tuple(r.get(k) for k in RUN_KEYS): r for r in out}
    lines = []
    for rerun in reruns:
        if not rerun.get('diagnostics'):
            continue
        name = f'{rerun["task"]} seed {rerun["seed"]} {rerun["method"]}'
        record = by_run.get(tuple(rerun.get(k) for k in RUN_KEYS))
        if record is None:
            lines.append(f'{name}: no record of this run (task, seed, method, benchmark version '
                         'and schedule) to attach to: left out')
        elif record['value'] != rerun['value']:
            lines.append(f'{name}: the rerun ended at {rerun["value"]:.6g}, the record at '
                         f'{record["value"]:.6g}: not the same run, left out')
        elif record.get('diagnostics'):
            lines.append(f'{name}: the record has diagnostics already: kept' + (
                '' if record['diagnostics'] == rerun['diagnostics'] else ' (the rerun\'s differ)'))
        else:
            record['diagnostics'] = rerun['diagnostics']
            lines.append(f'{name}: {record["value"]:.6g} again; diagnostics attached')
    return out, lines
