"""DiffKD as an mmrazor distillation loss: one entry for one feature or a whole FPN tuple."""
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from mmrazor.registry import MODELS
from ..diffkd.branch import DiffKDBranch, DiffKDOutput
from ..diffkd.checks import check_flag, check_weight
from ..diffkd.graph_mode import build_graphed_calls, run_method
from ..diffkd.levels import (Features, build_per_level, check_num_levels, from_maps, level_maps,
                             per_level)
from ..diffkd.settings import check_settings
from ..diffkd.student_terms import PULL_LOSSES, channel_wise_kl, standardized_mse
from .multi_term import MultiTermLoss, weighted_terms

KD_LOSSES = ('mse', 'kl')
RESIZE_MODES = (None, 'nearest', 'bilinear', 'bicubic', 'area')


@MODELS.register_module()
class DiffKDLoss(MultiTermLoss):
    """Knowledge Diffusion for Distillation (Huang et al., NeurIPS 2023) as one loss entry.

    Holds one :class:`DiffKDBranch` per feature pair (or one shared by all FPN levels), and
    matches each denoised student feature with its teacher target: MSE for features,
    temperature-scaled KL for logits, or any registered mmrazor loss (``match_loss``).

    ``forward`` returns one tensor, the sum of the weighted terms, so the entry works in any
    mmrazor distiller (``ConfigurableDistiller`` and those derived from it) and in any recipe.
    Each term is logged on its own (see :class:`MultiTermLoss`): for the entry ``loss_diffkd``,

    * ``distill.loss_diffkd_kd``: ``loss_weight * sum_levels match(refined, target)``,
    * ``distill.loss_diffkd_ddim``: ``ddim_loss_weight * sum_levels mse(eps_theta(x_t, t), eps)``,
    * ``distill.loss_diffkd_ae``: ``ae_loss_weight * sum_levels mse(rec, ft)`` (with
      ``ae_channels``),
    * ``distill.loss_diffkd_student_match``: ``student_match_weight * sum_levels
      standardized_mse(s, target)`` on the projected student feature ``s`` (when the weight is
      not 0),
    * ``distill.loss_diffkd_denoised_pull``: ``denoised_pull_weight * sum_levels
      pull(s, stopgrad(refined))`` (when the weight is not 0),
    * ``distill.diffkd_gate``: mean noise-adapter weight ``g`` over levels and samples.

    Inputs may be (B, C, H, W) features, (B, C) logits (as (B, C, 1, 1), use ``kernel_size=1``)
    or (B, N, C) tokens with a square N (as (B, C, sqrt N, sqrt N)).

    Args:
        student_channels (int | Sequence[int]): Student channels, one per level or one for all.
        teacher_channels (int | Sequence[int]): Teacher channels, likewise.
        num_levels (int): Feature pairs per call (e.g. 5 for a P3-P7 FPN). Defaults to 1.
        share_branch (bool): One DiffKD branch (projection, AE, denoiser, adapter) for all
            levels instead of one per level; needs equal channels. Defaults to False.
        kd_loss (str): ``'mse'`` (features) or ``'kl'`` (logits). Defaults to ``'mse'``.
        tau (float): KL temperature. Defaults to 1.0.
        match_loss (dict, optional): Config of a registered mmrazor loss (``L2Loss``,
            ``PKDLoss``, ``ChannelWiseDivergence``, ``KLDivergence``, ...) called per level as
            ``match_loss(refined, target)`` in the input's layout (e.g. (B, C) for logits) in
            place of ``kd_loss``; its own ``loss_weight`` applies, times ``loss_weight``. None
            (default) uses ``kd_loss``.
        loss_weight (float): Weight of the KD term. Defaults to 1.0.
        ddim_loss_weight (float): Weight of the diffusion term. Defaults to 1.0.
        ae_loss_weight (float): Weight of the AE term. Defaults to 1.0.
        student_match_weight (float): Weight of a term that matches the projected student
            feature, before the denoiser, with the target, both standardised per channel
            (:func:`~diffkd_mm.models.diffkd.student_terms.standardized_mse`): the KD signal then
            reaches the student without passing through the denoiser. 0 (default, official): no
            such term.
        denoised_pull_weight (float): Weight of a term that pulls the projected student feature
            towards its own denoised, refined feature, detached: the student, not the
            denoiser, carries the correction. 0 (default, official): no such term.
        denoised_pull (str): That term's form: ``'mse'`` (default; standardised MSE) or
            ``'cwd'`` (channel-wise KL over positions, as CWD; spatial maps only).
        pull_tau (float): Temperature of ``denoised_pull='cwd'``. Defaults to 1.0.
        resize_student (str, optional): When student and teacher maps differ in size, resize the
            student feature to the teacher's with this ``F.interpolate`` mode. None (default)
            raises an error instead.
        nonfinite (str): ``'raise'`` (default), ``'skip'`` or ``'ignore'``: see
            :class:`MultiTermLoss`.
        graph_mode (bool | dict, optional): Run each level's branch, forward and backward, as
            a captured graph (``torch.compile``; CUDA graphs with the default
            ``dict(backend='inductor', mode='reduce-overhead', max_shapes=8)``): same math,
            fewer kernel launches. None (default): eager. See
            :mod:`diffkd_mm.models.diffkd.graph_mode`.
        **settings: DiffKD's settings, declared by the side they configure:
            the teacher side's ``ae_channels`` (one for all levels or one per level) and
            ``target_norm`` (see
            :class:`~diffkd_mm.models.diffkd.DiffKDTarget`), the student side's ``kernel_size``,
            ``inference_steps``, ``num_train_timesteps``, ``schedule_steps``, ``output_norm``,
            ``with_cp``, ``kd_trains_predictor``, ``kd_predictor_ema`` and ``start_noise`` (see
            :class:`~diffkd_mm.models.diffkd.DiffKDDenoiser`).
    """

    def __init__(self,
                 student_channels: Union[int, Sequence[int]],
                 teacher_channels: Union[int, Sequence[int]],
                 num_levels: int = 1,
                 *,
                 share_branch: bool = False,
                 kd_loss: str = 'mse',
                 tau: float = 1.0,
                 match_loss: Optional[dict] = None,
                 loss_weight: float = 1.0,
                 ddim_loss_weight: float = 1.0,
                 ae_loss_weight: float = 1.0,
                 student_match_weight: float = 0.0,
                 denoised_pull_weight: float = 0.0,
                 denoised_pull: str = 'mse',
                 pull_tau: float = 1.0,
                 resize_student: Optional[str] = None,
                 nonfinite: str = 'raise',
                 graph_mode: Union[None, bool, dict] = None,
                 **settings) -> None:
        super().__init__(nonfinite)
        check_settings('DiffKDLoss', settings, 'student', 'teacher')
        self.num_levels = check_num_levels(num_levels, 'DiffKDLoss')
        if kd_loss not in KD_LOSSES:
            raise ValueError(f'DiffKDLoss: kd_loss must be one of {KD_LOSSES}, got {kd_loss!r}.')
        if resize_student not in RESIZE_MODES:
            raise ValueError(f'DiffKDLoss: resize_student must be one of {RESIZE_MODES}, '
                             f'got {resize_student!r}.')
        for key, value in (('tau', tau), ('pull_tau', pull_tau)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f'DiffKDLoss: {key} must be a number > 0, got {value!r}.')
        for key, value in (('loss_weight', loss_weight), ('ddim_loss_weight', ddim_loss_weight),
                           ('ae_loss_weight', ae_loss_weight),
                           ('student_match_weight', student_match_weight), ('denoised_pull_weight',
                                                                            denoised_pull_weight)):
            check_weight(value, key, 'DiffKDLoss')
        if denoised_pull not in PULL_LOSSES:
            raise ValueError(f'DiffKDLoss: denoised_pull must be one of {PULL_LOSSES}, '
                             f'got {denoised_pull!r}.')
        self.student_channels = per_level(student_channels, num_levels, 'DiffKDLoss',
                                          'student_channels')
        self.teacher_channels = per_level(teacher_channels, num_levels, 'DiffKDLoss',
                                          'teacher_channels')
        self.kd_loss = kd_loss
        self.tau = tau
        self.match_loss = build_match_loss(match_loss, kd_loss, tau, 'DiffKDLoss')
        self.loss_weight = loss_weight
        self.ddim_loss_weight = ddim_loss_weight
        self.ae_loss_weight = ae_loss_weight
        self.student_match_weight = student_match_weight
        self.denoised_pull_weight = denoised_pull_weight
        self.denoised_pull = denoised_pull
        self.pull_tau = pull_tau
        self.resize_student = resize_student
        self.share_branch = check_flag(share_branch, 'share_branch', 'DiffKDLoss')
        # ae_channels, like the channels, is one value for all levels or one per level.
        ae_channels = settings.pop('ae_channels', None)
        ae_channels = [None] * num_levels if ae_channels is None else per_level(
            ae_channels, num_levels, 'DiffKDLoss', 'ae_channels')
        self.branches = build_per_level(
            'DiffKDLoss', share_branch,
            lambda s, t, ae: DiffKDBranch(s, t, ae_channels=ae, **settings), self.student_channels,
            self.teacher_channels, ae_channels)
        self.graph_calls = build_graphed_calls(graph_mode, 'DiffKDLoss')

    def branch(self, level: int):
        """The :class:`DiffKDBranch` that serves feature level ``level``."""
        return self.branches[0 if self.share_branch else level]

    # ------------------------------------------------------------------ inputs
    def feature_pairs(self, preds_S: Features, preds_T: Features):
        """The (student, teacher) pairs of a call, as the branches take them.

        Yields, per level, ``(s, t, like)``: the student and teacher maps (B, C, H, W), the
        student resized to the teacher's size where asked, and the teacher input as given (whose
        layout the matching loss sees).
        """
        student = level_maps(preds_S, self.num_levels, self.student_channels, self.owner, 'preds_S',
                             'student_channels', self.input_sources.get('preds_S'))
        teacher = level_maps(preds_T, self.num_levels, self.teacher_channels, self.owner, 'preds_T',
                             'teacher_channels', self.input_sources.get('preds_T'))
        for level, ((s, _), (t, t_in)) in enumerate(zip(student, teacher)):
            yield self._check_pair(s, t, level), t, t_in

    def _check_pair(self, s: torch.Tensor, t: torch.Tensor, level: int) -> torch.Tensor:
        """The student map, checked against the teacher's batch and size (resized if asked)."""
        if s.shape[0] != t.shape[0]:
            raise ValueError(f'{self.owner}: batch sizes differ at level {level}: '
                             f'student {tuple(s.shape)}, teacher {tuple(t.shape)}.')
        if s.shape[2:] != t.shape[2:]:
            if self.resize_student is None:
                raise ValueError(
                    f'{self.owner}: spatial sizes differ at level {level}: student '
                    f'{tuple(s.shape)}, teacher {tuple(t.shape)}. Record features of the same '
                    'stride, or set resize_student=\'bilinear\' to resize the student map.')
            align = False if self.resize_student in ('bilinear', 'bicubic') else None
            s = F.interpolate(s, size=t.shape[2:], mode=self.resize_student, align_corners=align)
        return s

    def level_outputs(self, preds_S: Features,
                      preds_T: Features) -> Iterator[Tuple[DiffKDOutput, torch.Tensor]]:
        """Run each level's branch: the one path from a call's inputs to DiffKD's tensors.

        Used by :meth:`forward` and by the denoising pictures
        (:func:`diffkd_mm.visualization.record_denoising`), so both see the same checks,
        reshaping and resizing.

        Yields:
            tuple: per level, the branch's :class:`DiffKDOutput` (maps (B, L, H, W); logits as
            (B, L, 1, 1)) and the teacher input as given, whose layout the matching loss sees.
        """
        for level, (s, t, like) in enumerate(self.feature_pairs(preds_S, preds_T)):
            yield run_method(self.graph_calls, self.branch(level), 'forward', s, t), like

    # ------------------------------------------------------------------ teacher side alone
    def teacher_side_terms(self, preds_T: Features) -> Dict[str, torch.Tensor]:
        """DiffKD's terms that need no student: the diffusion and AE losses on the teacher.

        For a denoiser warm-up (:class:`~diffkd_mm.engine.DiffKDWarmupHook`): the same targets
        and losses as :meth:`forward` computes, with its weights, without logging.

        Args:
            preds_T (Tensor | Sequence[Tensor]): Teacher feature(s), as for :meth:`forward`.

        Returns:
            dict[str, Tensor]: ``ddim`` and, with an AE, ``ae``: weighted sums over levels, ().
        """
        terms = dict(ddim=[], ae=[])
        for level, (t, _) in enumerate(
                level_maps(preds_T, self.num_levels, self.teacher_channels, self.owner, 'preds_T',
                           'teacher_channels', self.input_sources.get('preds_T'))):
            branch = self.branch(level)
            target, loss_ae = branch.target(t)
            terms['ddim'].append(branch.denoiser.diffusion_loss(target))
            if loss_ae is not None:
                terms['ae'].append(loss_ae)
        return weighted_terms(terms, dict(ddim=self.ddim_loss_weight, ae=self.ae_loss_weight))

    def teacher_side_modules(self) -> List[nn.Module]:
        """What :meth:`teacher_side_terms` trains: each branch's noise predictor and target."""
        return [
            module for branch in self.branches
            for module in (branch.denoiser.noise_predictor, branch.target)
        ]

    # ------------------------------------------------------------------ losses
    def match(self, refined: torch.Tensor, target: torch.Tensor,
              like: torch.Tensor) -> torch.Tensor:
        """The KD term of one level, unweighted: ``refined`` and ``target`` are (B, L, H, W)
        maps; ``like`` is the teacher input whose layout ``match_loss`` receives."""
        if self.match_loss is not None:
            return self.match_loss(from_maps(refined, like), from_maps(target, like))
        if self.kd_loss == 'mse':
            return F.mse_loss(refined, target)
        # KL(teacher || student) over channels, summed over positions, averaged over the batch:
        # for logits as (B, C, 1, 1) this is tau^2 * KL with reduction='batchmean' (official).
        log_p_s = F.log_softmax(refined.float() / self.tau, dim=1)
        p_t = F.softmax(target.float() / self.tau, dim=1)
        kl = F.kl_div(log_p_s, p_t, reduction='sum') / refined.shape[0]
        return kl * self.tau**2

    def pull(self, student: torch.Tensor, refined: torch.Tensor) -> torch.Tensor:
        """The denoised-pull term of one level, unweighted: the projected student feature
        towards its refined feature, which is detached here (the denoiser learns nothing
        from it). Both (B, L, H, W)."""
        refined = refined.detach()
        if self.denoised_pull == 'cwd':
            return channel_wise_kl(student, refined, self.pull_tau)
        return standardized_mse(student, refined)

    def forward(self, preds_S: Features, preds_T: Features) -> torch.Tensor:
        """Compute the DiffKD loss for one feature pair or one pair per level.

        Args:
            preds_S (Tensor | Sequence[Tensor]): Student feature(s).
            preds_T (Tensor | Sequence[Tensor]): Teacher feature(s), same number of levels.

        Returns:
            Tensor: the weighted sum of the KD, diffusion and AE terms, a scalar.
        """
        terms = dict(kd=[], ddim=[], ae=[], student_match=[], denoised_pull=[])
        gates = []
        for out, like in self.level_outputs(preds_S, preds_T):
            terms['kd'].append(self.match(out.refined, out.target, like))
            if self.student_match_weight:
                terms['student_match'].append(standardized_mse(out.student, out.target))
            if self.denoised_pull_weight:
                terms['denoised_pull'].append(self.pull(out.student, out.refined))
            terms['ddim'].append(out.loss_ddim)
            if out.loss_ae is not None:
                terms['ae'].append(out.loss_ae)
            gates.append(out.gate.detach().float())
        weights = dict(
            kd=self.loss_weight,
            ddim=self.ddim_loss_weight,
            ae=self.ae_loss_weight,
            student_match=self.student_match_weight,
            denoised_pull=self.denoised_pull_weight)
        # Every level has the same batch: the mean of all gates is the mean of the level means.
        return self.reduce_terms(terms, weights, dict(gate=torch.cat(gates).mean()))


def build_match_loss(cfg: Optional[dict], kd_loss: str, tau: float, owner: str):
    """Build ``match_loss`` from mmrazor's registry, with errors that name the key."""
    if cfg is None:
        return None
    if kd_loss != 'mse' or tau != 1.0:
        raise ValueError(f'{owner}: kd_loss and tau apply only without match_loss; got '
                         f'kd_loss={kd_loss!r}, tau={tau!r} and match_loss={cfg!r}. Put the '
                         'temperature into the match loss (e.g. KLDivergence(tau=...)).')
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(f'{owner}: match_loss must be a loss config such as '
                         f'dict(type=\'PKDLoss\'), got {cfg!r}.')
    try:
        return MODELS.build(cfg)
    except KeyError as err:
        raise ValueError(f'{owner}: match_loss.type={cfg["type"]!r} is not a registered '
                         f'loss ({err}); use an mmrazor loss such as \'L2Loss\', '
                         '\'PKDLoss\', \'ChannelWiseDivergence\' or \'KLDivergence\'.') from None
