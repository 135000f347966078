"""Hooks for what training must not lose: the random state that DiffKD's noise comes from."""
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class TorchRNGStateHook(Hook):
    """Save torch's random state in every checkpoint and restore it when training resumes.

    DiffKD draws its start-point noise, diffusion noise and timesteps from torch's global
    generator, so a resumed run only repeats the uninterrupted one if that generator is where it
    was at the checkpoint. mmengine saves the model, optimizer, schedulers and message hub, and
    re-seeds on resume, but not the generator's position.

    The state is restored just before the first resumed iteration, after mmengine has replayed the
    dataloader up to the checkpoint: that replay re-runs the data pipeline, whose random
    transforms draw from numpy / python ``random`` (re-seeded by mmengine, so replayed exactly),
    not from torch.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._pending = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(cpu=torch.get_rng_state())
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['torch_rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('torch_rng_state')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is None:
            return
        torch.set_rng_state(self._pending['cpu'])
        if 'cuda' in self._pending and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self._pending['cuda'])
        self._pending = None
