"""Prove the environment works: the whole stack imports through diffkd_mm, mmcv's compiled ops
run, and one DiffKD distillation training step runs on toy models. Prints versions and losses.

    .venv/bin/python tools/check_env.py
"""
import importlib
import sys
import time


def main() -> int:
    t0 = time.perf_counter()
    import diffkd_mm
    from diffkd_mm import patches
    mods = [
        'torch', 'torchvision', 'numpy', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain',
        'mmrazor'
    ]
    for name in [
            'mmrazor.models', 'mmrazor.engine', 'mmdet.models', 'mmseg.models', 'mmpretrain.models'
    ] + mods:
        importlib.import_module(name)
    print('versions: ' + ', '.join(f'{m} {sys.modules[m].__version__}'
                                   for m in mods) + f', diffkd_mm {diffkd_mm.__version__}')
    print('mmrazor quantization stand-in: ' +
          ('active (' + type(patches.QUANTIZATION_IMPORT_ERROR).__name__ +
           ')' if patches.QUANTIZATION_IMPORT_ERROR else 'not needed'))

    import torch
    from mmcv.ops import nms
    _, keep = nms(torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10]]), torch.tensor([0.9, 0.8]), 0.5)
    print(f'mmcv.ops.nms: keeps {keep.tolist()}')

    from mmengine.optim import OptimWrapper

    from diffkd_mm.testing import toy_batch, toy_distill_cfg
    from mmrazor.registry import MODELS
    torch.manual_seed(0)
    algo = MODELS.build(toy_distill_cfg())
    log_vars = algo.train_step(toy_batch(), OptimWrapper(torch.optim.SGD(algo.parameters(), 0.1)))
    print('one DiffKD train step on toy models: ' + ', '.join(f'{k}={float(v.detach()):.4f}'
                                                              for k, v in log_vars.items()))
    print(f'environment OK in {time.perf_counter() - t0:.1f}s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
