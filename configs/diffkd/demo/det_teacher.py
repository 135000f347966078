# Demo teacher: RetinaNet, ResNet-18 (64..512 channels), FPN P3-P5, on the synthetic shapes.
_base_ = ['./_base_/det_runtime.py', './_base_/det_models.py']
model = {{_base_.teacher_model}}
