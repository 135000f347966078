# DiffKD on layer4 (with the 1024-channel linear AE on the teacher) and on the logits (kernel 1,
# KL with tau 1): ResNet-34 (73.62) -> ResNet-18 (69.90), ImageNet-1k, the paper's B1 recipe:
# SGD lr 0.1, Nesterov momentum 0.9, wd 1e-4 (none on norms and biases), 8 GPUs x 32 images
# (total batch 256), 100 epochs, lr x0.1 at epochs 30, 60 and 90.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py', 'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['diffkd_mm'], allow_failed_imports=False)
# Checkpoints carry torch's random state, so that a resumed run draws DiffKD's noise as the
# uninterrupted run would.
custom_hooks = [dict(type='TorchRNGStateHook')]

teacher_ckpt = 'https://download.openmmlab.com/mmclassification/v0/resnet/resnet34_8xb32_in1k_20210831-f257d4e6.pth'  # noqa: E501

model = dict(
    _scope_='mmrazor',
    type='SingleTeacherDistill',
    architecture=dict(cfg_path='mmpretrain::resnet/resnet18_8xb32_in1k.py', pretrained=False),
    teacher=dict(cfg_path='mmpretrain::resnet/resnet34_8xb32_in1k.py', pretrained=False),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='DiffKDDistiller',
        student_recorders=dict(
            feat=dict(type='ModuleOutputs', source='backbone.layer4'),
            logits=dict(type='ModuleOutputs', source='head.fc')),
        teacher_recorders=dict(
            feat=dict(type='ModuleOutputs', source='backbone.layer4'),
            logits=dict(type='ModuleOutputs', source='head.fc')),
        distill_losses=dict(
            # the official KD_MODULES for tv_resnet34 -> tv_resnet18: layer4 (512 -> 512) and fc
            loss_diffkd_feat=dict(
                type='DiffKDLoss',
                student_channels=512,
                teacher_channels=512,
                kernel_size=3,
                ae_channels=1024,
                # The official ImageNet recipe: the AE on the raw layer4 feature (post-ReLU, of
                # order 1), not its per-channel standardisation (the default for dense features).
                target_norm=None),
            loss_diffkd_logits=dict(
                type='DiffKDLoss',
                student_channels=1000,
                teacher_channels=1000,
                kernel_size=1,
                kd_loss='kl',
                tau=1.0)),
        loss_forward_mappings=dict(
            loss_diffkd_feat=dict(
                preds_S=dict(from_student=True, recorder='feat'),
                preds_T=dict(from_student=False, recorder='feat')),
            loss_diffkd_logits=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits')))))

# The official recipe's optimizer (hunto/image_classification_sota, tools/train.py defaults with
# diffkd_b1.yaml): SGD with Nesterov momentum, and no weight decay on 1-D parameters (norm
# weights, biases), DiffKD's modules included. tools/analysis_tools/recipe_parity.py checks one
# training step of this config against the official code.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))

find_unused_parameters = False
auto_scale_lr = dict(enable=False, base_batch_size=256)
