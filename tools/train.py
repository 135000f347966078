"""Train a DiffKD distillation (or any mmrazor/mmdet/mmseg/mmpretrain config) with mmengine.

Imports diffkd_mm first: that applies the mmrazor compatibility layer and registers DiffKD's
modules before any config is built (mmrazor's own tools/train.py fails on torch 2.x before it
reads a config).
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import diffkd_mm  # noqa: F401  (mmrazor stand-in + registrations: must come before mmrazor)
from diffkd_mm.engine import (CheckpointGuard, add_launcher_arguments, close_distributed,
                              exit_on_checkpoint_error, exit_on_full_disk,
                              find_resumable_checkpoint, load_entry_config, setup_cpu_distributed)
from mmrazor.utils import register_all_modules


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a model (DiffKD distillation included) with mmengine.')
    parser.add_argument('config', help='path of the train config file')
    parser.add_argument(
        '--work-dir',
        help='directory for logs and checkpoints '
        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, with no value, from the '
        'newest checkpoint of the work dir that loads (a cut-short one is '
        'skipped with a warning)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision: fp16 with dynamic loss scaling on GPU '
        '(AmpOptimWrapper), bf16 autocast on CPU (CPUAmpOptimWrapper)')
    parser.add_argument(
        '--allow-overwrite',
        action='store_true',
        help='start a new run in a work dir that already holds checkpoints '
        '(refused otherwise: they would be overwritten)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size over the '
        'config\'s auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_iters=10 '
        '(key=value pairs; lists as key="[a,b]")')
    add_launcher_arguments(parser, 'training')
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args) -> Config:
    cfg = load_entry_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper not in ('OptimWrapper', 'AmpOptimWrapper', 'CPUAmpOptimWrapper'):
            sys.exit(f'--amp: optim_wrapper.type is {optim_wrapper!r}; AMP needs OptimWrapper.')
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        else:  # mmengine's AmpOptimWrapper needs an accelerator
            cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
            cfg.optim_wrapper.setdefault('dtype', 'bfloat16')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            sys.exit('--auto-scale-lr: the config has no auto_scale_lr.base_batch_size.')
        cfg.auto_scale_lr.enable = True
    check_before_training(cfg, args)
    if args.resume == 'auto':  # the newest checkpoint of the work dir that loads
        with exit_on_checkpoint_error():
            found = find_resumable_checkpoint(cfg.work_dir)
        # with none, a fresh start (as mmengine does), from the config's load_from if it has one
        cfg.resume = found is not None
        cfg.load_from = found if found is not None else cfg.get('load_from', None)
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    # Checkpoints carry torch's random state, so that a resumed run repeats DiffKD's noise. Our
    # configs declare the hook; a recipe without it (an mmrazor recipe with only the loss
    # swapped) gets it here.
    hooks = cfg.get('custom_hooks', None) or []
    if not any(h.get('type') == 'TorchRNGStateHook' for h in hooks):
        cfg.custom_hooks = [*hooks, dict(type='TorchRNGStateHook')]
    return cfg


def check_before_training(cfg: Config, args) -> None:
    """Fail now, with the config key, rather than after hours of training."""
    teacher_ckpt = cfg.model.get('teacher_ckpt', None)
    if teacher_ckpt and '://' not in str(teacher_ckpt) and not osp.isfile(teacher_ckpt):
        sys.exit(f'model.teacher_ckpt: {teacher_ckpt} does not exist (expected a checkpoint '
                 'file or a URL)')
    if args.resume is not None and args.resume != 'auto' and not osp.isfile(args.resume):
        sys.exit(f'--resume: {args.resume} does not exist')
    if args.resume is None and not args.allow_overwrite and osp.isdir(cfg.work_dir):
        found = sorted(
            f for f in os.listdir(cfg.work_dir) if f.endswith('.pth') or f == 'last_checkpoint')
        if found:
            sys.exit(f'work dir {cfg.work_dir} already holds {", ".join(found[:5])}: a new run '
                     'would overwrite them. Pass --resume to continue that run, another '
                     '--work-dir, or --allow-overwrite.')


def warn_if_batch_differs(runner: Runner, cfg: Config) -> None:
    """Say so when the run's total batch is not the one the recipe's lr was set for.

    A 1-GPU run of an 8-GPU recipe silently trains with 1/8 of the batch at the full lr, which
    is known to cost segmentation recipes several mIoU; --auto-scale-lr scales the lr instead.
    """
    base = cfg.get('auto_scale_lr', {}).get('base_batch_size')
    if base is None or 'train_dataloader' not in cfg:
        return
    total = runner.world_size * cfg.train_dataloader.batch_size
    if total != base and not cfg.auto_scale_lr.get('enable', False):
        runner.logger.warning(
            f'The total batch is {runner.world_size} GPU(s) x {cfg.train_dataloader.batch_size} '
            f'= {total}, but the recipe\'s lr is for auto_scale_lr.base_batch_size={base}. '
            'The lr is NOT scaled: pass --auto-scale-lr to scale it linearly, or run with the '
            'recipe\'s number of GPUs.')


def main(argv=None):
    args = parse_args(argv)
    register_all_modules(False)
    cfg = build_config(args)
    try:  # torchrun without GPUs: gloo; does nothing when CUDA exists
        setup_cpu_distributed(cfg)
    except ValueError as err:
        sys.exit(str(err))
    names = {cfg.load_from: '--resume'} if cfg.get('resume') and cfg.load_from else {}
    # Safe loading of --resume, load_from, teacher_ckpt and init_cfg weights, atomic saving
    # (see docs/install.md); a refused or unusable checkpoint, or a full disk during a save, ends
    # the run with one message.
    resume_advice = ('Free some space, then run the same command with --resume: training '
                     'continues from the last checkpoint that was saved.')
    with exit_on_full_disk(resume_advice), exit_on_checkpoint_error(), \
            CheckpointGuard(cfg, names=names):
        runner = Runner.from_cfg(cfg)
        warn_if_batch_differs(runner, cfg)
        runner.train()
    del runner  # its model wrapper holds the process group: close_distributed frees both
    close_distributed()


if __name__ == '__main__':
    main()
