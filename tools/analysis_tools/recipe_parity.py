"""Compare one training step of our ImageNet R34 -> R18 DiffKD recipe with the official one.

Given a local copy of the official repository (``hunto/image_classification_sota``), builds its
R34 -> R18 DiffKD training setup as its ``tools/train.py`` does for ``diffkd_b1.yaml``
(torchvision ResNets, ``KDLoss(kd_method='diffkd', use_ae=True, ae_channels=1024, tau=1)``,
``build_optimizer('sgd', lr 0.1, momentum 0.9, weight decay 1e-4)`` with its defaults) and ours
from the config through mmrazor, gives both the same weights (teacher, student, every DiffKD
module), feeds one batch with the same random state, and compares the total loss and each term,
every gradient, and every weight after one optimizer step with each side's own optimizer
settings. ::

    python tools/analysis_tools/recipe_parity.py --official /path/to/image_classification_sota
    python tools/analysis_tools/recipe_parity.py --official DIR --write-golden \\
        tests/data/recipe_parity_r34_r18.json

Prints a table (worst relative difference per compared quantity) and exits 1 when one exceeds
``--tolerance``. ``--write-golden`` stores the official side's numbers (fingerprints of every
tensor) for ``tests/test_tools/test_recipe_parity.py``, which checks our side against them where
the official code is absent.
"""
import argparse
import contextlib
import json
import os.path as osp
import subprocess
import sys
from functools import partial

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import diffkd_mm  # noqa: F401,E402  (mmrazor stand-in + registrations first)
from diffkd_mm import recipe_parity as parity  # noqa: E402
from diffkd_mm.fileio import atomic_write_text  # noqa: E402
from diffkd_mm.models.diffkd.official import convert_official_state_dict  # noqa: E402
from diffkd_mm.patches import swapped  # noqa: E402


def official_names(model, side: str) -> dict:
    """``{official name: our name}`` for every tensor of the official student (``side``
    ``'architecture'``, with its ``_diff`` DiffKD modules) or teacher (``'teacher'``)."""
    names = {}
    for key in model.state_dict():
        if key.startswith('_diff.'):
            module, rest = key[len('_diff.'):].split('.', 1)
            ours = next(iter(convert_official_state_dict({rest: None})))
            names[key] = f'distiller.distill_losses.{parity.ENTRIES[module]}.branches.0.{ours}'
        elif key.startswith('fc.'):
            names[key] = f'{side}.head.{key}'
        else:
            names[key] = f'{side}.backbone.{key}'
    return names


def build_official(repo: str, weights: dict, dtype: torch.dtype):
    """The official student, teacher, loss and optimizer, holding ``weights`` (our names)."""
    import torchvision
    sys.path.insert(0, repo)
    from lib.models.losses.kd_loss import KDLoss
    from lib.utils.optim import build_optimizer
    student, teacher = torchvision.models.resnet18(), torchvision.models.resnet34()
    on_cpu = (
        swapped(
            torch.nn.Module,
            'cuda',
            lambda module, device=None: module,
            patch='official-code-on-cpu')
        if not torch.cuda.is_available() else contextlib.nullcontext())
    with on_cpu:  # KDLoss moves its DiffKD modules with .cuda()
        kd = KDLoss(
            student,
            teacher,
            'tv_resnet18',
            'tv_resnet34',
            torch.nn.CrossEntropyLoss(),
            kd_method='diffkd',
            ori_loss_weight=1.0,
            kd_loss_weight=1.0,
            kd_loss_kwargs=dict(use_ae=True, ae_channels=1024, tau=1))
    for model, side in ((student, 'architecture'), (teacher, 'teacher')):
        names = official_names(model, side)
        model.to(dtype)
        model.load_state_dict({key: weights[names[key]] for key in names}, strict=True)
    # tools/train.py: build_optimizer(args.opt, model, args.lr, eps, momentum, weight_decay,
    # filter_bias_and_bn=not args.opt_no_filter, nesterov=not args.sgd_no_nesterov)
    optimizer = build_optimizer(
        'sgd',
        student,
        0.1,
        eps=1e-8,
        momentum=0.9,
        weight_decay=1e-4,
        filter_bias_and_bn=True,
        nesterov=True)
    return student, kd, optimizer, official_names(student, 'architecture')


def run_official_step(repo: str, settings: parity.StepSettings) -> parity.StepResult:
    algo, _ = parity.prepared_algorithm(settings)
    weights = algo.state_dict()
    student, kd, optimizer, names = build_official(repo, weights, settings.torch_dtype)
    del algo
    recorded = {}

    def record(module, args, output, key):
        recorded[key] = output

    hooks = [kd.ori_loss.register_forward_hook(partial(record, key='ce'))]
    for module, entry in parity.ENTRIES.items():
        hooks.append(kd.diff[module].register_forward_hook(partial(record, key=entry)))
        hooks.append(kd.kd_loss[module].register_forward_hook(partial(record, key=f'{entry}.kd')))
    images, labels = parity.make_batch(settings)
    student.train()
    with settings.random_draws():
        total = kd(images, labels)
    for hook in hooks:
        hook.remove()
    terms = dict(total=float(total.detach()), ce=float(recorded['ce'].detach()))
    for entry, term_names in parity.DIFFKD_TERMS.items():
        _, _, ddim, ae = recorded[entry]
        values = dict(kd=recorded[f'{entry}.kd'], ddim=ddim, ae=ae)
        for term in term_names:
            terms[f'{entry}.{term}'] = float(values[term])
    optimizer.zero_grad()
    total.backward()
    trained = [(names[n], p) for n, p in student.named_parameters() if p.grad is not None]
    grads = {name: p.grad.detach().clone() for name, p in trained}
    optimizer.step()
    return parity.StepResult(terms, grads, {name: p.detach().clone() for name, p in trained})


