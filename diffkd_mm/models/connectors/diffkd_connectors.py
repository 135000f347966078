"""DiffKD as a pair of mmrazor connectors, for any matching loss after the denoising.

In a :class:`~diffkd_mm.models.distillers.DiffKDDistiller`, the student feature goes through a
:class:`DiffKDStudentConnector` (projection, noise adapter, DDIM loop, output projection) and the
teacher feature through a :class:`DiffKDTeacherConnector` (the optional linear AE, detached), and
any registered loss (``PKDLoss``, ``ChannelWiseDivergence``, ``L2Loss``, ...) matches the two
outputs. The noise predictor is trained on the teacher target by a
:class:`~diffkd_mm.models.losses.DiffKDDiffusionLoss` entry that names both connectors; the
distiller links them and runs each connector once per record and iteration.
"""
from typing import List, Optional, Sequence, Union

import torch
from mmengine.logging import MessageHub
from torch import nn

from mmrazor.models.architectures.connectors.base_connector import BaseConnector
from mmrazor.registry import MODELS
from ..diffkd.autoencoder import LinearAutoEncoder
from ..diffkd.levels import (Features, build_branches, check_num_levels, from_maps, level_maps,
                             per_level)
from ..diffkd.target import check_target_norm, encode_target
from ..losses.multi_term import DISTILL_PREFIX


def _same_structure(outputs: List[torch.Tensor], feature: Features) -> Features:
    return outputs[0] if isinstance(feature, torch.Tensor) else tuple(outputs)


