# Cheaper DiffKD: 3 DDIM steps on the student feature instead of 5 (4 noise-predictor calls per
# level and iteration instead of 6); everything else as det_diffkd.py.
_base_ = ['./det_diffkd.py']
model = dict(distiller=dict(distill_losses=dict(loss_diffkd=dict(inference_steps=3))))
