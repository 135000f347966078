"""A ConfigurableDistiller that logs each term of a multi-term distillation loss on its own."""
from typing import Dict

import torch

from mmrazor.models.distillers import ConfigurableDistiller
from mmrazor.registry import MODELS


@MODELS.register_module()
class DiffKDDistiller(ConfigurableDistiller):
    """:class:`ConfigurableDistiller` whose losses may return a dict of named terms.

    mmengine's ``parse_losses`` accepts only tensors (or lists of tensors) and back-propagates
    every key that contains ``'loss'``. DiffKD has three losses (KD, diffusion, AE) and a statistic
    (the noise-adapter weight) per entry, and each should be logged separately, so a dict returned
    by the loss entry ``loss_<name>`` is spread into the loss dict as:

    * a term ``loss_<x>``  -> ``loss_<name>_<x>`` (back-propagated and logged),
    * any other term ``<y>`` -> ``<name>_<y>`` (logged only; must not contain ``'loss'``).

    For example, the entry ``loss_diffkd_fpn`` gives ``loss_diffkd_fpn_kd``,
    ``loss_diffkd_fpn_ddim``, ``loss_diffkd_fpn_ae`` and ``diffkd_fpn_gate`` (all prefixed with
    ``distill.`` by the algorithm). Losses that return a tensor pass through unchanged, so any
    mmrazor loss can sit beside DiffKD. Everything else is :class:`ConfigurableDistiller`'s.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name, loss in self.distill_losses.items():
            if hasattr(loss, 'loss_name'):
                loss.loss_name = name  # error messages then name the config key

    def compute_distill_losses(self) -> Dict[str, torch.Tensor]:
        losses = {}
        for name, value in super().compute_distill_losses().items():
            if not isinstance(value, dict):
                losses[name] = value
                continue
            stem = name[len('loss_'):] if name.startswith('loss_') else name
            for term, term_value in value.items():
                if term.startswith('loss_'):
                    key = f'{name}_{term[len("loss_"):]}'
                else:
                    key = f'{stem}_{term}'
                    if 'loss' in key:
                        raise KeyError(
                            f'distill_losses.{name}: the statistic {term!r} would be logged as '
                            f'{key!r}, which contains "loss" and would be back-propagated; name '
                            'the loss entry "loss_<name>" with no other "loss" in it.')
                losses[key] = term_value
        return losses
