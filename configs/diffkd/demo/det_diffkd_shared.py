# Cheaper DiffKD in parameters: one DiffKD branch (projection, noise predictor, noise adapter,
# output projection) serves all 3 FPN levels instead of one branch per level.
_base_ = ['./det_diffkd.py']
model = dict(distiller=dict(distill_losses=dict(loss_diffkd=dict(share_branch=True))))
