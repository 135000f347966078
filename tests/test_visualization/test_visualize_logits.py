"""tools/analysis_tools/visualize_denoising.py on a logits entry, in process."""
import importlib.util
import os.path as osp

import torch

import diffkd_mm
from diffkd_mm.datasets import ensure_dataset
from diffkd_mm.testing import toy_distill_cfg
from mmrazor.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'visualize_denoising.py')

LOGITS_LOSS = dict(
    type='DiffKDLoss', student_channels=5, teacher_channels=5, kernel_size=1, kd_loss='kl', tau=1.0)


def _tool():
    spec = importlib.util.spec_from_file_location('visualize_denoising', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _logits_config(tmp_path, data_root) -> str:
    """A toy classification distillation whose DiffKD entry takes the (B, 5) logits."""
    model = toy_distill_cfg(loss_cfg=LOGITS_LOSS)
    for side in ('student_recorders', 'teacher_recorders'):
        model['distiller'][side] = dict(logits=dict(type='ModuleOutputs', source='head'))
    for key in ('preds_S', 'preds_T'):
        model['distiller']['loss_forward_mappings']['loss_diffkd'][key]['recorder'] = 'logits'
    model['data_preprocessor'] = dict(
        type='mmpretrain.ClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3)
    val_dataloader = dict(
        batch_size=4,
        num_workers=0,
        sampler=dict(type='mmpretrain.DefaultSampler', shuffle=False),
        dataset=dict(
            type='mmpretrain.CustomDataset',
            data_root=str(data_root),
            data_prefix='val',
            with_label=True,
            pipeline=[
                dict(type='mmpretrain.LoadImageFromFile'),
                dict(type='mmpretrain.PackInputs')
            ]))
    path = tmp_path / 'toy_logits_diffkd.py'
    path.write_text("custom_imports = dict(imports=['diffkd_mm', 'diffkd_mm.testing'], "
                    "allow_failed_imports=False)\n"
                    "default_scope = 'mmrazor'\n"
                    f'model = {model!r}\nval_dataloader = {val_dataloader!r}\n')
    return str(path)


def test_visualize_denoising_draws_a_logits_entry(tmp_path):
    data_root = ensure_dataset('cls', root=tmp_path / 'data', num_train=3, num_val=4, img_size=32)
    config = _logits_config(tmp_path, data_root)
    torch.manual_seed(0)
    from mmengine.config import Config
    algorithm = MODELS.build(Config.fromfile(config).model)
    ckpt = tmp_path / 'iter_1.pth'
    torch.save(dict(state_dict=algorithm.state_dict(), meta=dict(iter=1)), ckpt)

    out_dir = tmp_path / 'vis'
    assert _tool().main([config, str(ckpt), '--out-dir', str(out_dir), '--num-images', '2']) == 0
    assert osp.getsize(out_dir / 'loss_diffkd_level0.png') > 1000


def test_record_of_a_logits_entry_follows_the_loss_path():
    """record_denoising goes through DiffKDLoss.level_outputs: (B, C) logits become 1x1 maps, and
    a seed fixes the start-point noise (the gate is ~0.5 at initialisation, so noise shows)."""
    from diffkd_mm.testing import toy_batch
    from diffkd_mm.visualization import record_denoising
    model = toy_distill_cfg(loss_cfg=LOGITS_LOSS)
    for side in ('student_recorders', 'teacher_recorders'):
        model['distiller'][side] = dict(logits=dict(type='ModuleOutputs', source='head'))
    for key in ('preds_S', 'preds_T'):
        model['distiller']['loss_forward_mappings']['loss_diffkd'][key]['recorder'] = 'logits'
    torch.manual_seed(0)
    algorithm = MODELS.build(model)
    batch = toy_batch(batch_size=3)
    first = record_denoising(algorithm, batch, 'loss_diffkd', seed=1)
    assert first['layout'] == 'logits'
    for name in ('student', 'denoised', 'teacher'):
        assert first[name].shape == (3, 5, 1, 1), name
    with torch.no_grad():
        teacher_logits = algorithm.teacher(batch['inputs'], mode='tensor')
    # Without an AE and with target_norm='auto' -> None for logits, the target is the logits.
    torch.testing.assert_close(first['teacher'].flatten(1), teacher_logits)
    again = record_denoising(algorithm, batch, 'loss_diffkd', seed=1)
    other = record_denoising(algorithm, batch, 'loss_diffkd', seed=2)
    torch.testing.assert_close(again['denoised'], first['denoised'])
    assert not torch.allclose(other['denoised'], first['denoised'])
    assert algorithm.training  # the mode is restored
