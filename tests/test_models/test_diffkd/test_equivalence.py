"""DiffKD computes what it computed before its loss and connectors were composed of shared parts.

``tests/data/diffkd_golden.pt`` holds, for fixed weights, inputs and seeds, the losses, the
logged terms and every gradient of the earlier code (``tests/data/make_diffkd_golden.py``): the
loss entry on features with the AE, an FPN tuple on the raw scale, a shared branch, logits with
KL, tokens with a registered matching loss, and the connector style (AE + PKD + the diffusion
entry) in a distiller. The weights are loaded under their earlier names, so the test also checks
that checkpoints written by that code still load.
"""
import importlib.util
import os.path as osp
import re

import pytest
import torch
from mmengine.logging import MessageHub

import diffkd_mm.testing  # noqa: F401  (ToyClassifier)
from diffkd_mm.models import DiffKDLoss
from diffkd_mm.models.diffkd.branch import LEGACY_BRANCH_KEYS
from diffkd_mm.models.diffkd.legacy_keys import rename_key

DATA = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'data')
GOLDEN = torch.load(osp.join(DATA, 'diffkd_golden.pt'), weights_only=True)
_spec = importlib.util.spec_from_file_location('make_golden',
                                               osp.join(DATA, 'make_diffkd_golden.py'))
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)


def loss_entry_name(name: str) -> str:
    """A gradient's name in the fixture -> today's: the branch's keys moved into its sides."""
    match = re.match(r'(param\.branches\.\d+\.)(.*)', name)
    return match[1] + rename_key(match[2], LEGACY_BRANCH_KEYS) if match else name


def connector_name(name: str) -> str:
    """Likewise for the connector style: the teacher connector's AEs moved into its targets, the
    student connector's branches were renamed denoisers."""
    name = re.sub(r'\.autoencoders\.(\d+)\.', r'.targets.\1.autoencoder.', name)
    return re.sub(r'(connectors\.diffkd_s)\.branches\.', r'\1.denoisers.', name)


def assert_grads(actual, expected, rename):
    """Every gradient as the fixture has it, to 1e-5 of itself or of its module's largest
    gradient: the bias of a convolution followed by batch norm has an exact gradient of 0, and
    what is computed is rounding noise (~1e-6) that depends on the number of threads."""
    expected = {rename(name): grad for name, grad in expected.items()}
    assert set(actual) == set(expected), set(actual) ^ set(expected)
    largest = {}
    for name, grad in expected.items():
        module = name.rsplit('.', 2)[0]
        largest[module] = max(largest.get(module, 0.0), float(grad.abs().max()))
    for name, grad in expected.items():
        atol = max(1e-6, 1e-5 * largest[name.rsplit('.', 2)[0]])
        torch.testing.assert_close(actual[name], grad, rtol=1e-5, atol=atol, msg=name)


@pytest.mark.parametrize('name', list(make_golden.LOSS_CASES))
def test_loss_entry_outputs_and_gradients_are_unchanged(name):
    kwargs, _, _ = make_golden.LOSS_CASES[name]
    golden = GOLDEN[name]
    loss = DiffKDLoss(**kwargs)
    loss.load_state_dict(golden['state'])
    loss.bind_entry('loss_case')
    fs = [f.clone().requires_grad_() for f in golden['student']]
    ft = golden['teacher']
    hub = MessageHub.get_instance(f'equivalence_{name}')
    torch.manual_seed(2)
    total = loss(fs if len(fs) > 1 else fs[0], ft if len(ft) > 1 else ft[0])
    total.backward()
    torch.testing.assert_close(total.detach(), golden['total'], rtol=1e-5, atol=1e-6)
    for key, value in golden['logged'].items():
        assert hub.get_scalar(key).current() == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert_grads(make_golden._grads(loss, fs), golden['grads'], loss_entry_name)


def test_connector_style_outputs_and_gradients_are_unchanged():
    golden = GOLDEN['connectors_ae_pkd']
    torch.manual_seed(0)
    from mmrazor.registry import MODELS
    algo = MODELS.build(make_golden.connector_cfg())
    algo.train()
    algo.load_state_dict(golden['state'])
    hub = MessageHub.get_instance('equivalence_connectors')
    torch.manual_seed(2)
    losses = algo(**algo.data_preprocessor(make_golden.toy_batch(), True), mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert set(losses) == set(golden['losses'])
    for key, value in golden['losses'].items():
        torch.testing.assert_close(losses[key].detach(), value, rtol=1e-5, atol=1e-6, msg=key)
    for key, value in golden['logged'].items():
        assert hub.get_scalar(key).current() == pytest.approx(value, rel=1e-5, abs=1e-6), key
    grads = {f'param.{n}': p.grad for n, p in algo.named_parameters() if p.grad is not None}
    assert_grads(grads, golden['grads'], connector_name)
