# DiffKD's denoising in front of mmrazor's PKD on all FPN levels (P2-P6): Faster R-CNN R101 ->
# R50. DiffKDStudentConnector denoises the student FPN into the teacher's latent,
# DiffKDTeacherConnector passes the teacher FPN (detached; no AE), PKDLoss matches the two with
# the weight of mmrazor's PKD recipe (6), and the DiffKDDiffusionLoss entry trains the noise
# predictor on the teacher target. Everything else is the FPN-tuple config's.
_base_ = ['./diffkd_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py']

model = dict(
    distiller=dict(
        _delete_=True,
        type='DiffKDDistiller',
        student_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        teacher_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        connectors=dict(
            diffkd_student=dict(
                type='DiffKDStudentConnector',
                student_channels=256,
                latent_channels=256,
                num_levels=5),
            diffkd_teacher=dict(type='DiffKDTeacherConnector', teacher_channels=256, num_levels=5)),
        distill_losses=dict(
            loss_pkd_fpn=dict(type='PKDLoss', loss_weight=6),
            loss_diffkd_fpn=dict(
                type='DiffKDDiffusionLoss',
                student_connector='diffkd_student',
                teacher_connector='diffkd_teacher')),
        loss_forward_mappings=dict(
            loss_pkd_fpn=dict(
                preds_S=dict(from_student=True, recorder='fpn', connector='diffkd_student'),
                preds_T=dict(from_student=False, recorder='fpn', connector='diffkd_teacher')),
            loss_diffkd_fpn=dict(
                target=dict(from_student=False, recorder='fpn', connector='diffkd_teacher')))))
