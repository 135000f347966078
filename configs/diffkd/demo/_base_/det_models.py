# The demo's detectors: RetinaNet with a ResNet-18 backbone and an FPN on C3-C5 (P3-P5, strides
# 8/16/32), trained from scratch. The shapes are 18-51 px wide on 128x128 images, so three levels
# cover them and P6/P7 would only add cost; the anchors are scaled to match (octave base 2, 3
# scales per octave: 16-25 px at P3, 32-50 px at P4, 64-101 px at P5). The teacher has the
# standard backbone widths (64..512) and a 64-channel FPN and head; the student an eighth of the
# backbone widths (8..64) and a 16-channel FPN and head: at convergence a quarter-width student
# came too close to the teacher for distillation to show, an eighth-width one leaves a gap of
# more than 5 points (docs/results/2026-12-02_convergence_sizing.md). From scratch, the
# backbone BN layers train (norm_eval=False) and the head convs carry GroupNorm: without it the
# quarter-width student's classifier collapsed to all-background (no detection at all after 400
# iterations).
# Every type carries its scope (mmdet.) so that the same dicts build under mmrazor's scope too.
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='mmdet.DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=32)


def _detector(width, fpn_channels):
    return dict(
        type='mmdet.RetinaNet',
        data_preprocessor=data_preprocessor,
        backbone=dict(
            type='mmdet.ResNet',
            depth=18,
            base_channels=width,
            num_stages=4,
            out_indices=(1, 2, 3),
            frozen_stages=-1,
            norm_cfg=norm_cfg,
            norm_eval=False,
            style='pytorch'),
        neck=dict(
            type='mmdet.FPN',
            in_channels=[width * 2, width * 4, width * 8],
            out_channels=fpn_channels,
            num_outs=3),
        bbox_head=dict(
            type='mmdet.RetinaHead',
            num_classes=3,
            in_channels=fpn_channels,
            stacked_convs=4,
            feat_channels=fpn_channels,
            norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
            anchor_generator=dict(
                type='mmdet.AnchorGenerator',
                octave_base_scale=2,
                scales_per_octave=3,
                ratios=[0.5, 1.0, 2.0],
                strides=[8, 16, 32]),
            bbox_coder=dict(
                type='mmdet.DeltaXYWHBBoxCoder',
                target_means=[.0, .0, .0, .0],
                target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(
                type='mmdet.FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='mmdet.L1Loss', loss_weight=1.0)),
        train_cfg=dict(
            assigner=dict(
                type='mmdet.MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.4,
                min_pos_iou=0,
                ignore_iof_thr=-1,
                iou_calculator=dict(type='mmdet.BboxOverlaps2D')),
            sampler=dict(type='mmdet.PseudoSampler'),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        test_cfg=dict(
            nms_pre=1000,
            min_bbox_size=0,
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=100))


teacher_model = _detector(width=64, fpn_channels=64)
#: The student's width (its FPN's and head's channels): what the distillation configs map from.
student_fpn_channels = 16
student_model = _detector(width=8, fpn_channels=student_fpn_channels)
# The student's FPN levels (16 channels) mapped to the teacher's width (64) by a learned 1x1 conv,
# one connector per level: what FitNet and PKD compare (they need equal channels).
student_projections = {
    f'student_proj{i}':
    dict(
        type='ConvModuleConnector',
        in_channel=student_fpn_channels,
        out_channel=64,
        kernel_size=1,
        norm_cfg=None,
        act_cfg=None)
    for i in range(3)
}
del _detector
