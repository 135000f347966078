"""Hooks for what training must not lose (the random state that DiffKD's noise comes from) and
for what its logs must show (each DiffKD loss term under its entry's name)."""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
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


@HOOKS.register_module()
class DistillLossNamesHook(Hook):
    """Tell DiffKD's loss entries their names in ``distill_losses``, for their per-term logs.

    A DiffKD loss entry returns one sum, which mmengine logs under the entry's name; it also logs
    each weighted term (``distill.<entry>_kd``, ``_ddim``, ``_ae``) once it knows that name.
    ``DiffKDDistiller`` tells its entries when it builds them; mmrazor's other distillers keep
    the name to themselves, so in a recipe with ``ConfigurableDistiller`` this hook tells them
    before training starts::

        custom_hooks = [dict(type='DistillLossNamesHook')]

    Entries that already have a name, and losses that are not DiffKD's, are left alone.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for module in model.modules():
            losses = getattr(module, 'distill_losses', None)
            if not isinstance(losses, torch.nn.ModuleDict):
                continue
            for name, loss in losses.items():
                if callable(getattr(loss, 'bind_entry', None)) and loss.loss_name is None:
                    loss.bind_entry(name)
