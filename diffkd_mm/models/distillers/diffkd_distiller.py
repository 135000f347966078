"""A ConfigurableDistiller that links DiffKD's connectors and names where inputs come from."""
import copy
import difflib
from typing import Dict, Optional

import torch

from mmrazor.models.distillers import ConfigurableDistiller
from mmrazor.models.task_modules.recorder import ModuleOutputsRecorder
from mmrazor.registry import MODELS
from ..connectors import DiffKDStudentConnector, DiffKDTeacherConnector
from ..losses import DiffKDDiffusionLoss
from ..losses.multi_term import MultiTermLoss


def _is_diffusion_entry(cfg) -> bool:
    kind = cfg.get('type') if isinstance(cfg, dict) else None
    return kind is DiffKDDiffusionLoss or (isinstance(kind, str)
                                           and kind.split('.')[-1] == 'DiffKDDiffusionLoss')


def complete_diffkd_config(kwargs: dict) -> dict:
    """What a DiffKD connector config leaves out and the teacher connector determines.

    For each ``DiffKDDiffusionLoss`` entry that names a teacher connector:

    * the student connector's ``latent_channels``, when not set: the teacher connector's
      ``ae_channels``, else its ``teacher_channels``;
    * with an AE, the entry's ``teacher_feat`` mapping, when not set: the record its ``target``
      comes from, without the connector (the AE's reconstruction loss is computed from it).

    Args:
        kwargs (dict): The distiller's config (``connectors``, ``distill_losses``,
            ``loss_forward_mappings``); not modified.

    Returns:
        dict: A completed copy.
    """
    kwargs = copy.deepcopy(kwargs)
    connectors = kwargs.get('connectors') or {}
    mappings = kwargs.get('loss_forward_mappings') or {}
    for name, loss in (kwargs.get('distill_losses') or {}).items():
        if not _is_diffusion_entry(loss):
            continue
        student = connectors.get(loss.get('student_connector'))
        teacher = connectors.get(loss.get('teacher_connector'))
        if not isinstance(teacher, dict):
            continue
        if isinstance(student, dict) and student.get('latent_channels') is None:
            student['latent_channels'] = teacher.get('ae_channels') or teacher.get(
                'teacher_channels')
        target = mappings.get(name, {}).get('target')
        if teacher.get('ae_channels') and isinstance(target, dict) and \
                'teacher_feat' not in mappings[name]:
            mappings[name]['teacher_feat'] = {
                key: value
                for key, value in target.items() if key not in ('connector', 'connector_idx')
            }
    return kwargs


