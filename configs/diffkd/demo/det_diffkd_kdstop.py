# DiffKD whose KD term does not train the noise predictor's weights (kd_trains_predictor=False):
# the predictor learns from its diffusion loss only, the KD gradient still reaches the student
# through it; everything else as det_diffkd.py.
_base_ = ['./det_diffkd.py']
model = dict(distiller=dict(distill_losses=dict(loss_diffkd=dict(kd_trains_predictor=False))))
