# Cheaper DiffKD: a linear autoencoder compresses each teacher level (64 channels) to a 32-channel
# BatchNorm latent, the target the student is denoised towards (the official recipe's AE, here
# narrower than the teacher); the denoiser runs on 32 channels instead of 64.
_base_ = ['./det_diffkd.py']
model = dict(distiller=dict(distill_losses=dict(loss_diffkd=dict(ae_channels=32))))
