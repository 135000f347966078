"""DiffKDWarmupHook: trains DiffKD's teacher side alone, caches it, leaves the rest as it was."""
import logging
import os
import os.path as osp
import re
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from diffkd_mm.datasets import ensure_dataset
from diffkd_mm.engine import DiffKDWarmupHook
from diffkd_mm.testing import toy_batch, toy_distill_cfg, write_tiny_seg_config
from mmrazor.registry import MODELS


def build(loss_cfg=None, seed=0, **kwargs):
    torch.manual_seed(seed)
    return MODELS.build(toy_distill_cfg(loss_cfg=loss_cfg, **kwargs))


def connector_cfg():
    """The connector face: DiffKD denoises in front of an MSE, trained by its diffusion entry."""
    cfg = toy_distill_cfg()
    cfg['distiller'].update(
        connectors=dict(
            diffkd_s=dict(type='DiffKDStudentConnector', student_channels=4),
            diffkd_t=dict(type='DiffKDTeacherConnector', teacher_channels=16, ae_channels=8)),
        distill_losses=dict(
            loss_mse=dict(type='L2Loss', normalize=False),
            loss_ddim=dict(
                type='DiffKDDiffusionLoss',
                student_connector='diffkd_s',
                teacher_connector='diffkd_t')),
        loss_forward_mappings=dict(
            loss_mse=dict(
                s_feature=dict(from_student=True, recorder='feat', connector='diffkd_s'),
                t_feature=dict(from_student=False, recorder='feat', connector='diffkd_t')),
            loss_ddim=dict(target=dict(from_student=False, recorder='feat', connector='diffkd_t'))))
    return cfg


class Batches:
    """A dataloader of toy batches that counts how often it is iterated."""

    def __init__(self, n=4):
        self.batches = [toy_batch(seed=i) for i in range(n)]
        self.iterated = 0

    def __iter__(self):
        self.iterated += 1
        return iter(self.batches)


def fake_runner(model, loader=None, it=0):
    """What the hook uses of a Runner; its dataloader is ``loader``, whatever the config."""
    loader = loader or Batches()
    return SimpleNamespace(
        model=model,
        iter=it,
        seed=0,
        cfg=Config(dict(train_dataloader=dict(batch_size=4))),
        build_dataloader=lambda cfg, seed: loader)


def held_out_ddim(algorithm):
    """The diffusion loss of the DiffKD entry on a batch the warm-up never saw, fixed draws."""
    loss = algorithm.distiller.distill_losses['loss_diffkd']
    algorithm.eval()  # nothing changes, the teacher's BN statistics included
    with torch.no_grad(), algorithm.distiller.teacher_recorders:
        algorithm.teacher(toy_batch(batch_size=16, seed=99)['inputs'], None, mode='tensor')
    feat = algorithm.distiller.get_record('feat', from_student=False)
    torch.manual_seed(123)
    with torch.no_grad():
        return float(loss.teacher_side_terms(feat)['ddim'])


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_trains_the_teacher_side_only_and_lowers_the_held_out_diffusion_loss(tmp_path):
    algorithm = build()
    before = state(algorithm)
    ddim_before = held_out_ddim(algorithm)
    rng = torch.get_rng_state()
    loader = Batches()
    DiffKDWarmupHook(
        iters=40, optimizer=dict(type='AdamW', lr=1e-2),
        cache_dir=str(tmp_path)).before_train(fake_runner(algorithm, loader))
    assert torch.equal(torch.get_rng_state(), rng)  # the student starts as without the hook
    assert loader.iterated == 10  # 40 iterations over 4 batches: the loader restarts
    after = state(algorithm)
    branch = 'distiller.distill_losses.loss_diffkd.branches.0.'
    trained = [branch + 'denoiser.noise_predictor.', branch + 'target.autoencoder.']
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(tuple(trained)) for k in changed)
    assert any(k.startswith(trained[0])
               for k in changed) and any(k.startswith(trained[1]) for k in changed)
    for untouched in ('architecture.', 'teacher.', branch + 'denoiser.student_proj.',
                      branch + 'denoiser.noise_adapter.', branch + 'denoiser.output_proj.'):
        assert not any(k.startswith(untouched) for k in changed), untouched
    assert held_out_ddim(algorithm) < 0.8 * ddim_before


