"""DiffKD as a pair of mmrazor connectors, for any matching loss after the denoising.

In a :class:`~diffkd_mm.models.distillers.DiffKDDistiller`, the student feature goes through a
:class:`DiffKDStudentConnector` (projection, noise adapter, DDIM loop, output projection) and the
teacher feature through a :class:`DiffKDTeacherConnector` (the optional linear AE, detached), and
any registered loss (``PKDLoss``, ``ChannelWiseDivergence``, ``L2Loss``, ...) matches the two
outputs. The noise predictor is trained on the teacher target by a
:class:`~diffkd_mm.models.losses.DiffKDDiffusionLoss` entry that names both connectors; the
distiller links them and runs each connector once per record and iteration.
"""
import warnings
import weakref
from functools import partial
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from mmrazor.models.architectures.connectors.base_connector import BaseConnector
from mmrazor.registry import MODELS
from ..diffkd.checks import check_flag
from ..diffkd.denoiser import DiffKDDenoiser
from ..diffkd.graph_mode import build_graphed_calls, run_method
from ..diffkd.legacy_keys import register_legacy_keys
from ..diffkd.levels import (Features, build_per_level, check_num_levels, from_maps, level_maps,
                             per_level)
from ..diffkd.log_keys import log_distill_scalar
from ..diffkd.settings import check_settings
from ..diffkd.target import DiffKDTarget


def _same_structure(outputs: List[torch.Tensor], feature: Features) -> Features:
    return outputs[0] if isinstance(feature, torch.Tensor) else tuple(outputs)


def _tensors(feature: Features) -> Tuple[torch.Tensor, ...]:
    return (feature, ) if isinstance(feature, torch.Tensor) else tuple(feature)


