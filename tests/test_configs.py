"""Every config under configs/diffkd/ loads, builds teacher + student + DiffKD, and trains one step.

The configs are found by globbing, so a new config is tested without touching this file. No
weights are downloaded: the teacher checkpoint is dropped and nothing calls init_weights. The
batch is synthetic, in the task's data format, at a reduced input size.
"""
import glob
import os.path as osp
import re
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS

import diffkd_mm
from diffkd_mm.testing import synthetic_batch
from mmrazor.registry import MODELS

# Every shipped config built and trained one step: minutes on a CPU (see pytest.ini).
pytestmark = pytest.mark.slow

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', 'diffkd', '**', '*.py'), recursive=True)
    if '_base_' not in p)


def test_configs_were_found():
    assert len(CONFIGS) >= 16, CONFIGS


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_config_builds_and_trains_one_step(path):
    cfg = Config.fromfile(path)
    is_demo = f'{osp.sep}demo{osp.sep}' in path
    is_distill = 'distiller' in cfg.model
    assert is_distill or is_demo, 'only the demo has plain teacher / student configs'
    if is_distill:
        assert is_demo or cfg.model.get('teacher_ckpt'), 'real configs name their teacher ckpt'
        cfg.model.teacher_ckpt = None  # no download in tests
    torch.manual_seed(0)
    algo = MODELS.build(cfg.model)
    algo.train()
    for hook in cfg.get('custom_hooks', []):  # what the Runner runs before training that names
        if hook['type'] == 'DistillLossNamesHook':
            HOOKS.build(hook).before_train(SimpleNamespace(model=algo))
    if hasattr(algo.data_preprocessor, 'size'):  # mmseg pads to the crop size: keep it small
        algo.data_preprocessor.size = (128, 128)
    optim = OptimWrapper(
        torch.optim.SGD([p for p in algo.parameters() if p.requires_grad], lr=1e-4, momentum=0.9))
    student = getattr(algo, 'student', algo)
    hub = MessageHub.get_instance(f'test_configs:{osp.relpath(path, ROOT)}')
    log_vars = algo.train_step(synthetic_batch(student), optim)
    for name, value in log_vars.items():
        assert torch.isfinite(torch.as_tensor(value)), name
    if not is_distill:
        return

    logged = {key[len('train/'):] for key in hub.log_scalars}
    expected = expected_diffkd_terms(cfg.model.distiller)
    assert expected or is_demo
    assert expected <= logged, expected - logged
    for key in logged:
        assert torch.isfinite(torch.as_tensor(hub.get_scalar(f'train/{key}').current())), key


def expected_diffkd_terms(distiller) -> set:
    """The names each DiffKD entry of a distiller config must log."""
    names = set()
    for entry, loss in distiller.distill_losses.items():
        stem = entry[len('loss_'):] if entry.startswith('loss_') else entry
        if loss.type == 'DiffKDLoss':
            names |= {f'distill.{entry}_kd', f'distill.{entry}_ddim', f'distill.{stem}_gate'}
            if loss.get('ae_channels'):
                names.add(f'distill.{entry}_ae')
        elif loss.type == 'DiffKDDiffusionLoss':
            names |= {f'distill.{entry}_ddim', f'distill.{loss.student_connector}_gate'}
            teacher = distiller.get('connectors', {}).get(loss.get('teacher_connector'), {})
            if teacher.get('ae_channels'):
                names.add(f'distill.{entry}_ae')
    return names


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_auto_scale_lr_matches_the_recipe_batch(path):
    """auto_scale_lr.base_batch_size must be the total batch the lr was set for (GPUs x images
    per GPU), and scaling stays off unless asked for (--auto-scale-lr): a run on other hardware
    must not change the recipe silently."""
    cfg = Config.fromfile(path)
    gpus = re.search(r'_(\d+)xb(\d+)', osp.basename(path))
    per_gpu = cfg.train_dataloader.batch_size
    if f'{osp.sep}demo{osp.sep}' in path:
        expected = per_gpu  # the demo runs in one CPU process
    else:
        expected = int(gpus.group(1)) * int(gpus.group(2)) if gpus else 8 * per_gpu
    if gpus:
        assert int(gpus.group(2)) == per_gpu, 'file name and train_dataloader.batch_size differ'
    assert cfg.auto_scale_lr.base_batch_size == expected
    assert not cfg.auto_scale_lr.get('enable', False)


def test_an_mmrazor_recipe_with_only_the_loss_swapped_trains():
    """mmrazor's own PKD recipe (as installed with mmrazor), with `PKDLoss` replaced by
    `DiffKDLoss` plus the channels and `custom_imports` added, and nothing else changed: the stock
    ConfigurableDistiller trains it; with `DistillLossNamesHook` in `custom_hooks` (run here as
    the Runner runs it, before training), every DiffKD term is logged under its entry's name."""
    from diffkd_mm.engine import DistillLossNamesHook
    import mmrazor
    recipe = osp.join(
        osp.dirname(mmrazor.__file__), '.mim', 'configs', 'distill', 'mmdet', 'pkd',
        'pkd_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py')
    cfg = Config.fromfile(recipe)
    cfg.custom_imports = dict(imports=['diffkd_mm'], allow_failed_imports=False)
    distiller = cfg.model.distiller
    assert distiller.type == 'ConfigurableDistiller' and len(distiller.distill_losses) == 4
    for loss in distiller.distill_losses.values():
        assert loss.type == 'PKDLoss'
        loss.update(type='DiffKDLoss', student_channels=256, teacher_channels=256)
    cfg.model.teacher_ckpt = None  # no download in tests
    torch.manual_seed(0)
    algo = MODELS.build(cfg.model)
    algo.train()
    DistillLossNamesHook().before_train(SimpleNamespace(model=algo))
    hub = MessageHub.get_instance('test_configs:mmrazor_pkd_recipe')
    optim = OptimWrapper(
        torch.optim.SGD([p for p in algo.parameters() if p.requires_grad], lr=1e-4, momentum=0.9))
    log_vars = algo.train_step(synthetic_batch(algo.student), optim)
    assert {f'distill.loss_pkd_fpn{i}' for i in range(4)} <= set(log_vars)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values())
    logged = {key[len('train/'):] for key in hub.log_scalars}
    assert expected_diffkd_terms(distiller) <= logged
