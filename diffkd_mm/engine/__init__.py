from .checkpoint import (CheckpointError, CheckpointGuard, MismatchedCheckpointError,
                         OfflineCheckpointError, UnreadableCheckpointError, UnsafeCheckpointError,
                         find_resumable_checkpoint, load_checkpoint_file, save_checkpoint_atomic)
from .device import DEVICE_CHOICES, select_device
from .diffkd_warmup import DiffKDWarmupHook
from .distributed import CPUDistributedDataParallel, close_distributed, setup_cpu_distributed
from .entry import (add_launcher_arguments, exit_on_checkpoint_error, exit_on_full_disk,
                    load_entry_config)
from .hooks import DistillLossNamesHook, TorchRNGStateHook
from .kd_diagnostics import KDDiagnosticsHook, measure_kd_signal
from .optim import CPUAmpOptimWrapper

__all__ = [
    'DEVICE_CHOICES', 'select_device', 'add_launcher_arguments', 'CPUAmpOptimWrapper',
    'CPUDistributedDataParallel', 'CheckpointError', 'CheckpointGuard', 'close_distributed',
    'DiffKDWarmupHook', 'DistillLossNamesHook', 'MismatchedCheckpointError',
    'OfflineCheckpointError', 'TorchRNGStateHook', 'UnreadableCheckpointError',
    'UnsafeCheckpointError', 'exit_on_checkpoint_error', 'exit_on_full_disk',
    'find_resumable_checkpoint', 'KDDiagnosticsHook', 'measure_kd_signal', 'load_checkpoint_file',
    'load_entry_config', 'save_checkpoint_atomic', 'setup_cpu_distributed'
]
