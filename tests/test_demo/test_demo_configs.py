"""The demo configs describe the data the generator draws (its classes and palette)."""
import os.path as osp

import pytest
from mmengine.config import Config

import diffkd_mm
from diffkd_mm.datasets import CLASSES, SEG_CLASSES, SEG_PALETTE

DEMO = osp.join(
    osp.dirname(osp.abspath(osp.dirname(diffkd_mm.__file__))), 'configs', 'diffkd', 'demo')


@pytest.mark.parametrize('name, classes, palette', [
    ('det_student.py', CLASSES, None),
    ('det_diffkd.py', CLASSES, None),
    ('seg_student.py', SEG_CLASSES, SEG_PALETTE),
    ('seg_diffkd.py', SEG_CLASSES, SEG_PALETTE),
])
def test_demo_configs_name_the_generated_classes_and_palette(name, classes, palette):
    cfg = Config.fromfile(osp.join(DEMO, name))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        metainfo = cfg[loader]['dataset']['metainfo']
        assert tuple(metainfo['classes']) == tuple(classes), (name, loader)
        if palette is not None:
            assert [list(c) for c in metainfo['palette']] == palette, (name, loader)
