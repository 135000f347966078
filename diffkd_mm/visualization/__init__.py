from .denoising import denoising_figure, record_denoising

__all__ = ['denoising_figure', 'record_denoising']
