# DiffKD on the teacher's raw feature scale (target_norm=None, as the official code): the target
# is the teacher's FPN feature itself, not its per-channel standardisation. Kept to measure the
# deviation; everything else as det_diffkd.py.
_base_ = ['./det_diffkd.py']
model = dict(distiller=dict(distill_losses=dict(loss_diffkd=dict(target_norm=None))))
