"""The variants the cost benchmark compares: one teacher/student pair with each way to distil.

Every variant replaces the pair config's distiller fields by its own (the student alone, FitNet,
PKD, DiffKD with the config's settings or one option changed, the other ways to write DiffKD in a
config) and is built from the same teacher and student weights; ``reference`` is DiffKD with the
official formulation of the denoising loop, the same math written plainly.
"""
import copy
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mmrazor.registry import MODELS
from ..models.diffkd import DiffKDBranch, DiffKDDenoiser

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: The teacher/student pairs, by the config whose model the variants start from.
PAIRS = dict(
    retinanet=osp.join(ROOT, 'configs/diffkd/mmdet/diffkd_fpn_retina_r101_retina_r50_2x_coco.py'),
    faster_rcnn=osp.join(
        ROOT, 'configs/diffkd/mmdet/diffkd_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py'))


class ReferenceDiffKDDenoiser(DiffKDDenoiser):
    """The official formulation, restated plainly, with the same modules and the same math.

    Per call it rebuilds the timestep list on the host (numpy), and per step it indexes the
    schedule with the timestep, branches on the host (``prev >= 0``), computes x0, re-derives the
    noise from it (``use_clipped_model_output=True``) and forms x_prev in separate kernels.
    """

    @classmethod
    def from_denoiser(cls, denoiser: DiffKDDenoiser) -> 'ReferenceDiffKDDenoiser':
        """A reference denoiser made of ``denoiser``'s modules, buffers and settings (shared,
        not copied), as ``nn.SyncBatchNorm.convert_sync_batchnorm`` converts a module; use it
        in place of ``denoiser``."""
        reference = cls.__new__(cls)
        reference.__dict__.update(vars(denoiser))  # nn.Module keeps all of its state there
        return reference

    def denoise(self, student_latent, noise=None):
        if noise is None:
            noise = torch.randn_like(student_latent)
        gate = self.noise_adapter(student_latent)
        g = gate.view(-1, 1, 1, 1)
        x = g * student_latent + (1 - g) * noise
        steps = self.scheduler.inference_steps
        ratio = self.scheduler.num_train_timesteps // (2 * steps)
        timesteps = torch.from_numpy((np.arange(0, 2 * steps) * ratio)[::-1].copy())
        ab = self.scheduler.alphas_cumprod
        for t in timesteps[steps:]:
            eps = self.noise_predictor(x, t.to(x.device))
            a_t = ab[t]
            prev = int(t) - ratio
            a_prev = ab[prev] if prev >= 0 else torch.ones((), device=x.device)
            x0 = (x - (1 - a_t)**0.5 * eps) / a_t**0.5
            eps = (x - a_t**0.5 * x0) / (1 - a_t)**0.5
            x = a_prev**0.5 * x0 + (1 - a_prev)**0.5 * eps
        return x, gate


class ReferenceDiffKDBranch(DiffKDBranch):
    """:class:`DiffKDBranch` with :class:`ReferenceDiffKDDenoiser` as its student side."""

    def __init__(self, student_channels, teacher_channels, **settings):
        super().__init__(student_channels, teacher_channels, **settings)
        self.denoiser = ReferenceDiffKDDenoiser.from_denoiser(self.denoiser)


def _fpn_inputs(level=None, student_arg='preds_S', teacher_arg='preds_T') -> dict:
    """Loss-forward mapping of the recorded FPN: one level (``data_idx``), or all of them."""
    index = {} if level is None else dict(data_idx=level)
    return {
        student_arg: dict(from_student=True, recorder='fpn', **index),
        teacher_arg: dict(from_student=False, recorder='fpn', **index)
    }


def _distiller(kind: str, base: dict, levels: int) -> dict:
    """The distiller fields (type, connectors, losses, mappings) of one variant."""
    if kind == 'fitnet':
        return dict(
            type='ConfigurableDistiller',
            distill_losses={
                f'loss_mse{i}': dict(type='L2Loss', normalize=False, div_element=True)
                for i in range(levels)
            },
            loss_forward_mappings={
                f'loss_mse{i}': _fpn_inputs(i, 's_feature', 't_feature')
                for i in range(levels)
            })
    if kind == 'pkd':
        return dict(
            type='ConfigurableDistiller',
            distill_losses={
                f'loss_pkd{i}': dict(type='PKDLoss', loss_weight=6)
                for i in range(levels)
            },
            loss_forward_mappings={f'loss_pkd{i}': _fpn_inputs(i)
                                   for i in range(levels)})
    if kind == 'diffkd_per_level':  # mmrazor's recipe style: one entry per level, stock distiller
        return dict(
            type='ConfigurableDistiller',
            distill_losses={f'loss_diffkd{i}': dict(base, num_levels=1)
                            for i in range(levels)},
            loss_forward_mappings={f'loss_diffkd{i}': _fpn_inputs(i)
                                   for i in range(levels)})
    if kind == 'diffkd_pkd':  # DiffKD connectors in front of PKD
        latent = base.get('ae_channels') or base['teacher_channels']
        through = dict(from_student=False, recorder='fpn', connector='diffkd_t')
        return dict(
            type='DiffKDDistiller',
            connectors=dict(
                diffkd_s=dict(
                    type='DiffKDStudentConnector',
                    num_levels=levels,
                    student_channels=base['student_channels'],
                    latent_channels=latent),
                diffkd_t=dict(
                    type='DiffKDTeacherConnector',
                    num_levels=levels,
                    teacher_channels=base['teacher_channels'],
                    ae_channels=base.get('ae_channels'))),
            distill_losses=dict(
                loss_pkd=dict(type='PKDLoss', loss_weight=6),
                loss_diffkd=dict(
                    type='DiffKDDiffusionLoss',
                    student_connector='diffkd_s',
                    teacher_connector='diffkd_t')),
            loss_forward_mappings=dict(
                loss_pkd=dict(
                    preds_S=dict(from_student=True, recorder='fpn', connector='diffkd_s'),
                    preds_T=through),
                loss_diffkd=dict(target=through)))
    cfg = dict(base)
    cfg.update(DIFFKD_OPTIONS.get(kind, {}))
    return dict(
        type='DiffKDDistiller',
        distill_losses=dict(loss_diffkd=cfg),
        loss_forward_mappings=dict(loss_diffkd=_fpn_inputs()))


