"""A distillation loss made of several weighted terms, each logged on its own.

mmengine back-propagates what a distiller returns only if it is a tensor (or a list of tensors),
and logs it under the loss entry's name. DiffKD has up to three losses per entry (KD, diffusion,
AE) and a statistic (the noise-adapter weight): the entry returns their weighted sum, so it works
in any mmrazor distiller, and writes each term into mmengine's ``MessageHub`` as the train loop
writes the returned losses, so the log shows, for the entry ``loss_diffkd_fpn``::

    distill.loss_diffkd_fpn          the sum (back-propagated)
    distill.loss_diffkd_fpn_kd       each weighted term (logged only)
    distill.loss_diffkd_fpn_ddim
    distill.loss_diffkd_fpn_ae
"""
import logging
import sys
from typing import Dict, List, Optional

import torch
from mmengine.logging import MessageHub, print_log
from torch import nn

NONFINITE_POLICIES = ('raise', 'skip', 'ignore')
#: The prefix every mmrazor distillation algorithm puts before its distiller's losses.
DISTILL_PREFIX = 'distill.'


def entry_name_from_distiller(module: nn.Module) -> Optional[str]:
    """The key under which a ``ConfigurableDistiller`` calls ``module``, or None.

    mmrazor's ``ConfigurableDistiller.compute_distill_losses`` (also used by every distiller
    derived from it) calls each loss as ``loss_module(**forward_kwargs)`` in a loop over
    ``loss_name``; mmrazor gives the loss no other way to learn its entry. Read-only, and only
    trusted when that frame's ``loss_module`` is this very module.
    """
    frame = sys._getframe(1)
    for _ in range(12):  # forward <- nn.Module call wrappers (their number varies) <- the loop
        if frame is None:
            return None
        if (frame.f_code.co_name == 'compute_distill_losses'
                and frame.f_locals.get('loss_module') is module):
            name = frame.f_locals.get('loss_name')
            return name if isinstance(name, str) else None
        frame = frame.f_back
    return None


class MultiTermLoss(nn.Module):
    """Base of DiffKD's loss entries: weighted terms, a numerical guard and per-term logging.

    Args:
        nonfinite (str): What a NaN or Inf in a term does: ``'raise'`` (default) a
            ``FloatingPointError`` naming the loss entry, the term, the level and the iteration,
            before anything is back-propagated; ``'skip'`` returns zero without gradient for
            the iteration (the entry's weights do not move) with a warning; ``'ignore'`` checks
            nothing. The check shares the logging's one device-to-host copy per call.
    """

    def __init__(self, nonfinite: str = 'raise') -> None:
        super().__init__()
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f'{type(self).__name__}: nonfinite must be one of '
                             f'{NONFINITE_POLICIES}, got {nonfinite!r}.')
        self.nonfinite = nonfinite
        #: The entry's key in ``distill_losses`` (None until known) and where each forward
        #: argument is recorded, for logs and error messages: see :meth:`bind_entry`.
        self.loss_name: Optional[str] = None
        self.input_sources: Dict[str, str] = {}

    def bind_entry(self, name: str, input_sources: Optional[Dict[str, str]] = None) -> None:
        """Tell the loss its entry name and the recorded source of each input (by a distiller).

        Without it, the name is read from the calling ``ConfigurableDistiller`` at the first
        call (:func:`entry_name_from_distiller`).
        """
        self.loss_name = name
        self.input_sources = dict(input_sources or {})

    @property
    def owner(self) -> str:
        """How messages name this loss: its entry name when known, else its type."""
        return self.loss_name or type(self).__name__

    def _learn_entry_name(self) -> None:
        if self.loss_name is None:
            self.loss_name = entry_name_from_distiller(self)

    def reduce_terms(self,
                     terms: Dict[str, List[torch.Tensor]],
                     weights: Dict[str, float],
                     stats: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """Weighted sum of the terms, checked and logged.

        Args:
            terms (dict[str, list[Tensor]]): Each term's scalar per level (empty: no such term).
            weights (dict[str, float]): Each term's weight.
            stats (dict[str, Tensor], optional): Scalars logged as ``<entry stem>_<name>``
                (without "loss", so never back-propagated).

        Returns:
            Tensor: ``sum_name weights[name] * sum_levels terms[name]``, a scalar.
        """
        self._learn_entry_name()
        terms = {name: values for name, values in terms.items() if values}
        weighted = {name: weights[name] * sum(values) for name, values in terms.items()}
        stats = stats or {}
        check = self.nonfinite != 'ignore'
        log = self.training and self.loss_name is not None
        if check or log:
            per_level = [v.detach().float().reshape(1) for vs in terms.values() for v in vs]
            logged = [v.detach().float().reshape(1) for v in (*weighted.values(), *stats.values())]
            values = torch.cat(per_level + logged).tolist()  # the one host sync
            if check and not all(map(_finite, values[:len(per_level)])):
                return self._on_nonfinite(terms)
            if log:
                self._log(dict(zip((*weighted, *stats), values[len(per_level):])), set(stats))
        return sum(weighted.values())

    def _log(self, values: Dict[str, float], stat_names) -> None:
        name = self.loss_name
        stem = name[len('loss_'):] if name.startswith('loss_') else name
        hub = MessageHub.get_current_instance()
        for term, value in values.items():
            key = f'{stem}_{term}' if term in stat_names else f'{name}_{term}'
            hub.update_scalar(f'train/{DISTILL_PREFIX}{key}', value)

    def _on_nonfinite(self, terms: Dict[str, List[torch.Tensor]]) -> torch.Tensor:
        bad = [(name, level, float(v)) for name, values in terms.items()
               for level, v in enumerate(values) if not torch.isfinite(v.detach()).all()]
        iteration = MessageHub.get_current_instance().get_info('iter')
        where = ', '.join(f'loss_{name} = {value} at level {level}' for name, level, value in bad)
        message = (f'{self.owner}: non-finite DiffKD term(s) at iteration '
                   f'{"?" if iteration is None else iteration + 1}: {where}.')
        if self.nonfinite == 'raise':
            raise FloatingPointError(
                message + ' Nothing was back-propagated. Lower the learning rate or the loss '
                'weights, check the recorded features, or set nonfinite=\'skip\' to drop such '
                'iterations.')
        print_log(
            message + ' Skipped: the DiffKD terms of this iteration are dropped.',
            logger='current',
            level=logging.WARNING)
        device = next(v for vs in terms.values() for v in vs).device
        return torch.zeros((), device=device)


def _finite(value: float) -> bool:
    return value == value and value not in (float('inf'), float('-inf'))
