"""Checkpoint loading without the tools: what the restricted unpickler lets through, and how a
file is traced back to the config key that named it."""
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer

from diffkd_mm.engine.checkpoint import UnsafeCheckpointError, find_config_key, load_checkpoint_file


def test_getattr_stand_in_reaches_nothing_but_statistics(tmp_path):
    """``getattr`` is allowed only as far as a HistoryBuffer's statistics methods need it."""

    class Reach:

        def __reduce__(self):
            return getattr, (HistoryBuffer, '__init__')

    path = tmp_path / 'reach.pth'
    torch.save(dict(x=Reach()), path)
    with pytest.raises(UnsafeCheckpointError, match='builtins.getattr'):
        load_checkpoint_file(str(path))
    buf = HistoryBuffer()
    buf.update(1.5)
    torch.save(dict(buf=buf), path)
    assert load_checkpoint_file(str(path))['buf'].mean() == 1.5


def test_config_key_found_in_cfg_path_models():
    """Pretrained weights named in an mmseg config that the distillation config takes by
    cfg_path are reported with that key and file."""
    cfg = Config(
        dict(
            model=dict(
                architecture=dict(
                    cfg_path='mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py'),
                teacher_ckpt='t.pth')))
    assert find_config_key(cfg, 't.pth') == 'model.teacher_ckpt'
    assert find_config_key(cfg, 'open-mmlab://resnet18_v1c') == (
        'model.architecture.pretrained '
        '(in mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py)')
    assert find_config_key(cfg, 'other.pth') is None
