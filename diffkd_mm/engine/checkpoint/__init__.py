"""Checkpoints that cannot hurt: safe loading, crash-safe saving, resume that survives a kill.

* **Safe loading.** Every ``torch.load`` inside a :class:`CheckpointGuard` runs with torch's
  ``weights_only=True`` and an allow-list of exactly the types that mmengine checkpoints hold
  (:func:`checkpoint_safe_globals`), even where mmengine or ``torch.hub`` ask for a full unpickle.
  A file that needs anything else is refused with :class:`UnsafeCheckpointError`; the user may
  opt in for files they trust with ``DIFFKD_TRUST_CHECKPOINTS=1``.
* **No silent random weights.** A checkpoint that loads (almost) none of a model's weights stops
  with :class:`MismatchedCheckpointError`, naming the key prefixes of both sides and the fix.
* **Crash-safe saving.** Checkpoints are written to a temporary file, flushed, fsynced and renamed
  (:func:`save_checkpoint_atomic`); a kill leaves the previous file intact.
* **Resume that survives a kill.** :func:`find_resumable_checkpoint` skips, with a warning, a
  checkpoint that does not load and returns the newest one that does.
* **Offline initialisation.** A download that fails raises :class:`OfflineCheckpointError`
  naming the config key, the URL and the cache path where the file can be placed.

The guard is a context manager that our entry points (``tools/*.py``, the demo) put around the
Runner: the hooks into mmengine and torch last exactly as long as the ``with`` block, so that
importing diffkd_mm changes nothing for other code in the process.
"""
from .errors import (CheckpointError, MismatchedCheckpointError, OfflineCheckpointError,
                     UnreadableCheckpointError, UnsafeCheckpointError)
from .files import (TRUST_ENV, checkpoint_safe_globals, load_checkpoint_file,
                    save_checkpoint_atomic, trust_requested)
from .guard import CheckpointGuard, find_config_key
from .resume import find_resumable_checkpoint
from .weights import EXPORTER, MIN_LOADED_FRACTION, check_weights_match

__all__ = [
    'CheckpointError', 'CheckpointGuard', 'EXPORTER', 'MIN_LOADED_FRACTION',
    'MismatchedCheckpointError', 'OfflineCheckpointError', 'TRUST_ENV', 'UnreadableCheckpointError',
    'UnsafeCheckpointError', 'check_weights_match', 'checkpoint_safe_globals', 'find_config_key',
    'find_resumable_checkpoint', 'load_checkpoint_file', 'save_checkpoint_atomic', 'trust_requested'
]
