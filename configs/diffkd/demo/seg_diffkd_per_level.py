# Demo DiffKD written as mmrazor's own recipes are: the stock ConfigurableDistiller and one loss
# entry per FPN level (data_idx), each a DiffKDLoss. This is what turning an mmrazor recipe (e.g.
# PKD's) into DiffKD takes: change the loss type and give the channels. Same math as
# seg_diffkd.py (one DiffKD branch per level), logged per level as loss_diffkd_fpn<i>_{kd,ddim}
# once DistillLossNamesHook has told each entry its name.
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
        distill_losses={
            f'loss_diffkd_fpn{i}':
            dict(
                type='DiffKDLoss',
                student_channels={{_base_.student_fpn_channels}},
                teacher_channels=64)
            for i in _levels
        },
        loss_forward_mappings={
            f'loss_diffkd_fpn{i}':
            dict(
                preds_S=dict(from_student=True, recorder='fpn', data_idx=i),
                preds_T=dict(from_student=False, recorder='fpn', data_idx=i))
            for i in _levels
        }))
del _levels
custom_hooks = [dict(type='TorchRNGStateHook'), dict(type='DistillLossNamesHook')]
