from .distributed import CPUDistributedDataParallel, setup_cpu_distributed
from .hooks import TorchRNGStateHook
from .optim import CPUAmpOptimWrapper

__all__ = [
    'CPUAmpOptimWrapper', 'CPUDistributedDataParallel', 'TorchRNGStateHook',
    'setup_cpu_distributed'
]