# DiffKD variants: the options each one sets on top of the config's DiffKD entry (the COCO
# configs' default: 3 steps, a 128-channel AE latent, standardised teacher). Those in
# SAME_MATH_AS_DIFFKD keep the math; the others change the model (docs/benchmarks.md).
DIFFKD_OPTIONS = dict(
    diffkd_cp=dict(with_cp=True),
    diffkd_shared=dict(share_branch=True),
    diffkd_5steps_noae=dict(inference_steps=5, ae_channels=None),  # DiffKDLoss's own defaults
    diffkd_3steps_noae=dict(inference_steps=3, ae_channels=None),
    diffkd_5steps_ae128=dict(inference_steps=5, ae_channels=128),
    diffkd_3steps_ae64=dict(inference_steps=3, ae_channels=64),
    diffkd_raw=dict(target_norm=None),
    # The options that send the KD signal to the student (docs/method.md); the warm-up of
    # the demo's diffkd_kdproof runs once before training and is not timed here.
    diffkd_prematch=dict(student_match_weight=1.0),
    diffkd_kdproof=dict(kd_trains_predictor=False, kd_predictor_ema=0.99, start_noise='vp'),
    diffkd_pull=dict(denoised_pull_weight=1.0),
    # Graph mode (docs/benchmarks.md): the same math, each level's branch replayed as CUDA
    # graphs, through Inductor or through dynamo's plain CUDA-graph backend.
    diffkd_graph=dict(graph_mode=True),
    diffkd_cudagraphs=dict(graph_mode=dict(backend='cudagraphs')),
)
#: Timed only when named: capturing takes seconds to minutes per input shape, and replaying a
#: captured graph saves kernel launches, which only a GPU pays for.
GRAPH_VARIANTS = ('diffkd_graph', 'diffkd_cudagraphs')
# The other ways to write DiffKD in a config: per-level entries, connectors + PKD.
STYLES = ('diffkd_per_level', 'diffkd_pkd')
VARIANTS = ('student', 'fitnet', 'pkd', 'diffkd', *DIFFKD_OPTIONS, *STYLES, 'reference')
DEFAULT_VARIANTS = tuple(name for name in VARIANTS if name not in GRAPH_VARIANTS)
# Variants that compute exactly what the default DiffKD computes (tests check each of them):
# per-level entries draw their noise in the same order as one entry over the levels.
SAME_MATH_AS_DIFFKD = ('diffkd_cp', 'diffkd_per_level', 'reference')


def set_distiller(dist, kind: str, base: dict, levels: int) -> None:
    """Replace the config's connectors, losses and mappings by the variant's.

    Key by key: mmengine's ``ConfigDict.update`` merges nested dicts, which would keep the
    config's own DiffKD entry (and its mapping) running beside the variant's.
    """
    for key in ('connectors', 'distill_losses', 'loss_forward_mappings'):
        dist.pop(key, None)
    for key, value in _distiller(kind, base, levels).items():
        dist[key] = value


def build_variant(cfg: Config, kind: str, device: str):
    """The model of one variant on ``device``, in training mode, and its optimizer (lr 0)."""
    # Same teacher and student weights in every variant: with random weights a two-stage
    # detector's proposals, hence its RoI-head cost, depend on the weights.
    torch.manual_seed(0)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.teacher_ckpt = None
    dist = model_cfg.distiller
    base = copy.deepcopy(dist.distill_losses.loss_diffkd_fpn)
    levels = base.get('num_levels', 1)
    if kind == 'student':
        algo = MODELS.build(model_cfg)
        model = algo.student
        model.data_preprocessor = algo.data_preprocessor
    else:
        set_distiller(dist, 'diffkd' if kind == 'reference' else kind, base, levels)
        model = MODELS.build(model_cfg)
        if kind == 'reference':
            for branch in model.distiller.distill_losses.loss_diffkd.branches:
                branch.denoiser = ReferenceDiffKDDenoiser.from_denoiser(branch.denoiser)
    model.to(device).train()
    # lr 0: SGD still does all its work (momentum, update), but the random, un-pretrained weights
    # stay put, so no variant diverges while it is being timed.
    optim = OptimWrapper(
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                        lr=0.0,
                        momentum=0.9,
                        foreach=True))
    return model, optim


def synthetic_det_batch(size, batch, width=None):
    """A COCO-like detection batch of ``batch`` images, ``size`` x ``width`` (default square)."""
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(
        batch_size=batch,
        image_shapes=(3, size, width or size),
        num_items=[5] * batch,
        num_classes=80)
