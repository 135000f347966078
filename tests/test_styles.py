"""The three ways to write DiffKD in a config train for real on the embedded data.

FPN tuple (one DiffKDLoss entry, DiffKDDistiller), per level (one DiffKDLoss entry per level with
data_idx, mmrazor's stock ConfigurableDistiller) and connectors (DiffKD connectors in front of
PKDLoss, with a DiffKDDiffusionLoss entry): each is built from its config file alone (its
custom_imports), trains with mmengine's Runner, logs every DiffKD term, and runs each DDIM loop
once per feature pair and iteration.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import diffkd_mm
from diffkd_mm.datasets import ensure_dataset
from diffkd_mm.models import DiffKDLoss, DiffKDStudentConnector

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
DEMO = osp.join(ROOT, 'configs', 'diffkd', 'demo')
ITERS, LEVELS = 3, 4
STYLES = {
    'fpn_tuple':
    ('seg_diffkd.py', {'distill.loss_diffkd_kd', 'distill.loss_diffkd_ddim',
                       'distill.diffkd_gate'}),
    'per_level':
    ('seg_diffkd_per_level.py',
     {f'distill.loss_diffkd_fpn{i}_{term}'
      for i in range(LEVELS)
      for term in ('kd', 'ddim')} | {f'distill.diffkd_fpn{i}_gate'
                                     for i in range(LEVELS)}),
    'connectors_pkd': ('seg_diffkd_pkd.py', {
        'distill.loss_pkd', 'distill.loss_diffkd', 'distill.loss_diffkd_ddim',
        'distill.diffkd_student_gate'
    }),
}


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return ensure_dataset('seg', root=tmp_path_factory.mktemp('data'), num_train=8, num_val=2)


def diffkd_denoisers(distiller):
    """Every DiffKD denoiser (student side) of a built distiller, from loss entries and
    connectors alike."""
    for module in distiller.distill_losses.values():
        if isinstance(module, DiffKDLoss):
            yield from (branch.denoiser for branch in module.branches)
    for module in distiller.connectors.values():
        if isinstance(module, DiffKDStudentConnector):
            yield from module.denoisers


@pytest.mark.parametrize('style', list(STYLES))
def test_style_trains_logs_every_term_and_denoises_once(style, data_root, tmp_path):
    config, expected_terms = STYLES[style]
    cfg = Config.fromfile(osp.join(DEMO, config))
    assert cfg.custom_imports == dict(imports=['diffkd_mm'], allow_failed_imports=False)
    cfg.work_dir = str(tmp_path)
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].batch_size = 2
        cfg[loader].dataset.data_root = data_root
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=ITERS, val_interval=ITERS + 1)
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = ITERS + 1
    cfg.experiment_name = f'test_styles_{style}'
    # The runner makes its default scope (mmseg) the current one; restore the previous scope
    # afterwards so that later tests build in theirs.
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        runner = Runner.from_cfg(cfg)
        distiller = runner.model.distiller
        predictor_calls = []
        for denoiser in diffkd_denoisers(distiller):
            denoiser.noise_predictor.register_forward_hook(lambda *a: predictor_calls.append(1))
        runner.train()

    # 5 DDIM steps + 1 diffusion-loss call per level and iteration, whatever reads the output.
    assert len(predictor_calls) == ITERS * LEVELS * 6
    hub = runner.message_hub
    logged = {key[len('train/'):] for key in hub.log_scalars}
    assert expected_terms <= logged, expected_terms - logged
    for key in expected_terms:
        history, counts = hub.get_scalar(f'train/{key}').data
        assert len(history) == ITERS and all(torch.isfinite(torch.as_tensor(history))), key
