# DiffKD on all FPN levels: GFL R101 (ms-2x teacher, 44.7 AP) -> GFL R50, COCO, 8 GPUs x 2 images.
# 1x schedule, like the mmrazor anchor it is compared with (CWD, 41.9 AP), not 2x.
_base_ = ['./diffkd_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py']

teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/gfl/gfl_r101_fpn_mstrain_2x_coco/gfl_r101_fpn_mstrain_2x_coco_20200629_200126-dd12f847.pth'  # noqa: E501

model = dict(
    architecture=dict(cfg_path='mmdet::gfl/gfl_r50_fpn_1x_coco.py'),
    teacher=dict(cfg_path='mmdet::gfl/gfl_r101_fpn_ms-2x_coco.py'),
    teacher_ckpt=teacher_ckpt)

# mmdet's 1x schedule (12 epochs, steps at 8 and 11) in place of the inherited 2x one.
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=0.01))
