"""Checks of DiffKD's settings that name the config key and what it expects.

A setting given in a config reaches a constructor as whatever the user wrote: ``2.5`` or
``None`` for channels, ``'no'`` for a flag, ``True`` for a count. Each check returns a good value
unchanged and raises a ``ValueError`` that names the owner, the key and the value otherwise, so a
mistake ends in one line instead of a stack trace deep in torch, or, worse, in a silently wrong
model (``bool('no')`` is True; ``True`` is the int 1).
"""


def check_flag(value, key: str, owner: str) -> bool:
    """Return ``value`` if it is True or False, else raise naming ``key``."""
    if not isinstance(value, bool):
        raise ValueError(f'{owner}: {key} must be True or False, got {value!r}.')
    return value


def is_positive_int(value) -> bool:
    """Whether ``value`` is an int >= 1 (and not a bool, which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_int(value, key: str, owner: str) -> int:
    """Return ``value`` if it is an int >= 1 (not a bool), else raise naming ``key``."""
    if not is_positive_int(value):
        raise ValueError(f'{owner}: {key} must be a positive int, got {value!r}.')
    return value


def check_weight(value, key: str, owner: str) -> float:
    """Return ``value`` if it is a finite number >= 0 (not a bool), else raise naming ``key``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0
            or value == float('inf')):
        raise ValueError(f'{owner}: {key} must be a finite number >= 0, got {value!r}.')
    return value
