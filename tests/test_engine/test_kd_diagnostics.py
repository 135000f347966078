"""KDDiagnosticsHook / measure_kd_signal: the KD signal that reaches the student, measured the
same way for every method, with training left as it was."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub

from diffkd_mm.engine import KDDiagnosticsHook, measure_kd_signal
from diffkd_mm.testing import toy_batch, toy_distill_cfg
from mmrazor.registry import MODELS


def build(loss_cfg=None, distiller='DiffKDDistiller', **kwargs):
    torch.manual_seed(0)
    cfg = toy_distill_cfg(distiller, loss_cfg=loss_cfg, **kwargs)
    if loss_cfg is not None and loss_cfg['type'] == 'L2Loss':  # FitNet: L2Loss's argument names
        mapping = cfg['distiller']['loss_forward_mappings']['loss_diffkd']
        mapping['s_feature'] = mapping.pop('preds_S')
        mapping['t_feature'] = mapping.pop('preds_T')
    model = MODELS.build(cfg)
    model.train()  # mmrazor's train() returns nothing
    return model


def fitnet_cfg(weight=1.0):
    return dict(type='L2Loss', loss_weight=weight, normalize=False)


def test_diffkd_diagnostics_cover_every_quantity():
    model = build()
    result = measure_kd_signal(model, toy_batch())
    assert set(result) == {'kd_grad_norm', 'cos_student', 'cos_refined', 'gate'}
    assert result['kd_grad_norm'] > 0
    assert -1 <= result['cos_student'] <= 1 and -1 <= result['cos_refined'] <= 1
    assert 0 < result['gate'] < 1


def test_feature_kd_without_denoiser_has_no_denoiser_quantities():
    model = build(fitnet_cfg(), 'ConfigurableDistiller', student_width=8, teacher_width=8)
    result = measure_kd_signal(model, toy_batch())
    assert set(result) == {'kd_grad_norm', 'cos_student'}


def test_grad_norm_scales_with_the_loss_weight():
    small = measure_kd_signal(
        build(fitnet_cfg(1.0), 'ConfigurableDistiller', student_width=8, teacher_width=8),
        toy_batch())
    large = measure_kd_signal(
        build(fitnet_cfg(3.0), 'ConfigurableDistiller', student_width=8, teacher_width=8),
        toy_batch())
    assert large['kd_grad_norm'] == pytest.approx(3 * small['kd_grad_norm'], rel=1e-5)
    assert large['cos_student'] == pytest.approx(small['cos_student'], rel=1e-6)


def test_identical_sides_have_cosine_one():
    """A student that is the teacher (same width, same weights) compares equal features."""
    model = build(fitnet_cfg(), 'ConfigurableDistiller', student_width=8, teacher_width=8)
    model.teacher.load_state_dict(model.architecture.state_dict())
    model.teacher.train()  # the same batch statistics on both sides
    result = measure_kd_signal(model, toy_batch())
    assert result['cos_student'] == pytest.approx(1.0, abs=1e-5)
    assert result['kd_grad_norm'] == pytest.approx(0.0, abs=1e-6)


def test_training_is_left_as_it_was():
    model = build()
    hub = MessageHub.get_instance('kd_diagnostics_test')  # the training's hub
    model(**toy_batch(), mode='loss')  # a training step logs DiffKD's terms there
    logged = {k: v.data[0].tolist() for k, v in hub.log_scalars.items()}
    assert any(k.endswith('loss_diffkd_kd') for k in logged)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    measure_kd_signal(model, toy_batch())
    torch.testing.assert_close(torch.rand(3), expected_draw)  # the random stream goes on
    for name, buf in model.named_buffers():
        assert torch.equal(buf, buffers[name]), name  # BN statistics, EMA weights
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated
    assert MessageHub.get_current_instance() is hub  # what the pass logged went elsewhere
    assert {k: v.data[0].tolist() for k, v in hub.log_scalars.items()} == logged


def test_hook_measures_at_its_iterations():
    model = build()
    hook = KDDiagnosticsHook(at=(2, 0.5, 1.0))
    runner = SimpleNamespace(max_iters=10, model=model, iter=0)
    hook.before_train(runner)
    for it in range(10):
        runner.iter = it
        hook.after_train_iter(runner, it, toy_batch(seed=it))
    assert [r['iter'] for r in hook.records] == [2, 5, 10]


@pytest.mark.parametrize('bad', [0, -1, 1.5, 0.0, 'end', True])
def test_bad_iterations_are_named(bad):
    with pytest.raises(ValueError, match='KDDiagnosticsHook: at must hold iterations'):
        KDDiagnosticsHook(at=(bad, ))
