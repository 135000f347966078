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
from typing import Dict, List, Optional

import torch
from mmengine.logging import MessageHub, print_log
from torch import nn

from ..diffkd.log_keys import log_distill_scalar

NONFINITE_POLICIES = ('raise', 'skip', 'ignore')


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
        self._said_unnamed = False

    def bind_entry(self, name: str, input_sources: Optional[Dict[str, str]] = None) -> None:
        """Tell the loss its entry name and the recorded source of each input.

        ``DiffKDDistiller`` calls it with the entry name and the sources when it builds its
        losses; in other mmrazor distillers, :class:`~diffkd_mm.engine.DistillLossNamesHook`
        calls it with the name before training. Unnamed, the loss still works; mmengine logs
        its sum, and the loss says once that its terms are not logged.
        """
        self.loss_name = name
        self.input_sources = dict(input_sources or {})

    @property
    def owner(self) -> str:
        """How messages name this loss: its entry name when known, else its type."""
        return self.loss_name or type(self).__name__

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
        terms = {name: values for name, values in terms.items() if values}
        weighted = weighted_terms(terms, weights)
        stats = stats or {}
        check = self.nonfinite != 'ignore'
        log = self.training and self.loss_name is not None
        if self.training and self.loss_name is None and not self._said_unnamed:
            self._said_unnamed = True
            print_log(
                f'{type(self).__name__}: its entry name in distill_losses is unknown, so only '
                'its sum is logged; for each term\'s log, use distiller type=\'DiffKDDistiller\' '
                'or add dict(type=\'DistillLossNamesHook\') to custom_hooks.',
                logger='current',
                level=logging.INFO)
        if check or log:
            per_level = [v.detach().float().reshape(1) for vs in terms.values() for v in vs]
            logged = [v.detach().float().reshape(1) for v in (*weighted.values(), *stats.values())]
            values = torch.cat(per_level + logged).tolist()  # the one host sync
            if check and not all(map(_finite, values[:len(per_level)])):
                return self._on_nonfinite(terms)
            if log:
                self._log(dict(zip((*weighted, *stats), values[len(per_level):])), set(stats))
        return sum_scalars(list(weighted.values()))

    def _log(self, values: Dict[str, float], stat_names) -> None:
        name = self.loss_name
        stem = name[len('loss_'):] if name.startswith('loss_') else name
        for term, value in values.items():
            log_distill_scalar(f'{stem}_{term}' if term in stat_names else f'{name}_{term}', value)

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


def weighted_terms(terms: Dict[str, List[torch.Tensor]],
                   weights: Dict[str, float]) -> Dict[str, torch.Tensor]:
    """``{name: weights[name] * sum_levels terms[name]}`` for the terms that have values."""
    return {
        name: scaled(sum_scalars(values), weights[name])
        for name, values in terms.items() if values
    }


def sum_scalars(values: List[torch.Tensor]) -> torch.Tensor:
    """The sum of 0-dim tensors in one reduction (Python's ``sum`` adds them one by one)."""
    return values[0] if len(values) == 1 else torch.stack(values).sum()


def scaled(value: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight * value``; a weight of 1 launches nothing."""
    return value if weight == 1 else weight * value
