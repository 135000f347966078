# Demo student without distillation: ResNetV1c-18 at a quarter width (16..128 channels).
_base_ = ['./_base_/seg_runtime.py', './_base_/seg_models.py']
model = {{_base_.student_model}}
