"""Test helpers: tiny mmengine models (conv backbone + linear head), synthetic batches of the
three tasks, a parameter-digest hook, a hook that stalls one rank (for a test to kill it) and a
full disk, simulated.

Imported on demand only (not by `import diffkd_mm`), so `ToyClassifier` is registered only for
the code that asks for it.
"""
import contextlib
import errno
import hashlib
import json
import os
import os.path as osp
import time
from typing import Iterator

import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS
from torch import nn

from mmrazor.registry import MODELS
from .patches import swapped


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


def _det_batch(num_classes, size=128):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(
        batch_size=2, image_shapes=(3, size, size), num_items=[3, 2], num_classes=num_classes)


def _seg_batch(num_classes, size=128):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8))
        sample = SegDataSample(
            metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, size, size), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _cls_batch(num_classes, size):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    inputs = [
        torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8) for _ in range(2)
    ]
    samples = [
        DataSample().set_gt_label(torch.randint(0, num_classes, (1, ), generator=g))
        for _ in range(2)
    ]
    return dict(inputs=inputs, data_samples=samples)


def synthetic_batch(student) -> dict:
    """A 2-image batch in the format of the student's task (mmdet, mmseg or mmpretrain), for
    ``train_step``: uint8 images at a reduced size, labels drawn from a fixed seed."""
    task = type(student).__module__.split('.')[0]
    if task == 'mmdet':
        head = getattr(student, 'bbox_head', None) or student.roi_head.bbox_head
        return _det_batch(head.num_classes)
    if task == 'mmseg':
        return _seg_batch(student.decode_head.num_classes)
    if task == 'mmpretrain':
        size = 32 if 'CIFAR' in type(student.backbone).__name__ else 64
        return _cls_batch(student.head.num_classes, size)
    raise AssertionError(f'no synthetic batch for a {task} student ({type(student)})')


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


def write_tiny_seg_config(path: str,
                          data_root: str,
                          max_iters: int,
                          checkpoint: str,
                          extra: str = '') -> str:
    """Write the demo's segmentation DiffKD config on tiny data, for tests that run the tools.

    No teacher checkpoint, batch 2, every iteration logged, a warm-up that ends at iteration 5
    whatever ``max_iters`` (so that a shortened run follows the same schedule).

    Args:
        path (str): The config file to write.
        data_root (str): An embedded segmentation dataset.
        max_iters (int): Training iterations (no validation before the end).
        checkpoint (str): The ``CheckpointHook`` settings, e.g. ``'interval=3'``.
        extra (str): More config lines, e.g. ``custom_hooks = [...]``.

    Returns:
        str: ``path``.
    """
    demo = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'diffkd', 'demo')
    data = repr(str(data_root))
    with open(path, 'w') as f:
        f.write(f"""
_base_ = [{osp.join(demo, 'seg_diffkd.py')!r}]
model = dict(teacher_ckpt=None)
train_dataloader = dict(batch_size=2, dataset=dict(data_root={data}))
val_dataloader = dict(batch_size=2, dataset=dict(data_root={data}))
test_dataloader = val_dataloader
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=5)]
train_cfg = dict(max_iters={max_iters}, val_interval=100)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict({checkpoint}))
{extra}
""")
    return str(path)


def assert_same_weights(expected: dict, actual: dict, atol: float = 1e-5) -> None:
    """Assert that two distillation checkpoints' state dicts hold the same tensors (within
    ``atol``), DiffKD's branches among them: a resumed run against the uninterrupted one."""
    assert list(expected) == list(actual)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=atol, msg=name)
    assert sum('distill_losses' in name for name in expected) > 50  # DiffKD is compared too


@HOOKS.register_module(force=True)
class StallRankHook(Hook):
    """Before iteration ``at_iter`` (1-based), rank ``rank`` writes its pid to ``marker`` and
    sleeps, so that a test can kill that process in the middle of training."""

    def __init__(self, rank: int, at_iter: int, marker: str, seconds: float = 600) -> None:
        self.rank, self.at_iter, self.marker, self.seconds = rank, at_iter, marker, seconds

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if runner.rank != self.rank or runner.iter + 1 != self.at_iter:
            return
        with open(self.marker + '.part', 'w') as f:  # the marker appears with its content
            f.write(str(os.getpid()))
        os.replace(self.marker + '.part', self.marker)
        time.sleep(self.seconds)


class _FillingFile:
    """A file whose writes fail with ENOSPC once ``budget`` bytes (or characters) are written,
    as on a disk that fills up: the bytes that fit land in the file, the rest raises."""

    def __init__(self, f, budget: int) -> None:
        self._f, self._budget = f, budget

    def write(self, data):
        if len(data) > self._budget:
            self._f.write(data[:self._budget])
            self._budget = 0
            raise OSError(errno.ENOSPC, 'No space left on device')
        self._budget -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._f.close()


@contextlib.contextmanager
def simulated_full_disk(name_part: str, budget: int = 1024) -> Iterator[list]:
    """Inside the block, every file that :mod:`diffkd_mm.fileio` writes and whose destination name
    contains ``name_part`` fails with ``OSError(ENOSPC)`` after ``budget`` bytes, through the
    writer's own layers (``torch.save`` wraps the error as a real full disk makes it do).

    Yields:
        list: The temporary files that were cut short, as they are opened.
    """
    from diffkd_mm import fileio
    real_open, failed = open, []

    def filling_open(path, mode='r', *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        # atomic_open's temporary file: .<destination name>.<pid>-<random>.tmp
        if 'x' in mode and name_part in osp.basename(str(path)):
            failed.append(str(path))
            return _FillingFile(f, budget)
        return f

    # Shadows the builtin inside diffkd_mm.fileio only (documented in diffkd_mm.patches).
    with swapped(fileio, 'open', filling_open, patch='simulated-full-disk'):
        yield failed
