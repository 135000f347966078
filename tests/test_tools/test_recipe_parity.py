"""Our ImageNet R34 -> R18 DiffKD config against the official training step's numbers.

``tests/data/recipe_parity_r34_r18.json`` holds the official step (hunto/image_classification_sota,
``diffkd_b1.yaml``), written by ``tools/analysis_tools/recipe_parity.py --write-golden`` from the
same weights, batch and noise; CI has no copy of the official code, so our side is checked
against those numbers: each loss term, every gradient and every weight after one optimizer step.
"""
import json
import os.path as osp

import pytest

from diffkd_mm import recipe_parity as parity

pytestmark = pytest.mark.slow  # two ResNets and two DiffKD modules in float64: about 20 s

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GOLDEN = osp.join(ROOT, 'tests', 'data', 'recipe_parity_r34_r18.json')
TOLERANCE = 1e-5


def worst_errors(result: parity.StepResult, golden: dict) -> dict:
    """``{quantity: (worst relative difference, where)}`` of our step against the golden one."""
    worst = {
        f'loss {name}': (abs(result.terms[name] - value) / abs(value), name)
        for name, value in golden['terms'].items()
    }
    for what, ours in (('grads', result.grads), ('weights', result.weights)):
        assert set(ours) == set(golden[what]), set(ours) ^ set(golden[what])
        floors = parity.group_floors({n: fp['max_abs'] for n, fp in golden[what].items()})
        errors = {
            name: parity.fingerprint_error(ours[name], fp, floors[name])
            for name, fp in golden[what].items()
        }
        for group, found in parity.worst_by_group(errors).items():
            worst[f'{what} {group}'] = found
    return worst


@pytest.fixture(scope='module')
def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def test_our_config_computes_the_official_training_step(golden):
    settings = parity.StepSettings(**golden['settings'])
    worst = worst_errors(parity.run_our_step(settings), golden)
    assert set(worst) >= {'grads student', 'grads loss_diffkd_feat', 'weights loss_diffkd_logits'}
    assert all(error <= TOLERANCE for error, _ in worst.values()), worst


def test_the_check_sees_the_optimizer_the_official_recipe_does_not_use(golden, tmp_path):
    """mmpretrain's ImageNet schedule as it is (no Nesterov, weight decay on every parameter):
    the losses and gradients are the official ones, the weights after the step are not."""
    config = tmp_path / 'stock_optimizer.py'
    config.write_text(f'_base_ = [{osp.join(ROOT, parity.CONFIG)!r}]\n'
                      'optim_wrapper = dict(_delete_=True, optimizer=dict(type="SGD", lr=0.1, '
                      'momentum=0.9, weight_decay=1e-4))\n')
    settings = parity.StepSettings(**golden['settings'])
    worst = worst_errors(parity.run_our_step(settings, str(config)), golden)
    assert all(error <= TOLERANCE for key, (error, _) in worst.items() if key.startswith('grads'))
    assert worst['weights student'][0] > 1e-2, worst['weights student']
