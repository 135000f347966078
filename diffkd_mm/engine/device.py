"""Which device a run trains on, chosen on the command line before anything touches CUDA."""
import os

import torch

#: ``--device`` choices: ``auto`` is CUDA when a device is visible, else the CPU.
DEVICE_CHOICES = ('auto', 'cpu', 'cuda')


def select_device(choice: str, flag: str = '--device') -> str:
    """Make ``choice`` the device that mmengine's Runner (which takes the GPU whenever one is
    visible) trains on, in this process and in the processes it starts.

    ``'cpu'`` hides the GPUs (``CUDA_VISIBLE_DEVICES=''``), so it must come before the first
    CUDA call of the process; ``'cuda'`` needs a visible device.

    Args:
        choice (str): One of :data:`DEVICE_CHOICES`.
        flag (str): How the caller names the option, for errors.

    Returns:
        str: ``'cuda'`` or ``'cpu'``, the device the runs will use.
    """
    if choice not in DEVICE_CHOICES:
        raise ValueError(f'{flag} must be one of {DEVICE_CHOICES}, got {choice!r}')
    if choice == 'cpu':
        if torch.cuda.is_initialized():
            raise RuntimeError(f'{flag} cpu: CUDA is already initialised in this process; '
                               'choose the device before any model is built')
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
        if torch.cuda.is_available():
            raise RuntimeError(f'{flag} cpu: the GPUs stay visible to torch in this process; '
                               'run with CUDA_VISIBLE_DEVICES= set in the environment instead')
        return 'cpu'
    if torch.cuda.is_available():
        return 'cuda'
    if choice == 'cuda':
        raise ValueError(f'{flag} cuda: no CUDA device is visible (torch '
                         f'{torch.__version__}, CUDA_VISIBLE_DEVICES='
                         f'{os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")!r}); use {flag} '
                         'cpu or auto')
    return 'cpu'
