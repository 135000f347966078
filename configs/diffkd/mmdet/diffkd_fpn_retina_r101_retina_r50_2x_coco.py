# DiffKD on all FPN levels (P3-P7): RetinaNet R101 -> RetinaNet R50, COCO 2x, 8 GPUs x 2 images.
_base_ = ['./diffkd_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py']

teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r101_fpn_2x_coco/retinanet_r101_fpn_2x_coco_20200131-5560aee8.pth'  # noqa: E501

model = dict(
    architecture=dict(cfg_path='mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'),
    teacher=dict(cfg_path='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py'),
    teacher_ckpt=teacher_ckpt)

# RetinaNet's recipe: lr 0.01 for a total batch of 16.
optim_wrapper = dict(optimizer=dict(lr=0.01))
