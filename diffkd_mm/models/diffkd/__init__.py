from .autoencoder import LinearAutoEncoder
from .bottleneck import Bottleneck
from .branch import DiffKDBranch, DiffKDOutput
from .ddim_scheduler import DDIMScheduler
from .noise_adapter import NoiseAdapter
from .noise_predictor import NoisePredictor
from .official import convert_official_state_dict

__all__ = [
    'Bottleneck', 'DDIMScheduler', 'DiffKDBranch', 'DiffKDOutput', 'LinearAutoEncoder',
    'NoiseAdapter', 'NoisePredictor', 'convert_official_state_dict'
]
