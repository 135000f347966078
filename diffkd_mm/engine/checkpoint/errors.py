"""The errors of checkpoint handling: each names what went wrong and the way out."""


class CheckpointError(RuntimeError):
    """A checkpoint that was refused or cannot be used; the message says why and what to do."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds objects outside the allow-list: unpickling it could run code."""


class UnreadableCheckpointError(CheckpointError):
    """The file is not a readable checkpoint (truncated, corrupt or not a torch file)."""


class MismatchedCheckpointError(CheckpointError):
    """The checkpoint holds (almost) none of the model's weights."""


class OfflineCheckpointError(CheckpointError):
    """A checkpoint had to be downloaded and the download failed."""
