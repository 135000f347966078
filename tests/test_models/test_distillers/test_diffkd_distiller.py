"""DiffKD wired through mmrazor: SingleTeacherDistill + DiffKDDistiller on toy models."""
import copy

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from diffkd_mm.testing import toy_batch, toy_distill_cfg
from mmrazor.registry import MODELS


def build(cfg=None):
    torch.manual_seed(0)
    algo = MODELS.build(cfg or toy_distill_cfg())
    algo.train()  # as mmengine's train loop does: puts the teacher's BN in eval mode
    return algo


def test_terms_logged_under_their_names_and_parsed():
    hub = MessageHub.get_instance('test_diffkd_distiller_terms')
    algo = build()
    losses = algo(**algo.data_preprocessor(toy_batch(), True), mode='loss')
    assert {'distill.loss_diffkd', 'student.loss_cls'} == set(losses)
    total, log_vars = algo.parse_losses(losses)
    torch.testing.assert_close(total, losses['distill.loss_diffkd'] + losses['student.loss_cls'])
    terms = {k[len('train/'):]: v.current() for k, v in hub.log_scalars.items()}
    assert set(terms) == {
        'distill.loss_diffkd_kd', 'distill.loss_diffkd_ddim', 'distill.loss_diffkd_ae',
        'distill.diffkd_gate'
    }
    assert sum(v for k, v in terms.items() if 'loss' in k) == pytest.approx(
        float(log_vars['distill.loss_diffkd']), rel=1e-5)
    loss = algo.distiller.distill_losses['loss_diffkd']
    assert loss.loss_name == 'loss_diffkd'
    assert loss.input_sources['preds_S'] == "student_recorders.feat (source 'backbone')"


def test_train_step_updates_diffkd_and_denoises_once():
    algo = build()
    diffkd = algo.distiller.distill_losses['loss_diffkd']
    calls = []
    diffkd.branches[0].denoiser.noise_predictor.register_forward_hook(lambda *a: calls.append(1))
    diffkd.branches[0].denoiser.noise_adapter.register_forward_hook(
        lambda *a: calls.append('adapter'))
    branch = diffkd.branches[0]
    before = copy.deepcopy(branch.state_dict())
    teacher_before = copy.deepcopy(algo.teacher.state_dict())
    wrapper = OptimWrapper(torch.optim.SGD(algo.parameters(), lr=0.1))
    log_vars = algo.train_step(toy_batch(), wrapper)
    # one denoising per feature pair per iteration: 5 DDIM steps + 1 diffusion-loss call
    assert calls.count(1) == 6 and calls.count('adapter') == 1
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values())
    changed = [k for k, v in branch.state_dict().items() if not torch.equal(v, before[k])]
    for part in ('denoiser.student_proj', 'target.autoencoder.encoder',
                 'target.autoencoder.decoder', 'denoiser.noise_predictor', 'denoiser.noise_adapter',
                 'denoiser.output_proj'):
        assert any(k.startswith(part) for k in changed), part
    for k, v in algo.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k


def test_logits_and_features_together():
    cfg = toy_distill_cfg()
    d = cfg['distiller']
    d['student_recorders']['logits'] = dict(type='ModuleOutputs', source='head')
    d['teacher_recorders']['logits'] = dict(type='ModuleOutputs', source='head')
    d['distill_losses']['loss_diffkd_logits'] = dict(
        type='DiffKDLoss', student_channels=5, teacher_channels=5, kernel_size=1, kd_loss='kl')
    d['loss_forward_mappings']['loss_diffkd_logits'] = dict(
        preds_S=dict(from_student=True, recorder='logits'),
        preds_T=dict(from_student=False, recorder='logits'))
    hub = MessageHub.get_instance('test_diffkd_distiller_logits')
    algo = build(cfg)
    log_vars = algo.train_step(toy_batch(), OptimWrapper(torch.optim.SGD(algo.parameters(), 0.1)))
    assert {'distill.loss_diffkd', 'distill.loss_diffkd_logits'} <= set(log_vars)
    assert {'train/distill.loss_diffkd_logits_kd',
            'train/distill.diffkd_logits_gate'} <= set(hub.log_scalars)


def _trained(cfg=None):
    """A distillation after one training step: every DiffKD module has run and moved."""
    algo = build(cfg)
    algo.train_step(toy_batch(), OptimWrapper(torch.optim.SGD(algo.parameters(), lr=0.1)))
    algo.eval()
    return algo


def assert_student_unchanged_at_inference(algo):
    """The algorithm at inference is its student: the same outputs as a plain student with the
    student's weights, in every inference mode, and no module of the distiller runs."""
    student = MODELS.build(dict(type='ToyClassifier', width=4))
    student.load_state_dict(algo.student.state_dict())
    student.eval()
    calls = []
    handles = [
        module.register_forward_hook(lambda m, *a: calls.append(type(m).__name__))
        for module in algo.distiller.modules()
    ]
    try:
        x = toy_batch()['inputs']
        for mode in ('tensor', 'predict'):
            torch.testing.assert_close(algo(x, mode=mode), student(x, mode=mode))
    finally:
        for handle in handles:
            handle.remove()
    assert not calls, f'distiller modules ran at inference: {calls}'


def _connector_style_cfg():
    cfg = toy_distill_cfg()
    d = cfg['distiller']
    d['connectors'] = dict(
        diffkd_s=dict(type='DiffKDStudentConnector', student_channels=4),
        diffkd_t=dict(type='DiffKDTeacherConnector', teacher_channels=16, ae_channels=8))
    d['distill_losses'] = dict(
        loss_l2=dict(type='L2Loss'),
        loss_diffkd=dict(
            type='DiffKDDiffusionLoss', student_connector='diffkd_s', teacher_connector='diffkd_t'))
    through = dict(from_student=False, recorder='feat', connector='diffkd_t')
    d['loss_forward_mappings'] = dict(
        loss_l2=dict(
            s_feature=dict(from_student=True, recorder='feat', connector='diffkd_s'),
            t_feature=through),
        loss_diffkd=dict(target=through))
    return cfg


@pytest.mark.parametrize('style', ['loss_entry', 'connectors'])
def test_student_is_unchanged_at_inference(style):
    assert_student_unchanged_at_inference(
        _trained(_connector_style_cfg() if style == 'connectors' else None))


@pytest.mark.parametrize('mutation', ['output', 'call'])
def test_the_inference_check_fails_when_diffkd_enters_the_student(mutation):
    """The check above can fail: DiffKD's student side hooked into the student's backbone,
    changing its output, or only running there, is caught."""
    algo = _trained()
    denoiser = algo.distiller.distill_losses['loss_diffkd'].branches[0].denoiser
    if mutation == 'output':  # the denoised feature's mean added to the student's feature
        hook = lambda m, i, out: out + denoiser(out)[0].mean()  # noqa: E731
    else:  # the denoiser runs, its result unused
        hook = lambda m, i, out: out + 0 * denoiser(out)[0].mean()  # noqa: E731
    algo.student.backbone.register_forward_hook(hook)
    with pytest.raises(AssertionError):
        assert_student_unchanged_at_inference(algo)
