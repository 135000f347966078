# DiffKD on all FPN levels: RetinaNet X101-64x4d (1x teacher, 41.0 AP) -> RetinaNet R50, COCO 2x,
# 8 GPUs x 2 images. The pair and schedule of mmrazor's PKD (40.8) and MGD (41.0) configs.
_base_ = ['./diffkd_fpn_retina_r101_retina_r50_2x_coco.py']

teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_x101_64x4d_fpn_1x_coco/retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth'  # noqa: E501

model = dict(
    teacher=dict(cfg_path='mmdet::retinanet/retinanet_x101-64x4d_fpn_1x_coco.py'),
    teacher_ckpt=teacher_ckpt)