@pytest.fixture
def warnings():
    """The warnings mmengine's current logger writes during the test."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_second_student_loads_the_cache_and_a_damaged_cache_is_rebuilt(tmp_path, warnings):
    hook = DiffKDWarmupHook(iters=5, cache_dir=str(tmp_path))
    first = build()
    hook.before_train(fake_runner(first))
    [cached] = [f for f in os.listdir(tmp_path) if f.endswith('.pth')]

    second, loader = build(), Batches()
    hook.before_train(fake_runner(second, loader))
    assert loader.iterated == 0  # loaded, not trained
    torch.testing.assert_close(state(second), state(first), rtol=0, atol=0)

    with open(tmp_path / cached, 'r+b') as f:  # cut short, as by a kill with a plain copy
        f.truncate(100)
    third, loader = build(), Batches()
    hook.before_train(fake_runner(third, loader))
    assert loader.iterated == 2  # warmed up again
    torch.testing.assert_close(state(third), state(first))
    assert [f for f in os.listdir(tmp_path) if '.bad-' in f]
    [warning] = warnings
    assert f'cached warm-up {tmp_path / cached} cannot be used (not a readable' in warning
    assert warning.endswith('warming up again')


def test_another_teacher_or_setting_is_another_cache_entry(tmp_path):
    hook = DiffKDWarmupHook(iters=2, cache_dir=str(tmp_path))
    hook.before_train(fake_runner(build()))
    other_teacher = build()
    with torch.no_grad():
        other_teacher.teacher.head.weight.add_(1.0)
    hook.before_train(fake_runner(other_teacher))
    other_setting = build(
        loss_cfg=dict(
            type='DiffKDLoss',
            student_channels=4,
            teacher_channels=16,
            ae_channels=8,
            inference_steps=3))
    hook.before_train(fake_runner(other_setting))  # same weights, another schedule
    DiffKDWarmupHook(iters=3, cache_dir=str(tmp_path)).before_train(fake_runner(build()))
    assert len([f for f in os.listdir(tmp_path) if f.endswith('.pth')]) == 3


def test_connector_face_warms_the_student_connector_and_the_teacher_ae(tmp_path):
    torch.manual_seed(0)
    algorithm = MODELS.build(connector_cfg())
    before = state(algorithm)
    DiffKDWarmupHook(iters=3, cache=False).before_train(fake_runner(algorithm))
    after = state(algorithm)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(
        k.startswith('distiller.connectors.diffkd_s.denoisers.0.noise_predictor.') for k in changed)
    assert any(
        k.startswith('distiller.connectors.diffkd_t.targets.0.autoencoder.') for k in changed)
    assert all(
        k.startswith(('distiller.connectors.diffkd_s.denoisers.0.noise_predictor.',
                      'distiller.connectors.diffkd_t.')) for k in changed)


def test_resumed_run_is_left_alone(tmp_path):
    algorithm, loader = build(), Batches()
    before = state(algorithm)
    DiffKDWarmupHook(
        iters=3, cache_dir=str(tmp_path)).before_train(fake_runner(algorithm, loader, it=7))
    assert loader.iterated == 0 and not os.listdir(tmp_path)
    torch.testing.assert_close(state(algorithm), before, rtol=0, atol=0)


@pytest.mark.parametrize('kwargs,message', [
    (dict(iters=0), 'iters must be a positive int'),
    (dict(iters=5, optimizer='adam'), 'optimizer must be an optimizer config'),
    (dict(iters=5, log_interval=0), 'log_interval must be a positive int'),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiffKDWarmupHook(**kwargs)


def test_diverging_warm_up_stops_with_the_terms(tmp_path):
    algorithm = build()
    with torch.no_grad():
        algorithm.teacher.backbone[0].weight.fill_(float('nan'))
    with pytest.raises(
            FloatingPointError,
            match=r'non-finite warm-up loss at iteration 1 '
            r'\(loss_diffkd.ddim=nan, loss_diffkd.ae=nan\); lower the warm-up lr'):
        DiffKDWarmupHook(iters=3, cache_dir=str(tmp_path)).before_train(fake_runner(algorithm))
    assert not os.listdir(tmp_path)  # nothing cached


def test_model_without_diffkd_is_named():
    cfg = toy_distill_cfg()
    cfg['distiller'].update(
        distill_losses=dict(loss_fitnet=dict(type='L2Loss')),
        connectors=dict(proj=dict(type='ConvModuleConnector', in_channel=4, out_channel=16)),
        loss_forward_mappings=dict(
            loss_fitnet=dict(
                s_feature=dict(from_student=True, recorder='feat', connector='proj'),
                t_feature=dict(from_student=False, recorder='feat'))))
    plain = MODELS.build(cfg)
    with pytest.raises(
            ValueError,
            match='has no DiffKD entry .DiffKDLoss or DiffKDDiffusionLoss.; it has loss_fitnet'):
        DiffKDWarmupHook(iters=1).before_train(fake_runner(plain))
    with pytest.raises(ValueError, match='model type Linear has no teacher and distiller'):
        DiffKDWarmupHook(iters=1).before_train(fake_runner(torch.nn.Linear(2, 2)))


def train_in_process(cfg_file, work_dir):
    """Train from a config in-process; ({iteration: its logged values}, the log's text)."""
    cfg = Config.fromfile(cfg_file)
    cfg.work_dir = str(work_dir)
    with DefaultScope.overwrite_default_scope('mmrazor'):
        runner = Runner.from_cfg(cfg)
        runner.train()
    with open(osp.join(runner.log_dir, f'{osp.basename(runner.log_dir)}.log')) as f:
        log = f.read()
    rows = {
        int(it): dict((k, float(v)) for k, v in re.findall(r'(\S+): (-?[\d.]+(?:e[-+]\d+)?)', rest))
        for it, rest in re.findall(r'Iter\(train\) \[(\d+)/\d+\](.*)', log)
    }
    return rows, log


def test_real_runner_with_the_demo_segmentation_config(tmp_path):
    """From a config, through mmengine's Runner: the hook runs before the first iteration, and
    the student starts as without it (same batches, same weights: same task loss)."""
    data = ensure_dataset('seg', root=str(tmp_path / 'data'), num_train=4, num_val=2)
    hook = (f"custom_hooks = [dict(type='DiffKDWarmupHook', iters=10, log_interval=5, "
            f"cache_dir={str(tmp_path / 'cache')!r})]")
    plain = write_tiny_seg_config(str(tmp_path / 'plain.py'), data, 2, 'interval=100')
    warmed = write_tiny_seg_config(str(tmp_path / 'warmed.py'), data, 2, 'interval=100', hook)
    without, _ = train_in_process(plain, tmp_path / 'without')
    warm, log = train_in_process(warmed, tmp_path / 'with')
    assert log.index('[DiffKDWarmupHook] iteration 10/10') < log.index('Iter(train) [1/2]')
    assert os.listdir(tmp_path / 'cache')
    # The training loop's first batch and the student's weights are untouched by the warm-up
    # (later iterations differ: the KD gradient comes through another denoiser) ...
    assert warm[1]['student.decode.loss_ce'] == without[1]['student.decode.loss_ce']
    assert warm[1]['student.decode.acc_seg'] == without[1]['student.decode.acc_seg']
    # ... and the warmed noise predictors fit the teacher targets better from the start.
    assert warm[1]['distill.loss_diffkd_ddim'] < without[1]['distill.loss_diffkd_ddim']
