"""Test (evaluate) a checkpoint with mmengine: a distillation checkpoint evaluates its student.

Imports diffkd_mm first, for the mmrazor compatibility layer and DiffKD's registrations.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction
from mmengine.runner import Runner

import diffkd_mm  # noqa: F401  (mmrazor stand-in + registrations: must come before mmrazor)
from diffkd_mm.engine import (CheckpointGuard, add_launcher_arguments, close_distributed,
                              exit_on_checkpoint_error, load_entry_config, setup_cpu_distributed)
from mmrazor.utils import register_all_modules


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint with mmengine.')
    parser.add_argument('config', help='path of the config file')
    parser.add_argument(
        'checkpoint',
        help='checkpoint to evaluate (a distillation checkpoint '
        'evaluates the student; an exported student loads into its task config)')
    parser.add_argument(
        '--work-dir',
        help='directory for the logs and metrics '
        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. test_dataloader.batch_size=1')
    add_launcher_arguments(parser, 'evaluation')
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        sys.exit(f'checkpoint: {args.checkpoint} does not exist')
    register_all_modules(False)
    cfg = load_entry_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if cfg.model.get('teacher_ckpt'):
        cfg.model.teacher_ckpt = None  # the checkpoint holds the teacher too; no download
    setup_cpu_distributed(cfg)
    # Safe loading; a checkpoint that matches none of the model's weights stops here instead
    # of evaluating random weights.
    with exit_on_checkpoint_error(), CheckpointGuard(cfg, names={args.checkpoint: 'checkpoint'}):
        runner = Runner.from_cfg(cfg)
        runner.test()
    del runner  # its model wrapper holds the process group: close_distributed frees both
    close_distributed()


if __name__ == '__main__':
    main()
