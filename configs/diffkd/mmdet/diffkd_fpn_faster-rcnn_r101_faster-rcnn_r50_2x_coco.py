# DiffKD on all FPN levels (P2-P6, 256 channels): Faster R-CNN R101 (teacher) -> R50 (student).
# COCO 2017, 2x schedule, 8 GPUs x 2 images (total batch 16, SGD lr 0.02), as mmdet's 2x recipe.
# The other detection configs in this folder inherit from this one.
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py', 'mmdet::_base_/schedules/schedule_2x.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['diffkd_mm'], allow_failed_imports=False)
# Checkpoints carry torch's random state, so that a resumed run draws DiffKD's noise as the
# uninterrupted run would.
custom_hooks = [dict(type='TorchRNGStateHook')]

teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r101_fpn_2x_coco/faster_rcnn_r101_fpn_2x_coco_bbox_mAP-0.398_20200504_210455-1d2dac9c.pth'  # noqa: E501

model = dict(
    _scope_='mmrazor',
    # The teacher only runs backbone + neck: all that FPN distillation needs.
    type='FpnTeacherDistill',
    architecture=dict(
        cfg_path='mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py',
        pretrained=False),  # the student starts from its ImageNet backbone (init_cfg)
    teacher=dict(cfg_path='mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py',
                 pretrained=False),  # weights come from teacher_ckpt
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='DiffKDDistiller',
        student_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        teacher_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        # One entry for the whole FPN tuple: one DiffKD branch per level (denoiser, adapter,
        # projections), the terms summed over levels and logged as loss_diffkd_fpn_{kd,ddim,ae}.
        # Settings from the demo (docs/demo.md, docs/benchmarks.md):
        # * target_norm='channel': each teacher channel standardised first, so every term is of
        #   order 1 on any teacher (an untrained R101's FPN reaches 1e5) and the weights below
        #   mean the same on every network;
        # * ae_channels=128 and 3 DDIM steps: the denoiser works on half the channels for 3
        #   steps, which keeps an iteration within 1.15x of FitNet's (5 steps without AE:
        #   1.26-1.38x); the demo's variant of the same kind (half-width AE,
        #   3 steps) is in docs/demo.md;
        # * KD weight 1: the best of {1, 3, 10} on the embedded detection benchmark's
        #   held-out seed; diffusion and AE terms 1, as the official code.
        distill_losses=dict(
            loss_diffkd_fpn=dict(
                type='DiffKDLoss',
                student_channels=256,
                teacher_channels=256,
                num_levels=5,
                kernel_size=3,
                target_norm='channel',
                ae_channels=128,
                inference_steps=3,
                loss_weight=1.0,
                ddim_loss_weight=1.0,
                ae_loss_weight=1.0)),
        loss_forward_mappings=dict(
            loss_diffkd_fpn=dict(
                preds_S=dict(from_student=True, recorder='fpn'),
                preds_T=dict(from_student=False, recorder='fpn')))))

# Gradient clipping at 35, as the FPN distillation protocol of MasKD / FreeKD (mmdet 2.x) trains
# its students; the rest of the optimiser is mmdet's 2x recipe (SGD, lr 0.02 for batch 16).
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))

# Every DiffKD parameter takes part in every loss, and the frozen teacher has no trainable ones:
# DDP needs no search for unused parameters.
find_unused_parameters = False

# The lr above is for a total batch of 16 (8 GPUs x 2). On fewer GPUs, pass --auto-scale-lr to
# scale it linearly; tools/train.py warns when the batch differs and the lr is not scaled.
auto_scale_lr = dict(enable=False, base_batch_size=16)
