"""Load weights trained with the official DiffKD code (hunto/DiffKD) into :class:`DiffKDBranch`.

Only parameter and buffer names differ; the tensors map one to one. The official scheduler is not
an ``nn.Module``, so its constants are never in a checkpoint (ours are non-persistent too).
"""
from collections import OrderedDict
from typing import Dict, Mapping

import torch

from .branch import LEGACY_BRANCH_KEYS
from .legacy_keys import rename_key

# (official pattern, the branch's names before it was split into two sides), applied in order
# to each key; LEGACY_BRANCH_KEYS then gives today's names.
_RENAMES = (
    (r'^trans\.', 'student_proj.'),
    (r'^ae\.', 'autoencoder.'),
    (r'^model\.time_embedding\.', 'noise_predictor.time_embedding.'),
    (r'^model\.pred\.', 'noise_predictor.layers.'),
    (r'^noise_adapter\.feat\.', 'noise_adapter.features.'),
    (r'^noise_adapter\.pred\.', 'noise_adapter.gate.'),
    (r'^proj\.(weight|bias)$', r'output_proj.0.\1'),  # first release: a bare conv1x1
    (r'^proj\.', 'output_proj.'),  # later releases: Sequential(conv1x1, BN)
    (r'\.block\.', '.layers.'),  # inside every Bottleneck
)


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor],
                                prefix: str = '') -> Dict[str, torch.Tensor]:
    """Rename an official ``DiffKD`` state dict to :class:`DiffKDBranch` names.

    Args:
        state_dict (Mapping[str, Tensor]): The official module's ``state_dict()``, or a whole
            checkpoint's, with ``prefix`` selecting one DiffKD module (e.g. ``'_diff.layer4.'``
            for the student of image_classification_sota).
        prefix (str): Only keys starting with it are converted, without it. Defaults to ''.

    Returns:
        dict[str, Tensor]: Ready for ``DiffKDBranch.load_state_dict(..., strict=True)``.
    """
    converted = OrderedDict()
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        converted[rename_key(key[len(prefix):], _RENAMES + LEGACY_BRANCH_KEYS)] = value
    if not converted:
        raise KeyError(f'convert_official_state_dict: no key starts with prefix {prefix!r}; '
                       f'first keys are {list(state_dict)[:5]}.')
    return converted
