"""DiffKD's settings as the loss entry and the connectors take them, checked against the sides.

Each setting is declared, with its default and documentation, by the side it configures:
:class:`DiffKDDenoiser` (the student side) and :class:`DiffKDTarget` (the teacher side). The
loss and the connectors pass them on as keyword arguments; this module only checks that each
key belongs to a side the caller has, with an error that names the key.
"""
import difflib
import inspect
from typing import Dict, Tuple

from .denoiser import DiffKDDenoiser
from .target import DiffKDTarget


def _settings(cls, channels: Tuple[str, ...]) -> Tuple[str, ...]:
    names = list(inspect.signature(cls.__init__).parameters)[1:]  # without self
    return tuple(name for name in names if name not in channels)


#: The student side's settings (not its channels), as :class:`DiffKDDenoiser` declares them.
DENOISER_SETTINGS = _settings(DiffKDDenoiser, ('student_channels', 'latent_channels'))
#: The teacher side's settings, as :class:`DiffKDTarget` declares them.
TARGET_SETTINGS = _settings(DiffKDTarget, ('teacher_channels', ))
_SIDES = dict(
    student=('DiffKDDenoiser', DENOISER_SETTINGS), teacher=('DiffKDTarget', TARGET_SETTINGS))


def check_settings(owner: str, settings: Dict, *sides: str) -> Dict:
    """Return ``settings`` when each key is a setting of one of ``sides``, else raise.

    Args:
        owner (str): Who takes the settings, for the message (e.g. ``'DiffKDLoss'``).
        settings (dict): The keyword arguments passed on.
        *sides (str): ``'student'`` and/or ``'teacher'``: the sides ``owner`` builds.

    Raises:
        ValueError: naming the unknown key, the closest setting, and the side that owns it.
    """
    allowed = [name for side in sides for name in _SIDES[side][1]]
    for key in settings:
        if key in allowed:
            continue
        elsewhere = [(side, cls) for side, (cls, names) in _SIDES.items() if key in names]
        if elsewhere:
            hint = 'a setting of the {} side ({})'.format(*elsewhere[0])
        else:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f'did you mean {close[0]!r}?' if close else 'no such setting'
        raise ValueError(f'{owner}: unknown setting {key!r} ({hint}); it takes '
                         f'{", ".join(allowed)}.')
    return settings


def split_settings(owner: str, settings: Dict) -> Tuple[Dict, Dict]:
    """Check ``settings`` for both sides and split them: ``(teacher side, student side)``."""
    check_settings(owner, settings, 'student', 'teacher')
    teacher = {key: value for key, value in settings.items() if key in TARGET_SETTINGS}
    student = {key: value for key, value in settings.items() if key in DENOISER_SETTINGS}
    return teacher, student
