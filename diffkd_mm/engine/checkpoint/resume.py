"""Resume that survives a kill: the newest checkpoint of a work dir that loads."""
import logging
import os
import os.path as osp
import re
from typing import Optional

from mmengine.logging import print_log

from .errors import UnreadableCheckpointError
from .files import load_checkpoint_file

_CKPT_NAME = re.compile(r'(?:^|_)(?:iter|epoch)_(\d+)\.pth$')


def _step_of(path: str) -> int:
    found = _CKPT_NAME.search(osp.basename(path))
    return int(found.group(1)) if found else -1


def find_resumable_checkpoint(work_dir: str, logger='current') -> Optional[str]:
    """The newest checkpoint of ``work_dir`` that loads, for ``--resume`` without a path.

    Candidates are the file ``last_checkpoint`` names and every ``*.pth`` of the work dir, newest
    first (by the step in ``iter_N.pth`` / ``epoch_N.pth``, then by time). A candidate that does
    not load (cut short by a kill or a full disk, corrupt, no training state) is skipped with a
    warning naming it.

    Args:
        work_dir (str): The run's work dir.
        logger: Where warnings go (mmengine ``print_log`` logger).

    Returns:
        str or None: The checkpoint to resume from; None when the work dir holds none.

    Raises:
        UnreadableCheckpointError: Checkpoints exist but none of them loads.
        UnsafeCheckpointError: A candidate holds types outside the allow-list (not skipped:
            such a file in a work dir is not ours).
    """
    candidates = set()
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named and osp.isfile(named):
            candidates.add(osp.abspath(named))
        elif named:
            print_log(
                f'--resume: last_checkpoint names {named}, which does not exist; looking '
                'for other checkpoints',
                logger=logger,
                level=logging.WARNING)
    if osp.isdir(work_dir):
        candidates.update(
            osp.abspath(osp.join(work_dir, f)) for f in os.listdir(work_dir)
            if f.endswith('.pth') and osp.isfile(osp.join(work_dir, f)))
    skipped = []
    for path in sorted(candidates, key=lambda p: (_step_of(p), osp.getmtime(p)), reverse=True):
        try:
            checkpoint = load_checkpoint_file(path)
        except UnreadableCheckpointError as err:
            reason = str(err)
        else:
            meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
            if isinstance(meta, dict) and 'iter' in meta and 'state_dict' in checkpoint:
                return path
            reason = f'{path}: holds no training state (meta.iter), e.g. an exported model'
        skipped.append(reason)
        print_log(f'--resume: skipping {reason}', logger=logger, level=logging.WARNING)
    if skipped:
        raise UnreadableCheckpointError(
            f'--resume: no checkpoint of {work_dir} loads: ' + '; '.join(skipped) +
            '. Pass --resume PATH to a good checkpoint, or start anew in another --work-dir.')
    return None
