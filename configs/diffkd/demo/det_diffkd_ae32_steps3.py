# Cheaper DiffKD, both savings at once: a 32-channel AE latent (half the teacher's 64) and 3 DDIM
# steps; the setting the COCO configs take at 256 channels (128-channel latent, 3 steps).
_base_ = ['./det_diffkd.py']
model = dict(
    distiller=dict(distill_losses=dict(loss_diffkd=dict(ae_channels=32, inference_steps=3))))
