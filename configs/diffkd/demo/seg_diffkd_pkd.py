# Demo DiffKD as connectors in front of another mmrazor loss: the student FPN (16 channels) is
# denoised into the teacher's width (64) by DiffKDStudentConnector, the teacher FPN passes
# through DiffKDTeacherConnector (no AE here: the detached feature), and mmrazor's PKDLoss
# matches the two on all 4 levels. The DiffKDDiffusionLoss entry trains the noise predictor on
# the teacher target; DiffKDDistiller links it to the connectors and runs each connector once
# per iteration.
_base_ = ['./_base_/seg_runtime.py', './_base_/seg_models.py']

teacher_ckpt = None  # set by tools/run_demo.py to the trained demo teacher
model = dict(
    _scope_='mmrazor',
    type='SingleTeacherDistill',
    architecture={{_base_.student_model}},
    teacher={{_base_.teacher_model}},
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='DiffKDDistiller',
        student_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        teacher_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        connectors=dict(
            diffkd_student=dict(
                type='DiffKDStudentConnector',
                student_channels={{_base_.student_fpn_channels}},
                latent_channels=64,
                num_levels=4),
            diffkd_teacher=dict(type='DiffKDTeacherConnector', teacher_channels=64, num_levels=4)),
        distill_losses=dict(
            loss_pkd=dict(type='PKDLoss', loss_weight=1.0),
            loss_diffkd=dict(
                type='DiffKDDiffusionLoss',
                student_connector='diffkd_student',
                teacher_connector='diffkd_teacher')),
        loss_forward_mappings=dict(
            loss_pkd=dict(
                preds_S=dict(from_student=True, recorder='fpn', connector='diffkd_student'),
                preds_T=dict(from_student=False, recorder='fpn', connector='diffkd_teacher')),
            loss_diffkd=dict(
                target=dict(from_student=False, recorder='fpn', connector='diffkd_teacher')))))
