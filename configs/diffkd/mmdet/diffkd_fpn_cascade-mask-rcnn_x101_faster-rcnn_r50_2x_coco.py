# A heterogeneous pair: Cascade Mask R-CNN X101-64x4d (20e teacher, 45.6 box AP) -> Faster R-CNN
# R50, DiffKD on all FPN levels (P2-P6, 256 channels in both), COCO 2x, 8 GPUs x 2 images.
# The teacher's heads never run (FpnTeacherDistill): only its backbone and FPN are distilled.
_base_ = ['./diffkd_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py']

teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_mask_rcnn_x101_64x4d_fpn_20e_coco/cascade_mask_rcnn_x101_64x4d_fpn_20e_coco_20200512_161033-bdb5126a.pth'  # noqa: E501

model = dict(
    teacher=dict(cfg_path='mmdet::cascade_rcnn/cascade-mask-rcnn_x101-64x4d_fpn_20e_coco.py'),
    teacher_ckpt=teacher_ckpt)
