"""Export the student of a distillation checkpoint, for its own task config.

Keeps the weights under ``architecture.`` (the student) without that prefix, and drops the
teacher, the distiller (DiffKD's modules, connectors) and the optimizer state: the result loads
into the plain mmdet / mmseg / mmpretrain student model, e.g. with ``tools/test.py``.

    python tools/model_converters/convert_kd_ckpt_to_student.py \\
        work_dirs/diffkd/iter_80000.pth work_dirs/diffkd/student.pth
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict

from diffkd_mm.engine.checkpoint import (CheckpointError, load_checkpoint_file,
                                         save_checkpoint_atomic)

STUDENT_PREFIX = 'architecture.'


def convert(checkpoint: dict) -> dict:
    """Student weights of a distillation checkpoint, keyed as the plain student's.

    Args:
        checkpoint (dict): A loaded mmengine checkpoint (with ``state_dict``) or a state dict.

    Returns:
        dict: ``{'state_dict': ..., 'meta': ...}`` for the student alone.
    """
    state_dict = checkpoint.get('state_dict', checkpoint)
    student = OrderedDict((key[len(STUDENT_PREFIX):], value) for key, value in state_dict.items()
                          if key.startswith(STUDENT_PREFIX))
    if not student:
        raise ValueError(
            f'no key starts with {STUDENT_PREFIX!r}: this is not an mmrazor distillation '
            f'checkpoint (first keys: {list(state_dict)[:5]})')
    meta = dict(checkpoint.get('meta', {}) or {})
    meta['diffkd_mm_export'] = 'student of a distillation checkpoint'
    return dict(state_dict=student, meta=meta)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', help='distillation checkpoint (from tools/train.py)')
    parser.add_argument('output', help='where to write the student checkpoint')
    parser.add_argument(
        '--force',
        action='store_true',
        help='overwrite the output file if it exists (refused otherwise)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        sys.exit(f'checkpoint: {args.checkpoint} does not exist')
    if osp.exists(args.output) and not args.force:
        sys.exit(f'output: {args.output} exists; pass --force to overwrite it')
    if osp.abspath(args.output) == osp.abspath(args.checkpoint):
        sys.exit('output: must differ from the checkpoint')
    try:  # weights_only with the allow-list of mmengine checkpoints (see docs/install.md)
        checkpoint = load_checkpoint_file(args.checkpoint)
    except CheckpointError as err:
        sys.exit(f'checkpoint: {err}')
    try:
        exported = convert(checkpoint)
    except ValueError as err:
        sys.exit(f'checkpoint: {err}')
    save_checkpoint_atomic(exported, args.output)
    dropped = len(checkpoint.get('state_dict', checkpoint)) - len(exported['state_dict'])
    print(f'wrote {args.output}: {len(exported["state_dict"])} student tensors '
          f'({dropped} teacher / distiller tensors dropped)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
