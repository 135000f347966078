"""Take and put back every random state a training step draws from, so that work done between
two training steps (a warm-up, a validation) leaves the training's random draws as they were."""
import random

import numpy as np
import torch


def rng_state() -> dict:
    """torch's (and every CUDA device's), NumPy's and Python's random states."""
    state = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), random=random.getstate())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Put back what :func:`rng_state` took."""
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    random.setstate(state['random'])
    if 'cuda' in state:
        torch.cuda.set_rng_state_all(state['cuda'])
