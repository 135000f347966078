# DiffKD on the decode-head feature: DeepLabV3 R101-d8 -> DeepLabV3 R18-d8, ADE20K
# 512x512, 160k iterations, 4 GPUs x 4 images (total batch 16, SGD lr 0.01).
# mmseg's zoo has no DeepLabV3 R18 for ADE20K: the student is mmseg's R50-d8 ADE20K recipe with
# the R18-d8 backbone and head widths of its Cityscapes R18 config (ImageNet-pretrained
# resnet18_v1c), so no baseline number of ours or mmseg's exists for it yet.
_base_ = [
    'mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/schedules/schedule_160k.py',
    'mmseg::_base_/default_runtime.py'
]
custom_imports = dict(imports=['diffkd_mm'], allow_failed_imports=False)
# Checkpoints carry torch's random state, so that a resumed run draws DiffKD's noise as the
# uninterrupted run would.
custom_hooks = [dict(type='TorchRNGStateHook')]

teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r101-d8_512x512_160k_ade20k/deeplabv3_r101-d8_512x512_160k_ade20k_20200615_105816-b1f72b3b.pth'  # noqa: E501

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    _scope_='mmrazor',
    type='SingleTeacherDistill',
    # mmseg's deeplabv3_r50-d8 ADE20K model with the R18-d8 widths of
    # deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py (a cfg_path cannot override nested keys).
    architecture=dict(
        type='mmseg.EncoderDecoder',
        data_preprocessor=dict(
            type='mmseg.SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size=(512, 512)),
        pretrained='open-mmlab://resnet18_v1c',
        backbone=dict(
            type='mmseg.ResNetV1c',
            depth=18,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            dilations=(1, 1, 2, 4),
            strides=(1, 2, 1, 1),
            norm_cfg=norm_cfg,
            norm_eval=False,
            style='pytorch',
            contract_dilation=True),
        decode_head=dict(
            type='mmseg.ASPPHead',
            in_channels=512,
            in_index=3,
            channels=128,
            dilations=(1, 12, 24, 36),
            dropout_ratio=0.1,
            num_classes=150,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(type='mmseg.CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        auxiliary_head=dict(
            type='mmseg.FCNHead',
            in_channels=256,
            in_index=2,
            channels=64,
            num_convs=1,
            concat_input=False,
            dropout_ratio=0.1,
            num_classes=150,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(type='mmseg.CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole')),
    teacher=dict(
        cfg_path='mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-160k_ade20k-512x512.py',
        pretrained=False),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='DiffKDDistiller',
        student_recorders=dict(head=dict(type='ModuleOutputs', source='decode_head.bottleneck')),
        teacher_recorders=dict(head=dict(type='ModuleOutputs', source='decode_head.bottleneck')),
        distill_losses=dict(
            loss_diffkd_head=dict(type='DiffKDLoss', student_channels=128, teacher_channels=512)),
        loss_forward_mappings=dict(
            loss_diffkd_head=dict(
                preds_S=dict(from_student=True, recorder='head'),
                preds_T=dict(from_student=False, recorder='head')))))

find_unused_parameters = False
auto_scale_lr = dict(enable=False, base_batch_size=16)