class _LinkedConnector(BaseConnector):
    """A DiffKD connector: its name in ``connectors``, known once a DiffKDDistiller links it."""

    def __init__(self, init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.connector_name: Optional[str] = None

    @property
    def owner(self) -> str:
        name = type(self).__name__
        return f'connectors.{self.connector_name} ({name})' if self.connector_name else name


@MODELS.register_module()
class DiffKDStudentConnector(_LinkedConnector):
    """The student side of DiffKD: denoise the student feature(s) into the teacher's latent.

    For each level: ``s = conv1x1(fs)``, ``x = g * s + (1 - g) * eps``, ``S`` deterministic DDIM
    steps with the noise predictor, then ``BN(conv1x1(x))`` (see
    :class:`~diffkd_mm.models.diffkd.DiffKDBranch`, steps 2-5). The output has the input's
    structure (a tensor, or a tuple of levels) and layout ((B, L, H, W), (B, L) or (B, N, L)).

    The noise predictor learns only through the diffusion loss, which needs the teacher target:
    a :class:`~diffkd_mm.models.losses.DiffKDDiffusionLoss` entry names this connector, and a
    ``DiffKDDistiller`` links them. In training, an unlinked connector raises an error rather
    than denoise with a predictor that never learns.

    Args:
        student_channels (int | Sequence[int]): Student channels, one for all levels or one
            per level.
        latent_channels (int | Sequence[int]): Channels of the teacher target: the teacher
            connector's ``ae_channels``, else the teacher's channels.
        num_levels (int): Levels per call (e.g. 5 for a P3-P7 FPN). Defaults to 1.
        share_branch (bool): One denoiser for all levels. Defaults to False.
        kernel_size (int): 3 for spatial features, 1 for logits. Defaults to 3.
        inference_steps (int): DDIM steps. Defaults to 5.
        num_train_timesteps (int): Diffusion chain length T. Defaults to 1000.
        schedule_steps (int, optional): DDIM schedule length; None means ``2 * inference_steps``.
        output_norm (bool): BN after the output conv1x1. Defaults to True.
        with_cp (bool): Activation checkpointing through the DDIM loop. Defaults to False.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 student_channels: Union[int, Sequence[int]],
                 latent_channels: Union[int, Sequence[int]],
                 num_levels: int = 1,
                 share_branch: bool = False,
                 kernel_size: int = 3,
                 inference_steps: int = 5,
                 num_train_timesteps: int = 1000,
                 schedule_steps: Optional[int] = None,
                 output_norm: bool = True,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        owner = type(self).__name__
        self.num_levels = check_num_levels(num_levels, owner)
        self.student_channels = per_level(student_channels, num_levels, owner, 'student_channels')
        self.latent_channels = per_level(latent_channels, num_levels, owner, 'latent_channels')
        self.share_branch = share_branch
        # Branches without AE: their "teacher" is the latent the target lives in.
        self.branches = build_branches(
            owner,
            self.student_channels,
            self.latent_channels,
            share_branch,
            kernel_size=kernel_size,
            inference_steps=inference_steps,
            num_train_timesteps=num_train_timesteps,
            schedule_steps=schedule_steps,
            output_norm=output_norm,
            with_cp=with_cp)
        self.linked = False  # set by DiffKDDistiller when a diffusion loss trains the predictor

    def branch(self, level: int):
        """The :class:`DiffKDBranch` that serves feature level ``level``."""
        return self.branches[0 if self.share_branch else level]

    def forward_train(self, feature: Features) -> Features:
        """Denoise the student feature(s).

        Args:
            feature (Tensor | Sequence[Tensor]): (B, Cs, H, W), (B, Cs) or (B, N, Cs) per level.

        Returns:
            Tensor | tuple[Tensor]: The refined feature(s), (B, L, ...) in the input's layout.
        """
        if self.training and not self.linked:
            raise RuntimeError(
                f'{self.owner}: no DiffKDDiffusionLoss trains this connector\'s noise predictor. '
                'Use distiller type=\'DiffKDDistiller\' and add an entry to distill_losses, '
                'e.g. loss_diffkd=dict(type=\'DiffKDDiffusionLoss\', student_connector=<this '
                'connector\'s name>, teacher_connector=<the teacher connector\'s name>).')
        outputs, gates = [], []
        for level, (x, f) in enumerate(
                level_maps(feature, self.num_levels, self.student_channels, self.owner, 'feature',
                           'student_channels')):
            refined, gate = self.branch(level).refine_student(x)
            outputs.append(from_maps(refined, like=f))
            gates.append(gate.detach().float().mean())
        if self.training and self.connector_name is not None:
            # The mean noise-adapter weight g, logged as the algorithm logs its losses.
            MessageHub.get_current_instance().update_scalar(
                f'train/{DISTILL_PREFIX}{self.connector_name}_gate', float(sum(gates) / len(gates)))
        return _same_structure(outputs, feature)

    def diffusion_loss(self, target: torch.Tensor, level: int) -> torch.Tensor:
        """The noise predictor's DDPM loss on the teacher target of one level, (B, L, H, W)."""
        return self.branch(level).diffusion_loss(target)


@MODELS.register_module()
class DiffKDTeacherConnector(_LinkedConnector):
    """The teacher side of DiffKD: the detached target the student is denoised towards.

    With ``ae_channels``, a linear autoencoder per level compresses the teacher feature and its
    BatchNorm latent, detached, is the target (the official recipe for features); its
    reconstruction loss of the last call is :attr:`loss_ae`, added by the linked
    :class:`~diffkd_mm.models.losses.DiffKDDiffusionLoss`. Without, the target is the teacher
    feature, detached. The output has the input's structure and layout.

    Args:
        teacher_channels (int | Sequence[int]): Teacher channels, one for all levels or one
            per level.
        ae_channels (int | Sequence[int], optional): Latent channels of the AE; None (default)
            uses no AE.
        num_levels (int): Levels per call. Defaults to 1.
        target_norm (str, optional): ``'channel'`` (default) standardises each teacher channel
            over batch and positions first (see :class:`~diffkd_mm.models.losses.DiffKDLoss`);
            None keeps the teacher's scale (official; use it for logits).
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 teacher_channels: Union[int, Sequence[int]],
                 ae_channels: Optional[Union[int, Sequence[int]]] = None,
                 num_levels: int = 1,
                 target_norm: Optional[str] = 'channel',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        owner = type(self).__name__
        self.target_norm = check_target_norm(target_norm, owner)
        self.num_levels = check_num_levels(num_levels, owner)
        self.teacher_channels = per_level(teacher_channels, num_levels, owner, 'teacher_channels')
        if ae_channels is None:
            self.autoencoders = None
            self.latent_channels = list(self.teacher_channels)
        else:
            self.latent_channels = per_level(ae_channels, num_levels, owner, 'ae_channels')
            self.autoencoders = nn.ModuleList([
                LinearAutoEncoder(c, latent)
                for c, latent in zip(self.teacher_channels, self.latent_channels)
            ])
        #: The AE reconstruction loss of the last call (summed over levels), None without AE.
        self.loss_ae: Optional[torch.Tensor] = None

    def forward_train(self, feature: Features) -> Features:
        """The detached target(s) of the teacher feature(s).

        Args:
            feature (Tensor | Sequence[Tensor]): (B, Ct, H, W), (B, Ct) or (B, N, Ct) per level.

        Returns:
            Tensor | tuple[Tensor]: The target(s), (B, L, ...) in the input's layout.
        """
        outputs, losses = [], []
        for level, (x, f) in enumerate(
                level_maps(feature, self.num_levels, self.teacher_channels, self.owner, 'feature',
                           'teacher_channels')):
            ae = None if self.autoencoders is None else self.autoencoders[level]
            target, loss_ae = encode_target(ae, x, self.target_norm)
            outputs.append(from_maps(target, like=f))
            if loss_ae is not None:
                losses.append(loss_ae)
        self.loss_ae = sum(losses) if losses else None
        return _same_structure(outputs, feature)
