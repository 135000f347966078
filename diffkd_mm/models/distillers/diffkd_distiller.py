"""A ConfigurableDistiller that logs each term of a multi-term distillation loss on its own."""
import difflib
from typing import Dict

import torch

from mmrazor.models.distillers import ConfigurableDistiller
from mmrazor.registry import MODELS


@MODELS.register_module()
class DiffKDDistiller(ConfigurableDistiller):
    """:class:`ConfigurableDistiller` whose losses may return a dict of named terms.

    mmengine's ``parse_losses`` accepts only tensors (or lists of tensors) and back-propagates
    every key that contains ``'loss'``. DiffKD has three losses (KD, diffusion, AE) and a statistic
    (the noise-adapter weight) per entry, and each should be logged separately, so a dict returned
    by the loss entry ``loss_<name>`` is spread into the loss dict as:

    * a term ``loss_<x>``  -> ``loss_<name>_<x>`` (back-propagated and logged),
    * any other term ``<y>`` -> ``<name>_<y>`` (logged only; must not contain ``'loss'``).

    For example, the entry ``loss_diffkd_fpn`` gives ``loss_diffkd_fpn_kd``,
    ``loss_diffkd_fpn_ddim``, ``loss_diffkd_fpn_ae`` and ``diffkd_fpn_gate`` (all prefixed with
    ``distill.`` by the algorithm). Losses that return a tensor pass through unchanged, so any
    mmrazor loss can sit beside DiffKD. Everything else is :class:`ConfigurableDistiller`'s.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name, loss in self.distill_losses.items():
            if hasattr(loss, 'loss_name'):  # error messages then name the config key ...
                loss.loss_name = name
                loss.input_sources = {  # ... and where each input is recorded
                    arg: self._describe_source(record)
                    for arg, record in self.loss_forward_mappings.get(name, {}).items()
                }

    def _describe_source(self, record: dict) -> str:
        side = 'student' if record.get('from_student') else 'teacher'
        recorders = self.student_recorders if record.get('from_student') else \
            self.teacher_recorders
        source = getattr(recorders.recorders.get(record.get('recorder')), 'source', '?')
        return f'{side}_recorders.{record.get("recorder")} (source {source!r})'

    def prepare_from_student(self, model) -> None:
        self._prepare('student', self.student_recorders, model)

    def prepare_from_teacher(self, model) -> None:
        self._prepare('teacher', self.teacher_recorders, model)

    @staticmethod
    def _prepare(side: str, recorders, model) -> None:
        """Initialise recorders; a source that names no module gets an error with the key."""
        modules = dict(model.named_modules())
        for name, recorder in recorders.recorders.items():
            source = getattr(recorder, 'source', None)
            if type(recorder).__name__.startswith('Module') and source not in modules:
                close = difflib.get_close_matches(str(source), list(modules), n=3)
                raise ValueError(
                    f'distiller.{side}_recorders.{name}.source = {source!r} names no module of '
                    f'the {side}' + (f'; did you mean {", ".join(map(repr, close))}?'
                                     if close else '; see model.named_modules() for the names.'))
        recorders.initialize(model)

    def compute_distill_losses(self) -> Dict[str, torch.Tensor]:
        losses = {}
        for name, value in super().compute_distill_losses().items():
            if not isinstance(value, dict):
                losses[name] = value
                continue
            stem = name[len('loss_'):] if name.startswith('loss_') else name
            for term, term_value in value.items():
                if term.startswith('loss_'):
                    key = f'{name}_{term[len("loss_"):]}'
                else:
                    key = f'{stem}_{term}'
                    if 'loss' in key:
                        raise KeyError(
                            f'distill_losses.{name}: the statistic {term!r} would be logged as '
                            f'{key!r}, which contains "loss" and would be back-propagated; name '
                            'the loss entry "loss_<name>" with no other "loss" in it.')
                losses[key] = term_value
        return losses
