"""What tools/train.py and tools/test.py share: loading the config they run, loading checkpoints."""
import os
import os.path as osp
import sys
from typing import Optional

from mmengine.config import Config


def load_entry_config(path: str, cfg_options: Optional[dict] = None,
                      work_dir: Optional[str] = None, launcher: str = 'none') -> Config:
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


def allow_trusted_checkpoints() -> None:
    """Load checkpoints as mmengine 0.10.7 expects (torch's pre-2.6 ``weights_only=False``).

    mmengine's checkpoints pickle its message hub (HistoryBuffer, numpy objects) and the OpenMMLab
    zoo's older ones carry metadata objects; torch >= 2.6 refuses both under its default
    ``weights_only=True``. Only for checkpoints you trust (your work dirs, the zoo); an explicit
    ``weights_only`` argument still takes precedence.
    """
    os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
