# DiffKD with a denoiser the KD term cannot reshape: the noise predictor learns from its
# diffusion loss only (kd_trains_predictor=False), first on the teacher alone for 100 iterations
# (DiffKDWarmupHook); the DDIM loop runs on a moving average of its weights (kd_predictor_ema,
# momentum 0.99: a time constant of 100 of the 2000 iterations); and the start point is the
# variance-preserving forward process at the loop's first timestep (start_noise='vp') instead of
# the learned noise adapter, which the KD term teaches to drop the noise. Settings chosen before
# any run; everything else as det_diffkd.py.
_base_ = ['./det_diffkd.py']
model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_diffkd=dict(kd_trains_predictor=False, kd_predictor_ema=0.99, start_noise='vp'))))
custom_hooks = [dict(type='TorchRNGStateHook'), dict(type='DiffKDWarmupHook', iters=100)]
