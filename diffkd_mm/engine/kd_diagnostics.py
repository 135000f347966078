"""Where a distillation loss's signal goes: measured at fixed iterations, for any KD method.

DiffKD matches the *denoised* student feature with the teacher's target. A denoiser that the KD
term also trains can make that match good while the student's own feature stays far from the
teacher's, and then little of the KD signal reaches the student. Three numbers tell, measured the
same way for DiffKD, FitNet, PKD or any mmrazor distiller:

* ``kd_grad_norm``: the L2 norm of the gradient of all distillation losses with respect to the
  student's recorded features (the tensors the distiller records, before any connector), all
  levels together: the KD signal the student receives;
* ``cos_student``: the cosine, per sample, between the student side that a loss compares (a
  connector's output, DiffKD's projected feature before denoising) and the teacher side, each
  channel standardised over (B, H, W) first so that scale and offset do not count; the mean over
  samples, levels and loss entries;
* for DiffKD entries, ``cos_refined`` (the same for the denoised, refined feature it matches) and
  ``gate`` (the noise adapter's weight ``g`` of the student feature).

The measurement is a second forward of the iteration's batch, after the training step. It
leaves training as it was: the random state and every buffer (BatchNorm statistics, EMA weights)
are restored, no gradient is accumulated, and what the losses log goes to a message hub of its
own that is dropped.
"""
import contextlib
from functools import partial
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..models.diffkd.branch import DiffKDBranch
from ..models.diffkd.target import standardize_channels

#: The iterations measured by default: early (20), a quarter, half way and the last one.
DEFAULT_AT = (20, 0.25, 0.5, 1.0)


@HOOKS.register_module()
class KDDiagnosticsHook(Hook):
    """Measure the KD signal that reaches the student at fixed iterations.

    Args:
        at (Sequence[int | float]): Iterations to measure after: an int is an iteration
            (1-based), a float in (0, 1] a fraction of ``max_iters`` (rounded). Defaults to
            ``(20, 0.25, 0.5, 1.0)``.

    Attributes:
        records (list[dict]): One per measured iteration: ``iter``, ``kd_grad_norm``,
            ``cos_student`` and, with DiffKD entries, ``cos_refined`` and ``gate``.
    """

    priority = 'LOW'  # after the logger has read the iteration's values

    def __init__(self, at: Sequence[Union[int, float]] = DEFAULT_AT) -> None:
        at = tuple(at)
        for point in at:
            ok = (isinstance(point, int) and not isinstance(point, bool)
                  and point >= 1) or (isinstance(point, float) and 0.0 < point <= 1.0)
            if not ok:
                raise ValueError(f'KDDiagnosticsHook: at must hold iterations (ints >= 1) or '
                                 f'fractions of the run (floats in (0, 1]), got {point!r}.')
        self.at = at
        self.records: List[dict] = []
        self._iters = set()

    def before_train(self, runner) -> None:
        max_iters = runner.max_iters
        self._iters = {
            min(max_iters,
                max(1, round(p * max_iters)) if isinstance(p, float) else p)
            for p in self.at
        }

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        iteration = runner.iter + 1
        if iteration not in self._iters or data_batch is None:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if getattr(model, 'distiller', None) is None:
            return
        self.records.append(dict(iter=iteration, **measure_kd_signal(model, data_batch)))


def measure_kd_signal(algorithm, data_batch) -> Dict[str, float]:
    """The diagnostics of :class:`KDDiagnosticsHook` on one batch, training left untouched.

    Args:
        algorithm: An mmrazor distillation algorithm (``algorithm.distiller`` a
            ``ConfigurableDistiller`` or derived), in the mode it trains in.
        data_batch: A batch as the dataloader yields it.

    Returns:
        dict[str, float]: ``kd_grad_norm``, ``cos_student`` and, with DiffKD entries,
        ``cos_refined`` and ``gate``.
    """
    distiller = algorithm.distiller
    entries, branch_outputs, handles = {}, [], []
    for name, loss in distiller.distill_losses.items():
        handles.append(
            loss.register_forward_hook(partial(_keep_call, entries, name), with_kwargs=True))
    for module in distiller.modules():
        if isinstance(module, DiffKDBranch):
            handles.append(
                module.register_forward_hook(lambda _m, _a, out: branch_outputs.append(out)))
    try:
        with _training_untouched(algorithm), torch.enable_grad():
            data = algorithm.data_preprocessor(data_batch, True)
            algorithm(**data, mode='loss')
            features = [
                x for recorder in distiller.student_recorders.recorders.values()
                for x in _tensors(recorder.data_buffer) if x.requires_grad
            ]
            total = sum(out.float().sum() for _, out in entries.values())
            grads = torch.autograd.grad(
                total, features, allow_unused=True) if (features and torch.is_tensor(total)
                                                        and total.requires_grad) else []
            result = dict(kd_grad_norm=_norm([g for g in grads if g is not None]))
            result.update(_cosines(distiller, entries, branch_outputs))
    finally:
        for handle in handles:
            handle.remove()
    return result


