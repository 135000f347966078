# Demo baseline PKD (mmrazor's PKDLoss) on the 4 FPN levels, as mmrazor's PKD recipes write it:
# one entry per level. PKD standardises both features per channel and matches them with MSE;
# the student's 16-channel levels are mapped to the teacher's 64 channels by a learned 1x1 conv
# first (PKD itself needs equal channels). Each level weighted 3: the best of {0.3, 1, 3} at the
# converged schedule on the held-out seed 100
# (docs/results/2026-12-02_converged_settings_heldout.md).
_base_ = ['./_base_/seg_runtime.py', './_base_/seg_models.py']

teacher_ckpt = None  # set by tools/run_demo.py to the trained demo teacher
_levels = range(4)
model = dict(
    _scope_='mmrazor',
    type='SingleTeacherDistill',
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
