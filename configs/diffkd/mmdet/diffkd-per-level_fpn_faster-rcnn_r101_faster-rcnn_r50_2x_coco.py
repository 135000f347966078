# mmrazor's PKD recipe for Faster R-CNN R101 -> R50 (configs/distill/mmdet/pkd/ in mmrazor) with
# its loss swapped for DiffKD: the stock ConfigurableDistiller, one entry per FPN level P2-P5
# (data_idx), `type='PKDLoss'` replaced by `type='DiffKDLoss'` plus the channels. That is all an
# mmrazor recipe needs to become a DiffKD one. DistillLossNamesHook (custom_hooks) tells each
# entry its name, so that it logs its own terms (distill.loss_diffkd_fpn<i>_{kd,ddim} and
# distill.diffkd_fpn<i>_gate) beside the sum that mmengine logs anyway.
# The recipe's PKD weight (6) is for PKD's normalised features; DiffKD keeps its official
# weights (1 per term), as the FPN-tuple config beside this one does.
# Data, schedule, teacher, student and teacher checkpoint: those of the FPN-tuple config (which
# are the PKD recipe's); only the distiller differs.
_base_ = ['./diffkd_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py']

_levels = range(4)
model = dict(
    distiller=dict(
        _delete_=True,
        type='ConfigurableDistiller',
        student_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        teacher_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        distill_losses={
            f'loss_diffkd_fpn{i}': dict(
                type='DiffKDLoss', student_channels=256, teacher_channels=256)
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
