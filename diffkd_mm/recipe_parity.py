"""One training step of our ImageNet R34 -> R18 DiffKD recipe, comparable with the official one.

The official recipe (``hunto/image_classification_sota``: ``tools/train.py``,
``lib/models/losses/kd_loss.py``, ``configs/strategies/distill/diffkd/diffkd_b1.yaml``) and our
config are given the same weights (:func:`fill_weights`), the same batch (:func:`make_batch`)
and the same random state before the step, so that DiffKD's noise and timesteps are the same
draws. ``tools/analysis_tools/recipe_parity.py`` runs both sides and compares everything; it also
writes the official side's numbers as :func:`fingerprint` s into a small golden file, against
which a test runs our side (:func:`run_our_step`) where the official code is absent.
"""
import contextlib
import math
from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper

#: Our config of the recipe, relative to the repository root.
CONFIG = 'configs/diffkd/mmpretrain/diffkd_layer4-logits_resnet34_resnet18_8xb32_in1k.py'
#: The official distilled modules of tv_resnet34 -> tv_resnet18 (``KD_MODULES``) and our loss
#: entries for them.
ENTRIES = {'layer4': 'loss_diffkd_feat', 'fc': 'loss_diffkd_logits'}
#: The terms compared, as ``<entry>.<term>`` besides ``total`` and ``ce``.
DIFFKD_TERMS = {'loss_diffkd_feat': ('kd', 'ddim', 'ae'), 'loss_diffkd_logits': ('kd', 'ddim')}
#: Samples per tensor in a fingerprint.
_SAMPLES = 8


@dataclass(frozen=True)
class StepSettings:
    """What one compared step is made of.

    Args:
        size (int): Image side. Defaults to 64 (layer4 is then 2x2).
        batch (int): Images. At least 2 (the official hooks index the batch of a batch of 1).
        seed (int): Seed of the weights, the batch and the step's noise. Defaults to 0.
        dtype (str): ``'float64'`` (default): both sides compute in double precision, so that
            what remains of a difference is the computation, not float32 rounding, which the
            DDIM loop amplifies by up to ``1 / sqrt(alpha_bar_t)`` (about 150 at ``t = 900``);
            ``'float32'``: as training runs.
    """
    size: int = 64
    batch: int = 4
    seed: int = 0
    dtype: str = 'float64'

    @property
    def torch_dtype(self) -> torch.dtype:
        return dict(float32=torch.float32, float64=torch.float64)[self.dtype]

    @contextlib.contextmanager
    def random_draws(self) -> Iterator[None]:
        """The random state and default dtype of the step: the official code draws part of its
        noise with ``torch.randn(shape)``, in the default dtype, ours in the feature's dtype,
        and a float32 and a float64 draw from one seed differ."""
        default = torch.get_default_dtype()
        torch.set_default_dtype(self.torch_dtype)
        torch.manual_seed(self.seed + 2)
        try:
            yield
        finally:
            torch.set_default_dtype(default)


def build_ours(config: str = CONFIG):
    """Our side: the algorithm of ``config`` without its teacher checkpoint, and the config.

    Returns:
        tuple: ``(algorithm, config)``.
    """
    import diffkd_mm  # noqa: F401  (the stand-in and the registrations)
    from mmrazor.registry import MODELS
    cfg = Config.fromfile(config)
    cfg.model.teacher_ckpt = None
    return MODELS.build(cfg.model), cfg


def fill_weights(module: torch.nn.Module, seed: int) -> None:
    """Give every floating-point parameter and buffer of ``module`` a value drawn from ``seed``.

    He-scaled normal weights (``std = sqrt(2 / fan_in)``), norm weights around 1, small biases
    and running means, running variances in [1, 1.2], time embeddings ``N(0, 1)``; drawn in the
    order of the sorted names from one CPU generator, so the same on every machine and torch.
    """
    g = torch.Generator().manual_seed(seed)
    state = module.state_dict()
    with torch.no_grad():
        for name in sorted(state):
            tensor = state[name]
            if not tensor.is_floating_point():
                continue
            shape = tensor.shape
            if name.endswith('running_var'):
                value = 1 + 0.2 * torch.rand(shape, generator=g)
            elif name.endswith('running_mean') or name.endswith('.bias'):
                value = 0.05 * torch.randn(shape, generator=g)
            elif 'embedding' in name:
                value = torch.randn(shape, generator=g)
            elif tensor.dim() == 1:  # a norm layer's weight
                value = 1 + 0.1 * torch.randn(shape, generator=g)
            else:
                fan_in = tensor[0].numel()
                value = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
            tensor.copy_(value)


