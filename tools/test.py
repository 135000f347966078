"""Test (evaluate) a checkpoint with mmengine: a distillation checkpoint evaluates its student.

Imports diffkd_mm first, for the mmrazor compatibility layer and DiffKD's registrations.
"""
import argparse
import os
import os.path as osp
import sys

import diffkd_mm  # noqa: F401  (compat layer + registrations: must come before mmrazor)
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from diffkd_mm.engine import setup_cpu_distributed
from mmrazor.utils import register_all_modules


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint with mmengine.')
    parser.add_argument('config', help='path of the config file')
    parser.add_argument('checkpoint', help='checkpoint to evaluate (a distillation checkpoint '
                        'evaluates the student; an exported student loads into its task config)')
    parser.add_argument('--work-dir', help='directory for the logs and metrics '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. test_dataloader.batch_size=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher for distributed evaluation')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help='set by torch.distributed.launch (torchrun uses LOCAL_RANK)')
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    # See tools/train.py: mmengine checkpoints need torch's pre-2.6 loading (trusted files only).
    os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    if not osp.isfile(args.checkpoint):
        sys.exit(f'checkpoint: {args.checkpoint} does not exist')
    register_all_modules(False)
    cfg = Config.fromfile(args.config)
    if 'model' not in cfg:
        sys.exit(f'{args.config}: the config defines no `model`; is it a model config?')
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if cfg.model.get('teacher_ckpt'):
        cfg.model.teacher_ckpt = None  # the checkpoint holds the teacher too; no download
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    runner.test()


if __name__ == '__main__':
    main()
