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
    diffkd.branches[0].noise_predictor.register_forward_hook(lambda *a: calls.append(1))
    diffkd.branches[0].noise_adapter.register_forward_hook(lambda *a: calls.append('adapter'))
    branch = diffkd.branches[0]
    before = copy.deepcopy(branch.state_dict())
    teacher_before = copy.deepcopy(algo.teacher.state_dict())
    wrapper = OptimWrapper(torch.optim.SGD(algo.parameters(), lr=0.1))
    log_vars = algo.train_step(toy_batch(), wrapper)
    # one denoising per feature pair per iteration: 5 DDIM steps + 1 diffusion-loss call
    assert calls.count(1) == 6 and calls.count('adapter') == 1
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values())
    changed = [k for k, v in branch.state_dict().items() if not torch.equal(v, before[k])]
    for part in ('student_proj', 'autoencoder.encoder', 'autoencoder.decoder', 'noise_predictor',
                 'noise_adapter', 'output_proj'):
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


def test_student_is_unchanged_at_inference():
    algo = build()
    algo.eval()
    student = MODELS.build(dict(type='ToyClassifier', width=4))
    student.load_state_dict(algo.student.state_dict())
    student.eval()
    x = toy_batch()['inputs']
    calls = []
    algo.distiller.distill_losses['loss_diffkd'].register_forward_hook(lambda *a: calls.append(1))
    torch.testing.assert_close(algo(x, mode='tensor'), student(x, mode='tensor'))
    assert not calls
