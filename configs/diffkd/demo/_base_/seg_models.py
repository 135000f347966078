# The demo's segmentors: Semantic FPN (ResNetV1c-18 backbone, FPN neck, FPN head at stride 4),
# which resolves small shapes on 128x128 images at a fraction of a dilated network's cost. The
# teacher has the standard backbone widths (64..512) and a 64-channel FPN; the student an eighth
# of the backbone widths (8..64) and a 16-channel FPN: at convergence a quarter-width student
# came too close to the teacher for distillation to show, an eighth-width one leaves a gap of
# more than 5 points (docs/results/2026-12-02_convergence_sizing.md). The cross-entropy weighs
# background pixels (~90% of each image) at 0.3, so that the shapes are not drowned out in a
# short schedule.
# Every type carries its scope (mmseg.) so that the same dicts build under mmrazor's scope too.
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='mmseg.SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(128, 128))


def _segmentor(width, fpn_channels):
    return dict(
        type='mmseg.EncoderDecoder',
        data_preprocessor=data_preprocessor,
        backbone=dict(
            type='mmseg.ResNetV1c',
            depth=18,
            stem_channels=width,
            base_channels=width,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            norm_cfg=norm_cfg),
        neck=dict(
            type='mmseg.FPN',
            in_channels=[width, width * 2, width * 4, width * 8],
            out_channels=fpn_channels,
            num_outs=4),
        decode_head=dict(
            type='mmseg.FPNHead',
            in_channels=[fpn_channels] * 4,
            in_index=[0, 1, 2, 3],
            feature_strides=[4, 8, 16, 32],
            channels=fpn_channels,
            dropout_ratio=0.0,
            num_classes=4,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(
                type='mmseg.CrossEntropyLoss',
                use_sigmoid=False,
                loss_weight=1.0,
                class_weight=[0.3, 1.0, 1.0, 1.0])),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


teacher_model = _segmentor(width=64, fpn_channels=64)
#: The student's width (its FPN's channels): what the distillation configs map from.
student_fpn_channels = 16
student_model = _segmentor(width=8, fpn_channels=student_fpn_channels)
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
    for i in range(4)
}
del _segmentor
