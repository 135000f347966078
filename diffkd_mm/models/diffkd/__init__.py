from .autoencoder import LinearAutoEncoder
from .bottleneck import Bottleneck
from .branch import DiffKDBranch, DiffKDOutput
from .ddim_scheduler import DDIMScheduler
from .denoiser import DiffKDDenoiser
from .noise_adapter import NoiseAdapter
from .noise_predictor import NoisePredictor
from .official import convert_official_state_dict
from .target import DiffKDTarget

__all__ = [
    'Bottleneck', 'DDIMScheduler', 'DiffKDBranch', 'DiffKDDenoiser', 'DiffKDOutput', 'DiffKDTarget',
    'LinearAutoEncoder', 'NoiseAdapter', 'NoisePredictor', 'convert_official_state_dict'
]
