# Demo student without distillation: RetinaNet, ResNet-18 at an eighth of the width (8..64).
_base_ = ['./_base_/det_runtime.py', './_base_/det_models.py']
model = {{_base_.student_model}}
