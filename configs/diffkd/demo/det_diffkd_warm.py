# DiffKD whose noise predictors are first trained on the teacher alone for 100 iterations
# (DiffKDWarmupHook, cached per teacher and settings); everything else as det_diffkd.py.
_base_ = ['./det_diffkd.py']
custom_hooks = [dict(type='TorchRNGStateHook'), dict(type='DiffKDWarmupHook', iters=100)]
