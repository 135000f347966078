"""The loss entry that trains the DiffKD connectors: diffusion loss and AE reconstruction."""
import logging
from typing import Dict, List, Optional

import torch
from mmengine.logging import print_log
from torch import nn

from mmrazor.registry import MODELS
from ..diffkd.checks import check_weight
from ..diffkd.levels import Features, as_levels, to_maps
from .multi_term import MultiTermLoss, weighted_terms


@MODELS.register_module()
class DiffKDDiffusionLoss(MultiTermLoss):
    """Train a :class:`~diffkd_mm.models.connectors.DiffKDStudentConnector`'s noise predictor.

    The connector style of DiffKD puts the denoising in front of any matching loss; what is left
    is DiffKD's own training signal, which this entry computes from the teacher target (the
    ``target`` input, mapped from the teacher record through ``teacher_connector``):

    * ``loss_ddim``: ``ddim_loss_weight * sum_levels mse(eps_theta(sqrt(ab_t) z +
      sqrt(1 - ab_t) eps, t), eps)``, with the student connector's noise predictor,
    * ``loss_ae``: ``ae_loss_weight * sum_levels mse(rec, ft)``: the teacher connector's AE
      reconstruction loss on ``teacher_feat``, the teacher record itself (with ``ae_channels``).

    A ``DiffKDDistiller`` links the entry to the two connectors it names (they stay owned by
    the distiller's ``connectors``), maps ``teacher_feat`` to the record ``target`` comes from
    when the config does not, and checks the mapping; the entry returns the weighted sum and
    logs each term as :class:`MultiTermLoss` does.

    Args:
        student_connector (str): Name of the :class:`DiffKDStudentConnector` in ``connectors``.
        teacher_connector (str, optional): Name of the :class:`DiffKDTeacherConnector` in
            ``connectors`` that ``target`` comes through; None when ``target`` is the teacher
            record itself (no AE).
        ddim_loss_weight (float): Weight of the diffusion term, as in ``DiffKDLoss``. Defaults
            to 1.0.
        ae_loss_weight (float): Weight of the AE term. Defaults to 1.0.
        nonfinite (str): ``'raise'`` (default), ``'skip'`` or ``'ignore'``: see
            :class:`MultiTermLoss`.
        loss_weight (float, optional): The former name of ``ddim_loss_weight``; still taken,
            with a deprecation message.
    """

    def __init__(self,
                 student_connector: str,
                 teacher_connector: Optional[str] = None,
                 ddim_loss_weight: float = 1.0,
                 ae_loss_weight: float = 1.0,
                 nonfinite: str = 'raise',
                 loss_weight: Optional[float] = None) -> None:
        super().__init__(nonfinite)
        for key, value in (('student_connector', student_connector), ('teacher_connector',
                                                                      teacher_connector)):
            if not (value is None and key == 'teacher_connector') and not isinstance(value, str):
                raise ValueError(f'DiffKDDiffusionLoss: {key} must be the name of a connector '
                                 f'in the distiller\'s connectors, got {value!r}.')
        self.student_connector = student_connector
        self.teacher_connector = teacher_connector
        if loss_weight is not None:
            check_weight(loss_weight, 'loss_weight', 'DiffKDDiffusionLoss')
            if ddim_loss_weight != 1.0:
                raise ValueError('DiffKDDiffusionLoss: loss_weight is the former name of '
                                 'ddim_loss_weight; give ddim_loss_weight only.')
            print_log(
                'DiffKDDiffusionLoss: loss_weight is deprecated, use ddim_loss_weight (the name '
                'DiffKDLoss gives the diffusion term\'s weight); taking it as ddim_loss_weight.',
                logger='current',
                level=logging.WARNING)
            ddim_loss_weight = loss_weight
        self.ddim_loss_weight = check_weight(ddim_loss_weight, 'ddim_loss_weight',
                                             'DiffKDDiffusionLoss')
        self.ae_loss_weight = check_weight(ae_loss_weight, 'ae_loss_weight', 'DiffKDDiffusionLoss')
        # The linked connectors, in a tuple so that nn.Module does not register them twice
        # (they belong to the distiller's connectors).
        self._links = None

    def link(self, student, teacher=None) -> None:
        """Attach the connectors this entry trains (called by DiffKDDistiller, which also tells
        the connectors, through their ``bind``)."""
        self._links = (student, teacher)

    def forward(self, target: Features, teacher_feat: Optional[Features] = None) -> torch.Tensor:
        """Diffusion loss on the teacher target(s), plus the AE's reconstruction loss.

        Args:
            target (Tensor | Sequence[Tensor]): The teacher connector's output: (B, L, H, W),
                (B, L) or (B, N, L) per level.
            teacher_feat (Tensor | Sequence[Tensor], optional): The teacher record ``target``
                was encoded from, (B, Ct, ...) per level; needed when the teacher connector has
                an AE.

        Returns:
            Tensor: the weighted sum of the diffusion and AE terms, a scalar.
        """
        return self.reduce_terms(self._terms(target, teacher_feat), self._term_weights)

    def teacher_side_terms(self,
                           target: Features,
                           teacher_feat: Optional[Features] = None) -> Dict[str, torch.Tensor]:
        """:meth:`forward`'s terms, weighted and without logging, for a denoiser warm-up
        (:class:`~diffkd_mm.engine.DiffKDWarmupHook`): ``ddim`` and, with an AE, ``ae``."""
        return weighted_terms(self._terms(target, teacher_feat), self._term_weights)

    @property
    def _term_weights(self) -> Dict[str, float]:
        return dict(ddim=self.ddim_loss_weight, ae=self.ae_loss_weight)

    def teacher_side_modules(self) -> List[nn.Module]:
        """What the entry trains: the student connector's noise predictors and the teacher
        connector's targets (their AEs)."""
        student, teacher = self._linked()
        modules = [denoiser.noise_predictor for denoiser in student.denoisers]
        return modules + ([teacher] if teacher is not None else [])

    def _linked(self):
        if self._links is None:
            raise RuntimeError(
                f'{self.owner}: not linked to its connectors; DiffKDDiffusionLoss needs '
                'distiller type=\'DiffKDDistiller\'.')
        return self._links

    def _terms(self, target: Features,
               teacher_feat: Optional[Features]) -> Dict[str, List[torch.Tensor]]:
        student, teacher = self._linked()
        targets = as_levels(target, student.num_levels, self.owner, 'target')
        terms = dict(
            ddim=[
                student.diffusion_loss(to_maps(z, self.owner, 'target', level), level)
                for level, z in enumerate(targets)
            ],
            ae=[])
        if teacher is not None and teacher.has_autoencoder:
            if teacher_feat is None:
                raise ValueError(
                    f'{self.owner}: connectors.{self.teacher_connector} has an AE, whose '
                    'reconstruction loss needs the teacher record: map teacher_feat to the '
                    'record that target comes from, without a connector.')
            terms['ae'].append(teacher.reconstruction_loss(teacher_feat))
        return terms
