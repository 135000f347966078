# DiffKD plus a pull of the student towards its own denoised feature (denoised_pull_weight=1):
# the projected student feature is matched, standardised, with the refined (denoised) feature,
# which is detached, so the student carries the correction the denoiser found instead of the
# denoiser absorbing it. Weight 1, as DiffKD's own term, chosen before any run; everything
# else as det_diffkd.py.
_base_ = ['./det_diffkd.py']
model = dict(distiller=dict(distill_losses=dict(loss_diffkd=dict(denoised_pull_weight=1.0))))
