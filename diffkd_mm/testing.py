"""Test helpers: tiny mmengine models (conv backbone + linear head) and a parameter-digest hook.

Imported on demand only (not by `import diffkd_mm`), so `ToyClassifier` is registered only for
the code that asks for it.
"""
import hashlib
import json
import os.path as osp

import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS
from torch import nn

from mmrazor.registry import MODELS


@MODELS.register_module(force=True)
class ToyClassifier(BaseModel):
    """x (B, 3, 16, 16) -> backbone (B, width, 8, 8) -> head logits (B, num_classes)."""

    def __init__(self, width: int = 8, num_classes: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feat = self.backbone(inputs)
        logits = self.head(feat.mean(dim=(2, 3)))
        if mode == 'loss':
            labels = torch.stack([d['label'] for d in data_samples]) if data_samples else \
                torch.zeros(inputs.shape[0], dtype=torch.long)
            return dict(loss_cls=F.cross_entropy(logits, labels))
        return logits


def toy_batch(batch_size: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch_size, 3, 16, 16, generator=g)
    labels = torch.randint(0, 5, (batch_size, ), generator=g)
    return dict(inputs=inputs, data_samples=[dict(label=lb) for lb in labels])


def toy_distill_cfg(distiller_type='DiffKDDistiller',
                    loss_cfg=None,
                    student_width=4,
                    teacher_width=16):
    """A SingleTeacherDistill config distilling the toy backbone (and optionally the logits)."""
    loss_cfg = loss_cfg or dict(
        type='DiffKDLoss',
        student_channels=student_width,
        teacher_channels=teacher_width,
        ae_channels=8)
    return dict(
        type='SingleTeacherDistill',
        architecture=dict(type='ToyClassifier', width=student_width),
        teacher=dict(type='ToyClassifier', width=teacher_width),
        distiller=dict(
            type=distiller_type,
            student_recorders=dict(feat=dict(type='ModuleOutputs', source='backbone')),
            teacher_recorders=dict(feat=dict(type='ModuleOutputs', source='backbone')),
            distill_losses=dict(loss_diffkd=loss_cfg),
            loss_forward_mappings=dict(
                loss_diffkd=dict(
                    preds_S=dict(from_student=True, recorder='feat'),
                    preds_T=dict(from_student=False, recorder='feat')))))


@HOOKS.register_module(force=True)
class ParamDigestHook(Hook):
    """Writes ``param_digest_rank<rank>.json`` into the work dir after training: a SHA-1 of every
    parameter before and after training, so tests can compare the ranks of a distributed run."""

    @staticmethod
    def _digests(runner) -> dict:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        return {
            name: hashlib.sha1(p.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
            for name, p in model.named_parameters()
        }

    def before_train(self, runner) -> None:
        self._initial = self._digests(runner)

    def after_run(self, runner) -> None:
        path = osp.join(runner.work_dir, f'param_digest_rank{runner.rank}.json')
        with open(path, 'w') as f:
            json.dump(
                dict(
                    iter=runner.iter,
                    world_size=runner.world_size,
                    initial=self._initial,
                    params=self._digests(runner)), f)
