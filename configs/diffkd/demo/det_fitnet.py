# Demo baseline feature KD (FitNet): on each of the 3 FPN levels (P3-P5), MSE between the
# student's feature mapped by a learned 1x1 conv (16 -> 64 channels) and the teacher's (the same
# locations as det_diffkd.py). Each level weighted 1: the best of {0.1, 0.3, 1} at the converged
# schedule (--schedule converged) on the held-out seed 101; every KD method had three weights
# tried there (docs/results/2026-12-03_converged_det_settings_heldout.md).
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
        distill_losses={
            f'loss_fitnet_fpn{i}':
            dict(type='L2Loss', loss_weight=1.0, normalize=False, div_element=True)
            for i in _levels
        },
        loss_forward_mappings={
            f'loss_fitnet_fpn{i}':
            dict(
                s_feature=dict(
                    from_student=True, recorder='fpn', data_idx=i, connector=f'student_proj{i}'),
                t_feature=dict(from_student=False, recorder='fpn', data_idx=i))
            for i in _levels
        }))
del _levels
