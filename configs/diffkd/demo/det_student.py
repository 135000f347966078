# Demo student without distillation: RetinaNet, ResNet-18 at a quarter width (16..128 channels).
_base_ = ['./_base_/det_runtime.py', './_base_/det_models.py']
model = {{_base_.student_model}}