class _LinkedConnector(BaseConnector):
    """A DiffKD connector: its name in ``connectors`` and the loss entry that trains it, known
    once a DiffKDDistiller links it (:meth:`bind`)."""

    def __init__(self, init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.connector_name: Optional[str] = None
        self.trained_by: Optional[str] = None

    def bind(self, name: str, trained_by: Optional[str] = None) -> None:
        """Tell the connector its key in ``connectors`` and the ``DiffKDDiffusionLoss`` entry
        that trains it (None: none does), for its logs, its messages and its checks."""
        self.connector_name = name
        self.trained_by = trained_by

    @property
    def owner(self) -> str:
        name = type(self).__name__
        return f'connectors.{self.connector_name} ({name})' if self.connector_name else name


@MODELS.register_module()
class DiffKDStudentConnector(_LinkedConnector):
    """The student side of DiffKD: denoise the student feature(s) into the teacher's latent.

    For each level, a :class:`~diffkd_mm.models.diffkd.DiffKDDenoiser`: ``s = conv1x1(fs)``,
    ``x = g * s + (1 - g) * eps``, ``S`` deterministic DDIM steps with the noise predictor, then
    ``BN(conv1x1(x))``. The output has the input's structure (a tensor, or a tuple of levels)
    and layout ((B, L, H, W), (B, L) or (B, N, L)).

    The noise predictor learns only through the diffusion loss, which needs the teacher target:
    a :class:`~diffkd_mm.models.losses.DiffKDDiffusionLoss` entry names this connector, and a
    ``DiffKDDistiller`` links them. In training, an unlinked connector raises an error rather
    than denoise with a predictor that never learns.

    Args:
        student_channels (int | Sequence[int]): Student channels, one for all levels or one
            per level.
        latent_channels (int | Sequence[int], optional): Channels of the teacher target. A
            ``DiffKDDistiller`` derives them from the teacher connector that the diffusion entry
            names (its ``ae_channels``, else its ``teacher_channels``) when they are not set.
        num_levels (int): Levels per call (e.g. 5 for a P3-P7 FPN). Defaults to 1.
        share_branch (bool): One denoiser for all levels. Defaults to False.
        graph_mode (bool | dict, optional): Run each level's denoiser and its diffusion loss,
            forward and backward, as captured graphs: see
            :class:`~diffkd_mm.models.losses.DiffKDLoss`. None (default): eager.
        init_cfg (dict, optional): mmengine initialisation config.
        **denoiser_settings: ``kernel_size``, ``inference_steps``, ``num_train_timesteps``,
            ``schedule_steps``, ``output_norm``, ``with_cp``, ``kd_trains_predictor``,
            ``kd_predictor_ema``, ``start_noise``: see
            :class:`~diffkd_mm.models.diffkd.DiffKDDenoiser`.
    """

    def __init__(self,
                 student_channels: Union[int, Sequence[int]],
                 latent_channels: Optional[Union[int, Sequence[int]]] = None,
                 *,
                 num_levels: int = 1,
                 share_branch: bool = False,
                 graph_mode: Union[None, bool, dict] = None,
                 init_cfg: Optional[dict] = None,
                 **denoiser_settings) -> None:
        super().__init__(init_cfg)
        owner = type(self).__name__
        check_settings(owner, denoiser_settings, 'student')
        if latent_channels is None:
            raise ValueError(
                f'{owner}: latent_channels is not set. A DiffKDDistiller derives it from the '
                'teacher connector that the DiffKDDiffusionLoss entry names; elsewhere, set it '
                'to the teacher connector\'s ae_channels (or teacher_channels without AE).')
        self.num_levels = check_num_levels(num_levels, owner)
        self.student_channels = per_level(student_channels, num_levels, owner, 'student_channels')
        self.latent_channels = per_level(latent_channels, num_levels, owner, 'latent_channels')
        self.share_branch = check_flag(share_branch, 'share_branch', owner)
        self.denoisers = build_per_level(owner, share_branch,
                                         partial(DiffKDDenoiser, **denoiser_settings),
                                         self.student_channels, self.latent_channels)
        # Weights saved when the denoisers were called branches (a DiffKDLoss's branches hold
        # a denoiser and a target each; these hold denoisers only).
        register_legacy_keys(self, ((r'^branches\.', 'denoisers.'), ))
        self.graph_calls = build_graphed_calls(graph_mode, owner)

    def denoiser(self, level: int) -> DiffKDDenoiser:
        """The :class:`DiffKDDenoiser` that serves feature level ``level``."""
        return self.denoisers[0 if self.share_branch else level]

    @property
    def branches(self) -> nn.ModuleList:
        """The former name of :attr:`denoisers`, still read, with a deprecation message."""
        warnings.warn(
            'DiffKDStudentConnector.branches is deprecated: use .denoisers (a DiffKDLoss\'s '
            'branches hold a denoiser and a target each; a connector holds denoisers only).',
            DeprecationWarning,
            stacklevel=2)
        return self.denoisers

    def forward_train(self, feature: Features) -> Features:
        """Denoise the student feature(s).

        Args:
            feature (Tensor | Sequence[Tensor]): (B, Cs, H, W), (B, Cs) or (B, N, Cs) per level.

        Returns:
            Tensor | tuple[Tensor]: The refined feature(s), (B, L, ...) in the input's layout.
        """
        if self.training and self.trained_by is None:
            raise RuntimeError(
                f'{self.owner}: no DiffKDDiffusionLoss trains this connector\'s noise predictor. '
                'Use distiller type=\'DiffKDDistiller\' and add an entry to distill_losses, '
                'e.g. loss_diffkd=dict(type=\'DiffKDDiffusionLoss\', student_connector=<this '
                'connector\'s name>, teacher_connector=<the teacher connector\'s name>).')
        outputs, gates = [], []
        for level, (x, f) in enumerate(
                level_maps(feature, self.num_levels, self.student_channels, self.owner, 'feature',
                           'student_channels')):
            refined, gate, _ = run_method(self.graph_calls, self.denoiser(level), 'forward', x)
            outputs.append(from_maps(refined, like=f))
            gates.append(gate.detach().float().mean())
        if self.training and self.connector_name is not None:
            # The mean noise-adapter weight g, logged as the algorithm logs its losses.
            log_distill_scalar(f'{self.connector_name}_gate', float(sum(gates) / len(gates)))
        return _same_structure(outputs, feature)

    def diffusion_loss(self, target: torch.Tensor, level: int) -> torch.Tensor:
        """The noise predictor's DDPM loss on the teacher target of one level, (B, L, H, W)."""
        return run_method(self.graph_calls, self.denoiser(level), 'diffusion_loss', target)


@MODELS.register_module()
class DiffKDTeacherConnector(_LinkedConnector):
    """The teacher side of DiffKD: the detached target the student is denoised towards.

    For each level, a :class:`~diffkd_mm.models.diffkd.DiffKDTarget`: with ``ae_channels``, a
    linear autoencoder compresses the (standardised) teacher feature and its BatchNorm latent,
    detached, is the target (the official recipe for features); without, the target is the
    teacher feature, detached. The output has the input's structure and layout. The AE's
    reconstruction loss is :meth:`reconstruction_loss`, which the linked
    :class:`~diffkd_mm.models.losses.DiffKDDiffusionLoss` computes from the teacher record.

    Args:
        teacher_channels (int | Sequence[int]): Teacher channels, one for all levels or one
            per level.
        num_levels (int): Levels per call. Defaults to 1.
        init_cfg (dict, optional): mmengine initialisation config.
        **target_settings: ``ae_channels`` (one for all levels or one per level) and
            ``target_norm``: see :class:`~diffkd_mm.models.diffkd.DiffKDTarget`.
    """

    def __init__(self,
                 teacher_channels: Union[int, Sequence[int]],
                 *,
                 num_levels: int = 1,
                 init_cfg: Optional[dict] = None,
                 **target_settings) -> None:
        super().__init__(init_cfg)
        owner = type(self).__name__
        check_settings(owner, target_settings, 'teacher')
        self.num_levels = check_num_levels(num_levels, owner)
        self.teacher_channels = per_level(teacher_channels, num_levels, owner, 'teacher_channels')
        ae_channels = target_settings.pop('ae_channels', None)
        if ae_channels is not None:
            ae_channels = per_level(ae_channels, num_levels, owner, 'ae_channels')
        self.targets = nn.ModuleList([
            DiffKDTarget(c, None if ae_channels is None else ae_channels[level], **target_settings)
            for level, c in enumerate(self.teacher_channels)
        ])
        #: ``L`` per level: the channels of the targets, and of the student's latent.
        self.latent_channels = [target.latent_channels for target in self.targets]
        # Weights saved when the connector held its autoencoders directly.
        register_legacy_keys(self, ((r'^autoencoders\.(\d+)\.', r'targets.\1.autoencoder.'), ))
        # The AE loss of the last training encoding, and (weakly) the tensors it encoded: see
        # reconstruction_loss.
        self._last_encoding: Optional[Tuple[tuple, torch.Tensor]] = None

    @property
    def has_autoencoder(self) -> bool:
        """Whether the targets are AE latents (whose reconstruction loss must be trained)."""
        return self.targets[0].autoencoder is not None

    def encode(self, feature: Features) -> Tuple[Features, Optional[torch.Tensor]]:
        """The detached target(s) and the AE's reconstruction loss, summed over levels.

        Args:
            feature (Tensor | Sequence[Tensor]): (B, Ct, H, W), (B, Ct) or (B, N, Ct) per level.

        Returns:
            tuple: the target(s), (B, L, ...) in the input's structure and layout, and the AE
            loss () (None without AE).
        """
        outputs, losses = [], []
        for level, (x, f) in enumerate(
                level_maps(feature, self.num_levels, self.teacher_channels, self.owner, 'feature',
                           'teacher_channels')):
            target, loss_ae = self.targets[level](x)
            outputs.append(from_maps(target, like=f))
            if loss_ae is not None:
                losses.append(loss_ae)
        return _same_structure(outputs, feature), (sum(losses) if losses else None)

    def forward_train(self, feature: Features) -> Features:
        """The detached target(s) of the teacher feature(s): see :meth:`encode`."""
        target, loss_ae = self.encode(feature)
        if loss_ae is not None:
            self._last_encoding = (tuple(map(weakref.ref, _tensors(feature))), loss_ae)
        return target

    def reconstruction_loss(self, feature: Features) -> Optional[torch.Tensor]:
        """The AE's reconstruction loss on the teacher feature(s), summed over levels, ().

        The loss of the encoding :meth:`forward_train` made of these very tensors (the teacher
        record, in an iteration) is taken, once, rather than computed again: the AE then runs,
        and its BatchNorm statistics move, once per iteration. Another feature is encoded anew.

        Returns None without AE.
        """
        if not self.has_autoencoder:
            return None
        last, self._last_encoding = self._last_encoding, None
        if last is not None:
            refs, loss_ae = last
            tensors = _tensors(feature)
            if len(refs) == len(tensors) and all(r() is t for r, t in zip(refs, tensors)):
                return loss_ae
        return self.encode(feature)[1]
