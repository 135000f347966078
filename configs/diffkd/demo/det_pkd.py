# Demo baseline feature KD (PKD, mmrazor's PKDLoss): on each of the 3 FPN levels (P3-P5), MSE
# between the per-channel standardised student and teacher features, one loss entry per level as
# in mmrazor's own PKD recipes. The student's levels (16 channels) are mapped to the teacher's
# width (64) by a learned 1x1 conv, as in det_fitnet.py. Each level weighted 3: the best of
# {0.3, 1, 3} at the converged schedule on the held-out seed 101
# (docs/results/2026-12-03_converged_det_settings_heldout.md).
# The teacher runs only backbone + neck (FpnTeacherDistill): all that FPN distillation needs.
_base_ = ['./_base_/det_runtime.py', './_base_/det_models.py']

teacher_ckpt = None  # set by the demo runner to the trained demo teacher
_levels = range(3)
model = dict(
    _scope_='mmrazor',
    type='FpnTeacherDistill',
    architecture={{_base_.student_model}},
    teacher={{_base_.teacher_model}},
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='ConfigurableDistiller',
        student_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        teacher_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        connectors={{_base_.student_projections}},
        distill_losses={f'loss_pkd_fpn{i}': dict(type='PKDLoss', loss_weight=3.0)
                        for i in _levels},
        loss_forward_mappings={
            f'loss_pkd_fpn{i}':
            dict(
                preds_S=dict(
                    from_student=True, recorder='fpn', data_idx=i, connector=f'student_proj{i}'),
                preds_T=dict(from_student=False, recorder='fpn', data_idx=i))
            for i in _levels
        }))
del _levels
