# DiffKD: ResNet-50 (76.55) -> MobileNetV2, ImageNet-1k, B1 recipe (8 GPUs x 32, SGD 0.1 with
# Nesterov momentum and no decay on norms and biases, as the base config; 100 epochs, steps at
# 30/60/90). The paper's pair is ResNet-50 -> MobileNetV1 (73.24 in the
# official code); mmpretrain 1.2 has no MobileNetV1, so the student is MobileNetV2 (its 71.86 in
# mmpretrain's zoo is from a 300-epoch recipe: not a baseline for this one).
# Features: teacher layer4 (2048, 7x7, compressed to 1024 by the AE) and the student's last conv
# `backbone.conv2` (1280, 7x7), as the official KD_MODULES for tv_mobilenet_v2 (features.18).
_base_ = ['./diffkd_layer4-logits_resnet34_resnet18_8xb32_in1k.py']

teacher_ckpt = 'https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth'  # noqa: E501

model = dict(
    architecture=dict(cfg_path='mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'),
    teacher=dict(cfg_path='mmpretrain::resnet/resnet50_8xb32_in1k.py'),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        student_recorders=dict(feat=dict(source='backbone.conv2')),
        teacher_recorders=dict(feat=dict(source='backbone.layer4')),
        distill_losses=dict(loss_diffkd_feat=dict(student_channels=1280, teacher_channels=2048))))
