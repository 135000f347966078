"""No silent random weights: a checkpoint must load more than a token share of a model."""
from collections import Counter

import torch
import torch.hub

from .errors import MismatchedCheckpointError

EXPORTER = 'tools/model_converters/convert_kd_ckpt_to_student.py'
# Below this share of the model's weights (by element count), a load counts as "none matched":
# a checkpoint for another model (or with another key prefix) that happens to share a few small
# tensors must not pass for a loaded model.
MIN_LOADED_FRACTION = 0.01


def _state_dict_of(checkpoint) -> dict:
    return checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}


def _prefixes(keys, limit: int = 6) -> str:
    counts = Counter(k.split('.', 1)[0] + ('.' if '.' in k else '') for k in keys)
    shown = ', '.join(f'{p!r} ({n})' for p, n in counts.most_common(limit))
    return shown + (f', ... ({len(counts) - limit} more)' if len(counts) > limit else '')


def check_weights_match(module: torch.nn.Module, state_dict: dict, source: str) -> None:
    """Raise when ``state_dict`` holds (almost) none of ``module``'s weights.

    A weight counts as loaded when the checkpoint has its key with the same shape. Partial
    matches pass (mmengine then warns about the missing and unexpected keys).

    Args:
        module (nn.Module): The model receiving the weights.
        state_dict (dict): Its keys as they will be loaded (after prefix revision).
        source (str): What the weights come from, for the message (config key and file).

    Raises:
        MismatchedCheckpointError: Less than ``MIN_LOADED_FRACTION`` of the weights match.
    """
    own = {
        k: v
        for k, v in module.state_dict().items()
        if torch.is_tensor(v) and 'num_batches_tracked' not in k
    }
    total = sum(v.numel() for v in own.values())
    if total == 0:
        return
    loaded = sum(v.numel() for k, v in own.items()
                 if torch.is_tensor(state_dict.get(k)) and state_dict[k].shape == v.shape)
    if loaded >= MIN_LOADED_FRACTION * total:
        return
    theirs = [k for k in state_dict if isinstance(k, str)]
    matched = sum(1 for k, v in own.items()
                  if torch.is_tensor(state_dict.get(k)) and state_dict[k].shape == v.shape)
    if any(k.startswith('architecture.')
           for k in theirs) and not any(k.startswith('architecture.') for k in own):
        fix = ('this is a distillation checkpoint (the student is under \'architecture.\'): '
               f'export the student with {EXPORTER} and load that, or use the distillation '
               'config')
    elif any(k.startswith('architecture.') for k in own):
        fix = ('this model is a distillation algorithm, the checkpoint a plain model\'s: load it '
               'with the model\'s own config (or as the teacher, with model.teacher_ckpt)')
    else:
        fix = 'pass a checkpoint of this model (a config and a checkpoint of the same model)'
    raise MismatchedCheckpointError(
        f'{source} holds none of the weights of the {type(module).__name__} being loaded '
        f'({matched} of {len(own)} tensors match by name and shape): a run would go on with '
        f'random weights. Checkpoint keys start with {_prefixes(theirs) or "(none)"}; the '
        f'model\'s with {_prefixes(own)}. Fix: {fix}.')