def _keep_call(entries: dict, name: str, _module, _args, kwargs, output) -> None:
    entries[name] = (kwargs, output)


@contextlib.contextmanager
def _training_untouched(model: torch.nn.Module):
    """Restore torch's random state and every buffer of ``model`` afterwards, and send what is
    logged meanwhile to a message hub of its own (dropped afterwards)."""
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    buffers = {name: buf.detach().clone() for name, buf in model.named_buffers()}
    hubs = MessageHub._instance_dict
    scratch = f'kd_diagnostics_{id(model)}'
    MessageHub.get_instance(scratch)  # the newest instance is the current one
    try:
        yield
    finally:
        hubs.pop(scratch, None)
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name in buffers:
                    buf.copy_(buffers[name])
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _tensors(value) -> List[torch.Tensor]:
    if torch.is_tensor(value):
        return [value]
    if isinstance(value, (list, tuple)):
        return [x for item in value for x in _tensors(item)]
    if isinstance(value, dict):
        return [x for item in value.values() for x in _tensors(item)]
    return []


def _norm(tensors: List[torch.Tensor]) -> float:
    if not tensors:
        return 0.0
    return float(torch.stack([t.detach().float().pow(2).sum() for t in tensors]).sum().sqrt())


def aligned_cosine(student: torch.Tensor, teacher: torch.Tensor) -> Optional[float]:
    """Mean over samples of the cosine between two (B, C, H, W) maps, each channel standardised
    over (B, H, W) first; None when the shapes differ (nothing to compare)."""
    if student.dim() == 2:
        student, teacher = student[..., None, None], teacher[..., None, None]
    if student.shape != teacher.shape or student.dim() != 4:
        return None
    s = standardize_channels(student.detach().float()).flatten(1)
    t = standardize_channels(teacher.detach().float()).flatten(1)
    return float(torch.nn.functional.cosine_similarity(s, t, dim=1).mean())


def _mean(values: List[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _cosines(distiller, entries: dict, branch_outputs: list) -> Dict[str, float]:
    """``cos_student`` over every loss entry that compares a student and a teacher side of the
    same shape; DiffKD entries add ``cos_refined`` and ``gate`` from their branches."""
    cos_student, out = [], {}
    for name, (kwargs, _) in entries.items():
        if _is_diffkd_entry(distiller.distill_losses[name]):
            continue  # measured on its branches, whose projected feature is the student side
        mapping = distiller.loss_forward_mappings.get(name, {})
        student = [_tensors(kwargs.get(k)) for k, m in mapping.items() if m.get('from_student')]
        teacher = [_tensors(kwargs.get(k)) for k, m in mapping.items() if not m.get('from_student')]
        if len(student) == 1 and len(teacher) == 1:
            cos_student += [aligned_cosine(s, t) for s, t in zip(student[0], teacher[0])]
    if branch_outputs:
        cos_student += [aligned_cosine(o.student, o.target) for o in branch_outputs]
        out['cos_refined'] = _mean([aligned_cosine(o.refined, o.target) for o in branch_outputs])
        out['gate'] = _mean([float(o.gate.detach().float().mean()) for o in branch_outputs])
    out['cos_student'] = _mean(cos_student)
    return {k: v for k, v in out.items() if v is not None}


def _is_diffkd_entry(loss) -> bool:
    return any(isinstance(m, DiffKDBranch) for m in loss.modules())
