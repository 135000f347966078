# DiffKD on CIFAR-100: ResNet-50 (CIFAR stem, 79.90) -> ResNet-18 (CIFAR stem), 8 GPUs x 16
# (total batch 128), mmpretrain's CIFAR-100 recipe of the teacher: SGD 0.1, wd 5e-4, 200 epochs,
# lr x0.2 at 60/120/160. Features: layer4 (teacher 2048 -> AE 512, student 512, 4x4) and logits.
# The AE width is ours: the official CIFAR settings are not in the public code.
_base_ = [
    'mmpretrain::_base_/datasets/cifar100_bs16.py', 'mmpretrain::_base_/schedules/cifar10_bs128.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['diffkd_mm'], allow_failed_imports=False)
# Checkpoints carry torch's random state, so that a resumed run draws DiffKD's noise as the
# uninterrupted run would.
custom_hooks = [dict(type='TorchRNGStateHook')]

teacher_ckpt = 'https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_b16x8_cifar100_20210528-67b58a1b.pth'  # noqa: E501

model = dict(
    _scope_='mmrazor',
    type='SingleTeacherDistill',
    # mmpretrain's resnet18_cifar model with 100 classes (a cfg_path cannot override num_classes).
    # Its data_preprocessor (CIFAR-100 statistics) is the algorithm's too; the scope prefixes are
    # needed because the default scope here is mmrazor's.
    architecture=dict(
        type='mmpretrain.ImageClassifier',
        data_preprocessor=dict(
            type='mmpretrain.ClsDataPreprocessor',
            num_classes=100,
            mean=[129.304, 124.070, 112.434],
            std=[68.170, 65.392, 70.418],
            to_rgb=False),
        backbone=dict(
            type='mmpretrain.ResNet_CIFAR',
            depth=18,
            num_stages=4,
            out_indices=(3, ),
            style='pytorch'),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(
            type='mmpretrain.LinearClsHead',
            num_classes=100,
            in_channels=512,
            loss=dict(type='mmpretrain.CrossEntropyLoss', loss_weight=1.0))),
    teacher=dict(cfg_path='mmpretrain::resnet/resnet50_8xb16_cifar100.py', pretrained=False),
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
            loss_diffkd_feat=dict(
                type='DiffKDLoss',
                student_channels=512,
                teacher_channels=2048,
                ae_channels=512,
                # The official ImageNet recipe: the AE on the raw layer4 feature (post-ReLU, of
                # order 1), not its per-channel standardisation (the default for dense features).
                target_norm=None),
            loss_diffkd_logits=dict(
                type='DiffKDLoss',
                student_channels=100,
                teacher_channels=100,
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

optim_wrapper = dict(optimizer=dict(weight_decay=0.0005))
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[60, 120, 160], gamma=0.2)
find_unused_parameters = False
auto_scale_lr = dict(enable=False, base_batch_size=128)
