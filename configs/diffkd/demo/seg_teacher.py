# Demo teacher: Semantic FPN, ResNetV1c-18 (64..512 channels), 64-channel FPN and FPN head, on the
# synthetic shapes.
_base_ = ['./_base_/seg_runtime.py', './_base_/seg_models.py']
model = {{_base_.teacher_model}}
