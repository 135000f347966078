"""Pictures of DiffKD at work: student / denoised student / teacher feature, per level.

For a DiffKD distillation config and checkpoint, runs teacher, student and the DiffKD branch of
each level on the first images of the validation set, and saves one PNG per level (the same
picture the demo report shows).

    python tools/analysis_tools/visualize_denoising.py CONFIG CHECKPOINT --out-dir vis/
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, load_checkpoint

import diffkd_mm  # noqa: F401  (mmrazor stand-in + registrations first)
from diffkd_mm.engine import CheckpointGuard, exit_on_checkpoint_error
from diffkd_mm.visualization import denoising_figure, record_denoising
from mmrazor.registry import MODELS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='a DiffKD distillation config')
    parser.add_argument('checkpoint', help='a checkpoint of that config (from tools/train.py)')
    parser.add_argument(
        '--out-dir',
        default='work_dirs/denoising_vis',
        help='folder for the PNGs (default: work_dirs/denoising_vis)')
    parser.add_argument(
        '--num-images', type=int, default=4, help='validation images to show (default 4)')
    parser.add_argument(
        '--loss-name',
        default=None,
        help='the DiffKDLoss entry of distill_losses (default: the first)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. val_dataloader.dataset.data_root=...')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        sys.exit(f'checkpoint: {args.checkpoint} does not exist')
    if args.num_images < 1:
        sys.exit(f'--num-images must be >= 1, got {args.num_images}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    losses = cfg.get('model', {}).get('distiller', {}).get('distill_losses', {})
    names = [n for n, c in losses.items() if c.get('type') == 'DiffKDLoss']
    if not names:
        sys.exit(f'{args.config}: model.distiller.distill_losses has no DiffKDLoss entry')
    name = args.loss_name or names[0]
    if name not in names:
        sys.exit(f'--loss-name: {name!r} is not a DiffKDLoss entry; expected one of {names}')

    cfg.model.teacher_ckpt = None  # the checkpoint holds the teacher's weights
    cfg.val_dataloader.batch_size = args.num_images
    cfg.val_dataloader.num_workers = 0
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmrazor')):
        algorithm = MODELS.build(cfg.model)
        loader = Runner.build_dataloader(cfg.val_dataloader)
    # safe loading; a checkpoint of another model stops with its key prefixes
    with exit_on_checkpoint_error(), CheckpointGuard(cfg, names={args.checkpoint: 'checkpoint'}):
        load_checkpoint(algorithm, args.checkpoint, map_location='cpu', strict=True)
    batch = next(iter(loader))
    os.makedirs(args.out_dir, exist_ok=True)
    loss = algorithm.distiller.distill_losses[name]
    for level in range(loss.num_levels):
        record = record_denoising(algorithm, batch, name, level=level)
        path = osp.join(args.out_dir, f'{name}_level{level}.png')
        denoising_figure(record, path, max_images=args.num_images)
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