@MODELS.register_module()
class DiffKDDistiller(ConfigurableDistiller):
    """:class:`ConfigurableDistiller` with what DiffKD's connector style needs, and clearer errors.

    DiffKD's loss entries (:class:`~diffkd_mm.models.losses.DiffKDLoss`) work in the stock
    ``ConfigurableDistiller``; this distiller adds:

    * **Derived connector settings**: the student connector's ``latent_channels`` and the
      diffusion entry's ``teacher_feat`` mapping follow from the teacher connector
      (:func:`complete_diffkd_config`).
    * **Linked connectors.** Each :class:`~diffkd_mm.models.losses.DiffKDDiffusionLoss` entry is
      linked to the :class:`DiffKDStudentConnector` and :class:`DiffKDTeacherConnector` it names
      (as mmrazor's ``OFDDistiller`` initialises its connectors), after checking the names, the
      channels and that its ``target`` comes through that teacher connector.
    * **One connector run per record and iteration.** ``ConfigurableDistiller`` runs a connector
      at every lookup of its output; here, within one :meth:`compute_distill_losses`, the output
      of a (record, connector) pair is computed once and reused, so a DDIM loop or an AE whose
      output feeds several entries still runs once (and a random connector gives every entry the
      same draw).
    * **Errors that name the config key**: a recorder source that names no module (with close
      matches), and each DiffKD entry's messages name the entry and where its inputs come from.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**complete_diffkd_config(kwargs))
        self._connector_outputs: Optional[Dict[tuple, object]] = None
        for name, loss in self.distill_losses.items():
            if isinstance(loss, MultiTermLoss):
                loss.bind_entry(
                    name, {
                        arg: self._describe_source(record)
                        for arg, record in self.loss_forward_mappings.get(name, {}).items()
                    })
        trained_by = self._link_diffusion_losses()
        for name, connector in self.connectors.items():
            if isinstance(connector, (DiffKDStudentConnector, DiffKDTeacherConnector)):
                connector.bind(name, trained_by.get(name))

    # ------------------------------------------------------------------ connectors
    def _link_diffusion_losses(self) -> Dict[str, str]:
        """Link each diffusion entry to its connectors; ``{connector: entry that trains it}``."""
        trained_by: Dict[str, str] = {}
        for name, loss in self.distill_losses.items():
            if not isinstance(loss, DiffKDDiffusionLoss):
                continue
            student = self._connector(name, 'student_connector', loss.student_connector,
                                      DiffKDStudentConnector)
            teacher = None
            if loss.teacher_connector is not None:
                teacher = self._connector(name, 'teacher_connector', loss.teacher_connector,
                                          DiffKDTeacherConnector)
            for key, connector in (('student_connector', loss.student_connector),
                                   ('teacher_connector', loss.teacher_connector)):
                if connector is not None and connector in trained_by:
                    raise ValueError(
                        f'distill_losses.{name}.{key}: connector {connector!r} is already '
                        f'trained by distill_losses.{trained_by[connector]}; one '
                        'DiffKDDiffusionLoss entry per connector.')
                trained_by[connector] = name
            latent = teacher.latent_channels if teacher is not None else None
            if latent is not None and (teacher.num_levels != student.num_levels
                                       or latent != student.latent_channels):
                raise ValueError(
                    f'distill_losses.{name}: connectors.{loss.student_connector} denoises into '
                    f'latent_channels={student.latent_channels} on {student.num_levels} '
                    f'level(s), but connectors.{loss.teacher_connector} gives targets of '
                    f'{latent} channels on {teacher.num_levels} level(s); set latent_channels '
                    'to the teacher connector\'s ae_channels (or teacher_channels without AE).')
            self._check_target_mapping(name, loss.teacher_connector)
            loss.link(student, teacher)
        for mapping_name, mapping in self.loss_forward_mappings.items():
            for arg, record in mapping.items():
                connector = record.get('connector')
                found = self.connectors[connector] if connector in self.connectors else None
                # A denoiser, or an AE, that nothing trains would never learn.
                untrained = isinstance(
                    found, DiffKDStudentConnector) or (isinstance(found, DiffKDTeacherConnector)
                                                       and found.has_autoencoder)
                if untrained and connector not in trained_by:
                    raise ValueError(
                        f'loss_forward_mappings.{mapping_name}.{arg}: connector {connector!r} '
                        f'({type(found).__name__}) is trained by no DiffKDDiffusionLoss entry; '
                        f'add one to distill_losses: dict(type=\'DiffKDDiffusionLoss\', '
                        'student_connector=..., teacher_connector=...).')
        return trained_by

    def _connector(self, loss_name: str, key: str, connector: str, expected: type):
        found = self.connectors[connector] if connector in self.connectors else None
        if not isinstance(found, expected):
            what = (f'is a {type(found).__name__}' if found is not None else
                    f'is not in connectors ({", ".join(self.connectors) or "none"})')
            raise ValueError(f'distill_losses.{loss_name}.{key} = {connector!r} {what}; '
                             f'expected the name of a {expected.__name__}.')
        return found

    def _check_target_mapping(self, name: str, teacher_connector: Optional[str]) -> None:
        mapping = self.loss_forward_mappings.get(name, {})
        record = mapping.get('target')
        through = (f'connector={teacher_connector!r}' if teacher_connector else 'no connector')
        if (record is None or record.get('from_student', True)
                or record.get('connector') != teacher_connector):
            raise ValueError(
                f'loss_forward_mappings.{name}.target must be a teacher record '
                f'(from_student=False) through {through}, as the matching loss sees the '
                f'target; got {record!r}.')
        source = mapping.get('teacher_feat')
        if source is not None and (source.get('from_student', True) or source.get('connector')
                                   or source.get('recorder') != record.get('recorder')):
            raise ValueError(
                f'loss_forward_mappings.{name}.teacher_feat must be the teacher record that '
                f'target comes from (from_student=False, recorder={record.get("recorder")!r}), '
                f'without a connector: the AE reconstructs it; got {source!r}.')

    def get_record(self,
                   recorder: str,
                   from_student: bool,
                   record_idx: int = 0,
                   data_idx: Optional[int] = None,
                   connector: Optional[str] = None,
                   connector_idx: Optional[int] = None):
        """:meth:`ConfigurableDistiller.get_record`, each connector output computed once."""
        cache = self._connector_outputs
        if connector is None or cache is None:
            return super().get_record(recorder, from_student, record_idx, data_idx, connector,
                                      connector_idx)
        key = (recorder, from_student, record_idx, data_idx, connector)
        if key not in cache:
            cache[key] = super().get_record(recorder, from_student, record_idx, data_idx, connector)
        output = cache[key]
        return output if connector_idx is None else output[connector_idx]

    def compute_distill_losses(self) -> Dict[str, torch.Tensor]:
        self._connector_outputs = {}
        try:
            return super().compute_distill_losses()
        finally:
            self._connector_outputs = None  # nothing of this iteration is kept

    # ------------------------------------------------------------------ recorders
    def _describe_source(self, record: dict) -> str:
        side = 'student' if record.get('from_student') else 'teacher'
        recorders = self.student_recorders if record.get('from_student') else \
            self.teacher_recorders
        source = getattr(recorders.recorders.get(record.get('recorder')), 'source', '?')
        where = f'{side}_recorders.{record.get("recorder")} (source {source!r})'
        if record.get('connector'):
            where += f' through connectors.{record["connector"]}'
        return where

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
            # ModuleInputsRecorder derives from ModuleOutputsRecorder: both hook a module.
            if isinstance(recorder, ModuleOutputsRecorder) and source not in modules:
                close = difflib.get_close_matches(str(source), list(modules), n=3)
                raise ValueError(
                    f'distiller.{side}_recorders.{name}.source = {source!r} names no module of '
                    f'the {side}' + (f'; did you mean {", ".join(map(repr, close))}?'
                                     if close else '; see model.named_modules() for the names.'))
        recorders.initialize(model)
