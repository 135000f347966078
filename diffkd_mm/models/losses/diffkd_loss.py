"""DiffKD as an mmrazor distillation loss: one entry for one feature or a whole FPN tuple."""
import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from mmrazor.registry import MODELS
from ..diffkd import DiffKDBranch

Features = Union[torch.Tensor, Sequence[torch.Tensor]]
KD_LOSSES = ('mse', 'kl')
RESIZE_MODES = (None, 'nearest', 'bilinear', 'bicubic', 'area')
NONFINITE_POLICIES = ('raise', 'skip', 'ignore')


@MODELS.register_module()
class DiffKDLoss(nn.Module):
    """Knowledge Diffusion for Distillation (Huang et al., NeurIPS 2023) as one loss entry.

    Holds one :class:`DiffKDBranch` per feature pair (or one shared by all FPN levels), and
    matches each denoised student feature with its teacher target:
    MSE for features, temperature-scaled KL for logits.

    ``forward`` returns a dict of terms instead of a single tensor, so that each term is logged on
    its own; :class:`~diffkd_mm.models.distillers.DiffKDDistiller` spreads it into the loss dict:

    * ``loss_kd``: ``loss_weight * sum_levels match(refined, target)``,
    * ``loss_ddim``: ``ddim_loss_weight * sum_levels mse(eps_theta(x_t, t), eps)``,
    * ``loss_ae``: ``ae_loss_weight * sum_levels mse(rec, ft)`` (only with ``ae_channels``),
    * ``gate``: mean noise-adapter weight ``g`` over levels and samples (a statistic, no grad).

    Inputs may be (B, C, H, W) features, (B, C) logits (as (B, C, 1, 1), use ``kernel_size=1``)
    or (B, N, C) tokens with a square N (as (B, C, sqrt N, sqrt N)).

    Args:
        student_channels (int | Sequence[int]): Student channels, one per level or one for all.
        teacher_channels (int | Sequence[int]): Teacher channels, likewise.
        num_levels (int): Feature pairs per call (e.g. 5 for a P3-P7 FPN). Defaults to 1.
        kernel_size (int): 3 for spatial features, 1 for logits. Defaults to 3.
        ae_channels (int, optional): Latent channels of the teacher AE; None (default) disables it.
        inference_steps (int): DDIM steps on the student feature. Defaults to 5.
        num_train_timesteps (int): Diffusion chain length T. Defaults to 1000.
        schedule_steps (int, optional): DDIM schedule length; None means ``2 * inference_steps``
            (official).
        output_norm (bool): BN after the output conv1x1. Defaults to True.
        with_cp (bool): Activation checkpointing through the DDIM loop. Defaults to False.
        compile_predictor (bool | dict): ``torch.compile`` each noise predictor (True, or
            ``torch.compile`` arguments). Same math; see :class:`DiffKDBranch`. Defaults to False.
        kd_loss (str): ``'mse'`` (features) or ``'kl'`` (logits). Defaults to ``'mse'``.
        tau (float): KL temperature. Defaults to 1.0.
        loss_weight (float): Weight of the KD term. Defaults to 1.0.
        ddim_loss_weight (float): Weight of the diffusion term. Defaults to 1.0.
        ae_loss_weight (float): Weight of the AE term. Defaults to 1.0.
        share_branch (bool): One DiffKD branch (projection, AE, denoiser, adapter) for all
            levels instead of one per level; needs equal channels. Defaults to False.
        resize_student (str, optional): When student and teacher maps differ in size, resize the
            student feature to the teacher's with this ``F.interpolate`` mode. None (default)
            raises an error instead.
        nonfinite (str): What a NaN or Inf in a DiffKD term does: ``'raise'`` (default) a
            ``FloatingPointError`` naming the loss entry, the term, the level and the iteration,
            before anything is back-propagated; ``'skip'`` drops this entry's terms for the
            iteration (zero, without gradient: DiffKD's weights do not move) with a warning;
            ``'ignore'`` checks nothing. The check costs one device-to-host sync per call.
    """

    def __init__(self,
                 student_channels: Union[int, Sequence[int]],
                 teacher_channels: Union[int, Sequence[int]],
                 num_levels: int = 1,
                 kernel_size: int = 3,
                 ae_channels: Optional[int] = None,
                 inference_steps: int = 5,
                 num_train_timesteps: int = 1000,
                 schedule_steps: Optional[int] = None,
                 output_norm: bool = True,
                 with_cp: bool = False,
                 compile_predictor: Union[bool, dict] = False,
                 kd_loss: str = 'mse',
                 tau: float = 1.0,
                 loss_weight: float = 1.0,
                 ddim_loss_weight: float = 1.0,
                 ae_loss_weight: float = 1.0,
                 share_branch: bool = False,
                 resize_student: Optional[str] = None,
                 nonfinite: str = 'raise') -> None:
        super().__init__()
        #: The loss entry's name in the distiller config, and where each forward argument is
        #: recorded: for error messages (set by DiffKDDistiller).
        self.loss_name = type(self).__name__
        self.input_sources: Dict[str, str] = {}
        if not isinstance(num_levels, int) or num_levels < 1:
            raise ValueError(f'DiffKDLoss: num_levels must be a positive int, got {num_levels!r}.')
        if kd_loss not in KD_LOSSES:
            raise ValueError(f'DiffKDLoss: kd_loss must be one of {KD_LOSSES}, got {kd_loss!r}.')
        if resize_student not in RESIZE_MODES:
            raise ValueError(f'DiffKDLoss: resize_student must be one of {RESIZE_MODES}, '
                             f'got {resize_student!r}.')
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f'DiffKDLoss: nonfinite must be one of {NONFINITE_POLICIES}, '
                             f'got {nonfinite!r}.')
        if not tau > 0:
            raise ValueError(f'DiffKDLoss: tau must be > 0, got {tau!r}.')
        self.num_levels = num_levels
        self.student_channels = self._per_level('student_channels', student_channels)
        self.teacher_channels = self._per_level('teacher_channels', teacher_channels)
        self.kd_loss = kd_loss
        self.tau = tau
        self.loss_weight = loss_weight
        self.ddim_loss_weight = ddim_loss_weight
        self.ae_loss_weight = ae_loss_weight
        self.resize_student = resize_student
        self.share_branch = share_branch
        self.nonfinite = nonfinite

        def make_branch(level: int) -> DiffKDBranch:
            return DiffKDBranch(
                self.student_channels[level],
                self.teacher_channels[level],
                kernel_size=kernel_size,
                ae_channels=ae_channels,
                inference_steps=inference_steps,
                num_train_timesteps=num_train_timesteps,
                schedule_steps=schedule_steps,
                output_norm=output_norm,
                with_cp=with_cp,
                compile_predictor=compile_predictor)

        if share_branch:
            if len(set(self.student_channels)) > 1 or len(set(self.teacher_channels)) > 1:
                raise ValueError('DiffKDLoss: share_branch=True needs the same channels on every '
                                 f'level, got student_channels={self.student_channels}, '
                                 f'teacher_channels={self.teacher_channels}.')
            self.branches = nn.ModuleList([make_branch(0)])
        else:
            self.branches = nn.ModuleList([make_branch(i) for i in range(num_levels)])

    def _per_level(self, key: str, value) -> List[int]:
        values = [value] * self.num_levels if isinstance(value, int) else list(value)
        if len(values) != self.num_levels or not all(
                isinstance(v, int) and v > 0 for v in values):
            raise ValueError(f'DiffKDLoss: {key} must be a positive int or {self.num_levels} '
                             f'positive ints (num_levels={self.num_levels}), got {value!r}.')
        return values

    def branch(self, level: int) -> DiffKDBranch:
        """The DiffKD branch that serves feature level ``level``."""
        return self.branches[0 if self.share_branch else level]

    # ------------------------------------------------------------------ input checks
    def _as_levels(self, feats: Features, arg: str) -> Tuple[torch.Tensor, ...]:
        if isinstance(feats, torch.Tensor):
            feats = (feats, )
        feats = tuple(feats)
        if len(feats) != self.num_levels:
            raise ValueError(f'{self.loss_name}: {arg} has {len(feats)} feature level(s) but '
                             f'the loss was built with num_levels={self.num_levels}.')
        return feats

    def _as_bchw(self, x: torch.Tensor, arg: str, level: int) -> torch.Tensor:
        if x.dim() == 4:
            return x
        if x.dim() == 2:  # logits (B, C)
            return x[:, :, None, None]
        if x.dim() == 3:  # tokens (B, N, C)
            b, n, c = x.shape
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(f'{self.loss_name}: {arg}[{level}] holds {n} tokens, not a '
                                 'square number; select the patch tokens (drop class/distill '
                                 'tokens) before DiffKD.')
            return x.transpose(1, 2).reshape(b, c, side, side)
        raise ValueError(f'{self.loss_name}: {arg}[{level}] must be (B, C, H, W), (B, C) or '
                         f'(B, N, C), got shape {tuple(x.shape)}.')

    def _check_pair(self, s: torch.Tensor, t: torch.Tensor, level: int):
        for arg, x, expected in (('preds_S', s, self.student_channels[level]),
                                 ('preds_T', t, self.teacher_channels[level])):
            if x.shape[1] != expected:
                who = 'student_channels' if arg == 'preds_S' else 'teacher_channels'
                source = self.input_sources.get(arg)
                raise ValueError(
                    f'{self.loss_name}: {arg}[{level}] has {x.shape[1]} channels (shape '
                    f'{tuple(x.shape)}) but {who}={expected}; set {who} to the recorded '
                    'feature\'s channels or record another module.' +
                    (f' {arg} comes from {source}.' if source else ''))
        if s.shape[0] != t.shape[0]:
            raise ValueError(f'{self.loss_name}: batch sizes differ at level {level}: '
                             f'student {tuple(s.shape)}, teacher {tuple(t.shape)}.')
        if s.shape[2:] != t.shape[2:]:
            if self.resize_student is None:
                raise ValueError(
                    f'{self.loss_name}: spatial sizes differ at level {level}: student '
                    f'{tuple(s.shape)}, teacher {tuple(t.shape)}. Record features of the same '
                    'stride, or set resize_student=\'bilinear\' to resize the student map.')
            align = False if self.resize_student in ('bilinear', 'bicubic') else None
            s = F.interpolate(s, size=t.shape[2:], mode=self.resize_student, align_corners=align)
        return s

    # ------------------------------------------------------------------ losses
    def _match(self, refined: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kd_loss == 'mse':
            return F.mse_loss(refined, target)
        # KL(teacher || student) over channels, summed over positions, averaged over the batch:
        # for logits as (B, C, 1, 1) this is tau^2 * KL with reduction='batchmean' (official).
        log_p_s = F.log_softmax(refined.float() / self.tau, dim=1)
        p_t = F.softmax(target.float() / self.tau, dim=1)
        kl = F.kl_div(log_p_s, p_t, reduction='sum') / refined.shape[0]
        return kl * self.tau**2

    def forward(self, preds_S: Features, preds_T: Features) -> Dict[str, torch.Tensor]:
        """Compute the DiffKD terms for one feature pair or one pair per level.

        Args:
            preds_S (Tensor | Sequence[Tensor]): Student feature(s).
            preds_T (Tensor | Sequence[Tensor]): Teacher feature(s), same number of levels.

        Returns:
            dict[str, Tensor]: ``loss_kd``, ``loss_ddim``, ``loss_ae`` (with AE) and ``gate``,
            each a scalar.
        """
        feats_s = self._as_levels(preds_S, 'preds_S')
        feats_t = self._as_levels(preds_T, 'preds_T')
        terms = dict(kd=[], ddim=[], ae=[])
        gates = []
        for level, (s, t) in enumerate(zip(feats_s, feats_t)):
            s = self._as_bchw(s, 'preds_S', level)
            t = self._as_bchw(t, 'preds_T', level)
            s = self._check_pair(s, t, level)
            out = self.branch(level)(s, t)
            terms['kd'].append(self._match(out.refined, out.target))
            terms['ddim'].append(out.loss_ddim)
            if out.loss_ae is not None:
                terms['ae'].append(out.loss_ae)
            gates.append(out.gate.detach().float().mean())
        gate = sum(gates) / len(gates)
        if self.nonfinite != 'ignore' and not self._all_finite(terms):
            return self._on_nonfinite(terms, gate)
        weights = dict(kd=self.loss_weight, ddim=self.ddim_loss_weight, ae=self.ae_loss_weight)
        losses = {f'loss_{name}': weights[name] * sum(values)
                  for name, values in terms.items() if values}
        losses['gate'] = gate
        return losses

    # ------------------------------------------------------------------ numerical guard
    @staticmethod
    def _all_finite(terms: Dict[str, List[torch.Tensor]]) -> bool:
        values = [v.detach().float().reshape(1) for vs in terms.values() for v in vs]
        return bool(torch.isfinite(torch.cat(values)).all())  # the one host sync

    def _on_nonfinite(self, terms, gate: torch.Tensor) -> Dict[str, torch.Tensor]:
        from mmengine.logging import MessageHub, print_log
        bad = [(name, level, float(v)) for name, values in terms.items()
               for level, v in enumerate(values) if not torch.isfinite(v.detach()).all()]
        hub = MessageHub.get_current_instance()
        iteration = hub.get_info('iter')
        where = ', '.join(f'loss_{name} = {value} at level {level}' for name, level, value in bad)
        message = (f'{self.loss_name}: non-finite DiffKD term(s) at iteration '
                   f'{"?" if iteration is None else iteration + 1}: {where}.')
        if self.nonfinite == 'raise':
            raise FloatingPointError(
                message + ' Nothing was back-propagated. Lower the learning rate or the loss '
                'weights, check the recorded features, or set nonfinite=\'skip\' to drop such '
                'iterations.')
        print_log(message + ' Skipped: the DiffKD terms of this iteration are dropped.',
                  logger='current', level=logging.WARNING)
        losses = {f'loss_{name}': torch.zeros((), device=gate.device)
                  for name, values in terms.items() if values}
        losses['gate'] = gate
        return losses
