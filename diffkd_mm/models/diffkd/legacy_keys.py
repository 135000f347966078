"""Load weights saved under earlier parameter names: renames applied as a state dict is loaded."""
import re
from typing import Sequence, Tuple

from torch import nn

Renames = Sequence[Tuple[str, str]]


def rename_key(key: str, renames: Renames) -> str:
    """``key`` with each ``(pattern, replacement)`` of ``renames`` applied in order (``re.sub``)."""
    for pattern, replacement in renames:
        key = re.sub(pattern, replacement, key)
    return key


def register_legacy_keys(module: nn.Module, renames: Renames) -> None:
    """Rename the keys of ``module``'s part of every state dict loaded into it, before loading.

    ``load_state_dict`` then accepts both the current names and the earlier ones (checkpoints
    of runs started before a module was restructured), strict loading included.

    Args:
        module (nn.Module): The module whose keys moved.
        renames (Sequence[tuple[str, str]]): ``(pattern, replacement)`` pairs, applied in order
            to each key relative to ``module``; the patterns must not match current names.
    """

    def upgrade(state_dict, prefix, *args) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            new = prefix + rename_key(key[len(prefix):], renames)
            if new != key:
                state_dict[new] = state_dict.pop(key)

    module._register_load_state_dict_pre_hook(upgrade)
