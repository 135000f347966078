"""setup_cpu_distributed: the gloo process group takes env_cfg.dist_cfg.timeout, the longest wait of
a collective when a peer is lost, and refuses a timeout that is not seconds."""
import datetime

import pytest
import torch
from mmengine.config import Config

from diffkd_mm.engine import distributed


@pytest.fixture
def init_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(distributed.dist, 'is_initialized', lambda: False)
    monkeypatch.setattr(distributed.dist, 'init_process_group',
                        lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '2')
    return calls


def _cfg(**env_cfg):
    return Config(dict(launcher='pytorch', env_cfg=env_cfg))


def test_timeout_in_seconds_reaches_the_process_group(init_calls):
    cfg = _cfg(dist_cfg=dict(backend='nccl', timeout=90))
    assert distributed.setup_cpu_distributed(cfg)
    assert init_calls == [
        dict(backend='gloo', rank=0, world_size=2, timeout=datetime.timedelta(seconds=90))
    ]
    assert cfg.model_wrapper_cfg.type == 'CPUDistributedDataParallel'


def test_no_timeout_keeps_torch_default(init_calls):
    distributed.setup_cpu_distributed(_cfg(dist_cfg=dict(backend='nccl')))
    assert 'timeout' not in init_calls[0]


@pytest.mark.parametrize('timeout', ['10m', 0, -5, True])
def test_bad_timeout_names_the_key(init_calls, timeout):
    with pytest.raises(
            ValueError, match=r'env_cfg\.dist_cfg\.timeout must be a number of '
            'seconds > 0'):
        distributed.setup_cpu_distributed(_cfg(dist_cfg=dict(timeout=timeout)))
    assert init_calls == []