def calibrate_teacher(algo, images: torch.Tensor) -> None:
    """Set the teacher's BatchNorm statistics to those of ``images`` (one forward in training
    mode, cumulative average), so that its features have the scale of a trained teacher's, not
    the scale that random weights and unit running variances give (the AE term's thousands)."""
    norms = [
        m for m in algo.teacher.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    algo.teacher.train()
    with torch.no_grad():
        algo.teacher(images, mode='tensor')
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


def prepared_algorithm(settings: StepSettings, config: str = CONFIG):
    """Our side with the step's weights (:func:`fill_weights`, :func:`calibrate_teacher`) in
    the step's dtype, and its optimizer wrapper: the weights both sides start from."""
    algo, cfg = build_ours(config)
    fill_weights(algo, settings.seed)
    calibrate_teacher(algo, make_batch(settings)[0].float())
    algo.to(settings.torch_dtype)
    # The optimizer is built on the parameters in their final dtype.
    return algo, build_optim_wrapper(algo, cfg.optim_wrapper)


def make_batch(settings: StepSettings) -> Tuple[torch.Tensor, torch.Tensor]:
    """Normalised images (B, 3, S, S), as both sides' models take them, and labels (B, )."""
    if settings.batch < 2:
        raise ValueError(f'StepSettings.batch must be at least 2, got {settings.batch}: the '
                         'official forward hooks take output[0] of a batch of one.')
    g = torch.Generator().manual_seed(settings.seed + 1)
    images = torch.randn(settings.batch, 3, settings.size, settings.size, generator=g)
    labels = torch.randint(0, 1000, (settings.batch, ), generator=g)
    return images.to(settings.torch_dtype), labels


@dataclass
class StepResult:
    """One side's step: the loss terms, every gradient and every weight after the step, by our
    parameter names (``architecture.*``, ``distiller.*``)."""
    terms: Dict[str, float]
    grads: Dict[str, torch.Tensor]
    weights: Dict[str, torch.Tensor]


def run_our_step(settings: StepSettings, config: str = CONFIG) -> StepResult:
    """Build our side, fill its weights, run one training step; see :class:`StepResult`."""
    from mmpretrain.structures import DataSample
    algo, optim_wrapper = prepared_algorithm(settings, config)
    images, labels = make_batch(settings)
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    algo.train()
    hub = MessageHub.get_instance(f'recipe_parity_{id(algo)}')
    with settings.random_draws():
        losses = algo(images, samples, mode='loss')
    total, _ = algo.parse_losses(losses)
    terms = dict(total=float(total.detach()), ce=float(losses['student.loss'].detach()))
    for entry, names in DIFFKD_TERMS.items():
        for term in names:
            terms[f'{entry}.{term}'] = float(
                hub.get_scalar(f'train/distill.{entry}_{term}').current())
    total.backward()
    trained = [(n, p) for n, p in algo.named_parameters() if p.grad is not None]
    grads = {name: p.grad.detach().clone() for name, p in trained}
    optim_wrapper.step()
    return StepResult(terms, grads, {name: p.detach().clone() for name, p in trained})


#: A tensor whose largest value is below this share of its group's largest is compared relative
#: to that share: the biases of convolutions followed by BatchNorm have an exact gradient of 0, and
#: what both sides compute for them is rounding (about 1e-17 of the group's largest in float64).
ZERO_FLOOR = 1e-9


def fingerprint(tensor: torch.Tensor) -> Dict[str, object]:
    """A tensor in a few numbers: its size, largest magnitude, norm, sum, sum of magnitudes and
    eight samples at fixed, evenly spread positions."""
    flat = tensor.detach().double().flatten()
    positions = sorted({round(i * (flat.numel() - 1) / (_SAMPLES - 1)) for i in range(_SAMPLES)})
    return dict(
        numel=flat.numel(),
        max_abs=float(flat.abs().max()),
        norm=float(flat.norm()),
        sum=float(flat.sum()),
        abs_sum=float(flat.abs().sum()),
        positions=positions,
        samples=[float(flat[i]) for i in positions])


def fingerprint_error(ours: torch.Tensor, golden: Dict[str, object], floor: float = 0.0) -> float:
    """The largest difference between ``ours`` and a :func:`fingerprint` of the reference,
    relative to the reference's largest magnitude, or to ``floor`` where that is larger."""
    mine = fingerprint(ours)
    if mine['numel'] != golden['numel']:
        return math.inf
    scale = max(golden['max_abs'], floor)
    sums = max(golden['abs_sum'], floor * golden['numel'])
    norm = max(golden['norm'], floor * math.sqrt(golden['numel']))
    errors = [
        abs(mine['max_abs'] - golden['max_abs']) / scale,
        abs(mine['norm'] - golden['norm']) / norm,
        abs(mine['abs_sum'] - golden['abs_sum']) / sums,
        abs(mine['sum'] - golden['sum']) / sums,
    ] + [abs(a - b) / scale for a, b in zip(mine['samples'], golden['samples'])]
    return max(errors) if scale > 0 else float(any(e > 0 for e in errors))


def tensor_error(ours: torch.Tensor, reference: torch.Tensor, floor: float = 0.0) -> float:
    """``max |ours - reference| / max(max |reference|, floor)``."""
    scale = max(float(reference.abs().max()), floor)
    diff = float((ours.double() - reference.double()).abs().max())
    return diff / scale if scale > 0 else float(diff > 0)


def group_floors(largest: Dict[str, float]) -> Dict[str, float]:
    """``{parameter: ZERO_FLOOR * the largest magnitude of its group}`` from ``{parameter:
    its largest magnitude}``."""
    group_max: Dict[str, float] = {}
    for name, value in largest.items():
        group = parameter_group(name)
        group_max[group] = max(group_max.get(group, 0.0), value)
    return {name: ZERO_FLOOR * group_max[parameter_group(name)] for name in largest}


def worst_by_group(errors: Dict[str, float]) -> Dict[str, Tuple[float, Optional[str]]]:
    """``{group: (worst error, its parameter)}``, the groups being the student, each DiffKD
    entry, and within them weights, biases / norms."""
    worst: Dict[str, Tuple[float, Optional[str]]] = {}
    for name, error in errors.items():
        group = parameter_group(name)
        if group not in worst or error > worst[group][0]:
            worst[group] = (error, name)
    return worst


def parameter_group(name: str) -> str:
    """``'student'``, ``'loss_diffkd_feat'`` or ``'loss_diffkd_logits'`` for a parameter."""
    if name.startswith('architecture.'):
        return 'student'
    return next((entry for entry in ENTRIES.values() if f'.{entry}.' in name), 'other')