def compare(ours: parity.StepResult, official: parity.StepResult) -> list:
    """Rows ``(quantity, worst relative difference, where)``."""
    rows = []
    for name, value in official.terms.items():
        rows.append((f'loss {name}', abs(ours.terms[name] - value) / max(abs(value), 1e-12), ''))
    for what, mine, theirs in (('gradient', ours.grads, official.grads),
                               ('weight after the step', ours.weights, official.weights)):
        missing = set(theirs) ^ set(mine)
        if missing:
            rows.append((f'{what}: parameters on one side only', float('inf'),
                         ', '.join(sorted(missing)[:4])))
        floors = parity.group_floors({n: float(t.abs().max()) for n, t in theirs.items()})
        errors = {
            n: parity.tensor_error(mine[n], theirs[n], floors[n])
            for n in set(theirs) & set(mine)
        }
        for group, (error, name) in sorted(parity.worst_by_group(errors).items()):
            rows.append(
                (f'{what}, {group} ({sum(parity.parameter_group(n) == group for n in errors)} '
                 'tensors)', error, name))
    return rows


def official_commit(repo: str, given: str = None) -> str:
    """The commit of the official copy: ``given``, else what git says, else ``'unknown'``."""
    if given:
        return given
    try:
        found = subprocess.run(['git', '-C', repo, 'rev-parse', 'HEAD'],
                               capture_output=True,
                               text=True).stdout.strip()
    except OSError:
        found = ''
    return found or 'unknown'


def golden(official: parity.StepResult, settings: parity.StepSettings, commit: str) -> dict:
    return dict(
        what='the official R34 -> R18 DiffKD training step (hunto/image_classification_sota, '
        'diffkd_b1.yaml), written by tools/analysis_tools/recipe_parity.py',
        official_commit=commit,
        torch=torch.__version__,
        settings=dict(
            size=settings.size, batch=settings.batch, seed=settings.seed, dtype=settings.dtype),
        terms=official.terms,
        grads={
            n: parity.fingerprint(t)
            for n, t in sorted(official.grads.items())
        },
        weights={
            n: parity.fingerprint(t)
            for n, t in sorted(official.weights.items())
        })


def dumps_golden(record: dict) -> str:
    """JSON with one line per tensor, so that a change of the file reads as a diff of tensors."""
    head = {key: value for key, value in record.items() if key not in ('grads', 'weights')}
    text = json.dumps(head, indent=1)[:-2]
    for key in ('grads', 'weights'):
        rows = [
            f'  {json.dumps(name)}: {json.dumps(fp, separators=(",", ":"))}'
            for name, fp in record[key].items()
        ]
        text += f',\n "{key}": {{\n' + ',\n'.join(rows) + '\n }'
    return text + '\n}\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--official', required=True, help='a local copy of hunto/image_classification_sota')
    parser.add_argument('--size', type=int, default=64, help='image side (default: 64)')
    parser.add_argument('--batch', type=int, default=4, help='images, at least 2 (default: 4)')
    parser.add_argument('--seed', type=int, default=0, help='weights, batch, noise (default: 0)')
    parser.add_argument(
        '--dtype',
        choices=('float64', 'float32'),
        default='float64',
        help='float64 (default): differences are the computation\'s, not '
        'float32 rounding (which the DDIM loop amplifies)')
    parser.add_argument(
        '--official-commit',
        metavar='SHA',
        help='the commit of --official, recorded in the golden file (default: '
        'what git says of the folder)')
    parser.add_argument(
        '--tolerance',
        type=float,
        default=1e-5,
        help='largest relative difference accepted (default: 1e-5)')
    parser.add_argument(
        '--write-golden',
        metavar='FILE',
        help='also write the official side\'s numbers for the golden test')
    args = parser.parse_args()
    if not osp.isfile(osp.join(args.official, 'lib', 'models', 'losses', 'kd_loss.py')):
        parser.error(f'--official {args.official}: no lib/models/losses/kd_loss.py there; give '
                     'the folder of a copy of hunto/image_classification_sota')
    settings = parity.StepSettings(args.size, args.batch, args.seed, args.dtype)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    official = run_official_step(args.official, settings)
    ours = parity.run_our_step(settings)
    rows = compare(ours, official)
    print(f'| quantity | worst relative difference | where | (tolerance {args.tolerance:g}) |')
    print('|---|---|---|---|')
    for quantity, error, where in rows:
        flag = 'ok' if error <= args.tolerance else 'DIFFERS'
        print(f'| {quantity} | {error:.2e} | {where} | {flag} |')
    if args.write_golden:
        record = golden(official, settings, official_commit(args.official, args.official_commit))
        atomic_write_text(args.write_golden, dumps_golden(record))
        print(f'golden file: {args.write_golden}')
    return 0 if all(error <= args.tolerance for _, error, _ in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
