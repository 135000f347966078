# Demo student without distillation: ResNetV1c-18 at an eighth of the width (8..64 channels).
_base_ = ['./_base_/seg_runtime.py', './_base_/seg_models.py']
model = {{_base_.student_model}}
