# DiffKD on all FPN levels: FCOS R101-caffe -> FCOS R50-caffe (GN head, multi-scale 640-800 train),
# COCO 2x, 8 GPUs x 2 images: mmdet's own 2x FCOS recipe for both.
_base_ = ['./diffkd_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py']

teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/fcos/fcos_r101_caffe_fpn_gn-head_mstrain_640-800_2x_coco/fcos_r101_caffe_fpn_gn-head_mstrain_640-800_2x_coco-511424d6.pth'  # noqa: E501

model = dict(
    architecture=dict(cfg_path='mmdet::fcos/fcos_r50-caffe_fpn_gn-head_ms-640-800-2x_coco.py'),
    teacher=dict(cfg_path='mmdet::fcos/fcos_r101-caffe_fpn_gn-head_ms-640-800-2x_coco.py'),
    teacher_ckpt=teacher_ckpt)

# The FCOS recipe: lr 0.01, no bias decay, doubled bias lr, gradient clipping; its multi-scale
# training pipeline. Caffe-style backbones take BGR images without std scaling: the algorithm
# uses the student's data_preprocessor, and both are caffe-style here.
optim_wrapper = dict(
    optimizer=dict(lr=0.01),
    paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.),
    clip_grad=dict(max_norm=35, norm_type=2))
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomChoiceResize', scales=[(1333, 640), (1333, 800)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
