# The DiffKD authors' detection protocol (their RetinaNet R101 -> R50 recipe, for mmrazor 0.x),
# scaled to the demo's RetinaNet; the COCO config is
# configs/diffkd/mmdet/diffkd-authors_fpn-cls_retina_r101_retina_r50_2x_coco.py:
# * DiffKD on every FPN level (here P3-P5), loss weight 5, the official settings: no AE, 5 DDIM
#   steps, the teacher on its raw scale (target_norm=None);
# * a second DiffKD entry per level on the classification logits (bbox_head.retina_cls), matched
#   by KL, loss weight 1, the teacher logits compressed by the linear AE (COCO: 720 -> 72
#   channels, "reduced 10x"; here 27 -> 8, the fewest a kernel-3 denoiser takes).
# The teacher runs completely (SingleTeacherDistill): its head must produce the logits. The
# optimiser and schedule stay the benchmark's, as for every other method (the protocol's SGD
# lr 0.02 with clipping 35 is in the COCO config).
_base_ = ['./_base_/det_runtime.py', './_base_/det_models.py']

teacher_ckpt = None  # set by the demo runner to the trained demo teacher
_levels = range(3)
_logits = 9 * 3  # anchors per position x classes
model = dict(
    _scope_='mmrazor',
    type='SingleTeacherDistill',
    architecture={{_base_.student_model}},
    teacher={{_base_.teacher_model}},
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='DiffKDDistiller',
        student_recorders=dict(
            fpn=dict(type='ModuleOutputs', source='neck'),
            cls=dict(type='ModuleOutputs', source='bbox_head.retina_cls')),
        teacher_recorders=dict(
            fpn=dict(type='ModuleOutputs', source='neck'),
            cls=dict(type='ModuleOutputs', source='bbox_head.retina_cls')),
        distill_losses=dict(
            loss_diffkd_fpn=dict(
                type='DiffKDLoss',
                student_channels={{_base_.student_fpn_channels}},
                teacher_channels=64,
                num_levels=3,
                target_norm=None,
                loss_weight=5.0),
            **{
                f'loss_diffkd_cls{i}':
                dict(
                    type='DiffKDLoss',
                    student_channels=_logits,
                    teacher_channels=_logits,
                    ae_channels=8,
                    kd_loss='kl',
                    target_norm=None,
                    loss_weight=1.0)
                for i in _levels
            }),
        loss_forward_mappings=dict(
            loss_diffkd_fpn=dict(
                preds_S=dict(from_student=True, recorder='fpn'),
                preds_T=dict(from_student=False, recorder='fpn')),
            # retina_cls runs once per level: record_idx picks the level.
            **{
                f'loss_diffkd_cls{i}':
                dict(
                    preds_S=dict(from_student=True, recorder='cls', record_idx=i),
                    preds_T=dict(from_student=False, recorder='cls', record_idx=i))
                for i in _levels
            })))
