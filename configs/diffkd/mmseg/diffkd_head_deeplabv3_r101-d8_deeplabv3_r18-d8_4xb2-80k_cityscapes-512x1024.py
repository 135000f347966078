# DiffKD on the decode-head feature (ASPP bottleneck output: teacher 512, student 128 channels):
# DeepLabV3 R101-d8 -> DeepLabV3 R18-d8, Cityscapes 512x1024, 80k
# iterations, 4 GPUs x 2 images.
_base_ = ['./diffkd_head_pspnet_r101-d8_pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py']

teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r101-d8_512x1024_80k_cityscapes/deeplabv3_r101-d8_512x1024_80k_cityscapes_20200606_113503-9e428899.pth'  # noqa: E501

model = dict(
    architecture=dict(cfg_path='mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py'),
    teacher=dict(cfg_path='mmseg::deeplabv3/deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024.py'),
    teacher_ckpt=teacher_ckpt)
