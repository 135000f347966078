"""Writes ``diffkd_golden.pt``: DiffKD's outputs and gradients on fixed weights, inputs and noise.

The file is a regression fixture: ``tests/test_models/test_equivalence.py`` loads it and checks
that the current code computes the same losses, logged terms and gradients from the same
weights. It was written by the code before DiffKD's loss and connectors were composed of the
shared student and teacher sides; regenerate it only for an intended change of the math::

    python tests/data/make_diffkd_golden.py tests/data/diffkd_golden.pt
"""
import sys

import torch
from mmengine.logging import MessageHub

from diffkd_mm.models import DiffKDLoss  # noqa: F401  (registers the modules)
from diffkd_mm.testing import toy_batch
from mmrazor.registry import MODELS

# name -> (DiffKDLoss kwargs, student shapes, teacher shapes)
LOSS_CASES = {
    'features_ae_auto': (dict(
        student_channels=6,
        teacher_channels=16,
        ae_channels=8,
        loss_weight=1.3,
        ddim_loss_weight=0.7,
        ae_loss_weight=0.5), [(2, 6, 5, 5)], [(2, 16, 5, 5)]),
    'fpn_two_levels_raw': (dict(
        student_channels=[6, 4],
        teacher_channels=8,
        num_levels=2,
        target_norm=None,
        inference_steps=3), [(2, 6, 4, 4), (2, 4, 2, 2)], [(2, 8, 4, 4), (2, 8, 2, 2)]),
    'shared_branch_ae': (dict(
        student_channels=8,
        teacher_channels=8,
        num_levels=2,
        share_branch=True,
        ae_channels=8,
        output_norm=False), [(2, 8, 4, 4), (2, 8, 2, 2)], [(2, 8, 4, 4), (2, 8, 2, 2)]),
    'logits_kl':
    (dict(student_channels=10, teacher_channels=10, kernel_size=1, kd_loss='kl',
          tau=2.0), [(4, 10)], [(4, 10)]),
    'tokens_l2': (dict(student_channels=6, teacher_channels=8,
                       match_loss=dict(type='L2Loss')), [(2, 16, 6)], [(2, 16, 8)]),
}


def _grads(module, inputs):
    out = {f'param.{n}': p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    out.update({f'input.{i}': x.grad.clone() for i, x in enumerate(inputs)})
    return out


def loss_case(name, kwargs, s_shapes, t_shapes):
    torch.manual_seed(0)
    loss = DiffKDLoss(**kwargs)
    loss.bind_entry('loss_case')
    g = torch.Generator().manual_seed(1)
    fs = [torch.randn(*s, generator=g).requires_grad_() for s in s_shapes]
    ft = [torch.randn(*t, generator=g) * 3 + 1 for t in t_shapes]
    state = {k: v.clone() for k, v in loss.state_dict().items()}
    hub = MessageHub.get_instance(f'golden_{name}')
    torch.manual_seed(2)
    total = loss(fs if len(fs) > 1 else fs[0], ft if len(ft) > 1 else ft[0])
    total.backward()
    logged = {
        k: float(hub.get_scalar(k).current())
        for k in hub.log_scalars if 'loss_case' in k or k.endswith('case_gate')
    }
    return dict(
        state=state,
        student=[f.detach() for f in fs],
        teacher=ft,
        total=total.detach(),
        logged=logged,
        grads=_grads(loss, fs))


def connector_cfg():
    """The toy classifier with DiffKD connectors (AE), PKD and the diffusion entry."""
    return dict(
        type='SingleTeacherDistill',
        architecture=dict(type='ToyClassifier', width=4),
        teacher=dict(type='ToyClassifier', width=16),
        distiller=dict(
            type='DiffKDDistiller',
            student_recorders=dict(feat=dict(type='ModuleOutputs', source='backbone')),
            teacher_recorders=dict(feat=dict(type='ModuleOutputs', source='backbone')),
            connectors=dict(
                diffkd_s=dict(type='DiffKDStudentConnector', student_channels=4, latent_channels=8),
                diffkd_t=dict(type='DiffKDTeacherConnector', teacher_channels=16, ae_channels=8)),
            distill_losses=dict(
                loss_pkd=dict(type='PKDLoss'),
                loss_diffkd=dict(
                    type='DiffKDDiffusionLoss',
                    student_connector='diffkd_s',
                    teacher_connector='diffkd_t',
                    ae_loss_weight=0.5)),
            loss_forward_mappings=dict(
                loss_pkd=dict(
                    preds_S=dict(from_student=True, recorder='feat', connector='diffkd_s'),
                    preds_T=dict(from_student=False, recorder='feat', connector='diffkd_t')),
                loss_diffkd=dict(
                    target=dict(from_student=False, recorder='feat', connector='diffkd_t')))))


def connector_case():
    torch.manual_seed(0)
    algo = MODELS.build(connector_cfg())
    algo.train()
    state = {k: v.clone() for k, v in algo.state_dict().items()}
    hub = MessageHub.get_instance('golden_connectors')
    torch.manual_seed(2)
    losses = algo(**algo.data_preprocessor(toy_batch(), True), mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    logged = {k: float(hub.get_scalar(k).current()) for k in hub.log_scalars if 'distill' in k}
    grads = {f'param.{n}': p.grad.clone() for n, p in algo.named_parameters() if p.grad is not None}
    return dict(
        state=state, losses={
            k: v.detach()
            for k, v in losses.items()
        }, logged=logged, grads=grads)


def main(path):
    import diffkd_mm.testing  # noqa: F401  (ToyClassifier)
    golden = {name: loss_case(name, *case) for name, case in LOSS_CASES.items()}
    golden['connectors_ae_pkd'] = connector_case()
    torch.save(golden, path)


if __name__ == '__main__':
    main(sys.argv[1])
