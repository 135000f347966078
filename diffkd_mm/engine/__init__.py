from .entry import allow_trusted_checkpoints, load_entry_config
from .distributed import CPUDistributedDataParallel, setup_cpu_distributed
from .hooks import TorchRNGStateHook
from .optim import CPUAmpOptimWrapper

__all__ = [
    'CPUAmpOptimWrapper', 'CPUDistributedDataParallel', 'TorchRNGStateHook',
    'allow_trusted_checkpoints', 'load_entry_config', 'setup_cpu_distributed'
]
