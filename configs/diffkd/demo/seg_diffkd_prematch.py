# DiffKD plus a match before the denoiser (student_match_weight=1): the projected student
# feature, before the noise adapter and the DDIM loop, is matched with the teacher's target,
# both standardised per channel, next to DiffKD's own match of the denoised feature. The KD
# signal then reaches the student without passing through a denoiser that can absorb it.
# Weight 1, as DiffKD's own term, chosen before any run; everything else as seg_diffkd.py.
_base_ = ['./seg_diffkd.py']
model = dict(distiller=dict(distill_losses=dict(loss_diffkd=dict(student_match_weight=1.0))))
