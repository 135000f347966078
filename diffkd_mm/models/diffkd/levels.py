"""What one DiffKD loss entry or connector accepts: feature levels and their layouts.

A recorded feature reaches DiffKD as one tensor or as a tuple of levels (an FPN), and each tensor
as a map (B, C, H, W), logits (B, C) or tokens (B, N, C). DiffKD's parts are convolutions, so
every level is viewed as a map, and what a connector hands on is put back in its input layout.
"""
import math
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .checks import check_positive_int, is_positive_int

Features = Union[torch.Tensor, Sequence[torch.Tensor]]


def per_level(value: Union[int, Sequence[int]], num_levels: int, owner: str, key: str) -> List[int]:
    """``value`` for every level: one positive int for all, or one per level.

    Raises:
        ValueError: naming ``owner``'s config ``key`` when the count or a value is wrong.
    """
    if isinstance(value, (list, tuple)):
        values = list(value)
    else:
        values = [value] * num_levels
    if len(values) != num_levels or not all(map(is_positive_int, values)):
        raise ValueError(f'{owner}: {key} must be a positive int or {num_levels} positive ints '
                         f'(num_levels={num_levels}), got {value!r}.')
    return values


def check_num_levels(num_levels, owner: str) -> int:
    return check_positive_int(num_levels, 'num_levels', owner)


def as_levels(feats: Features, num_levels: int, owner: str, arg: str) -> Tuple[torch.Tensor, ...]:
    """A tensor or a sequence of tensors as a tuple of ``num_levels`` tensors."""
    if isinstance(feats, torch.Tensor):
        feats = (feats, )
    feats = tuple(feats)
    if len(feats) != num_levels:
        raise ValueError(f'{owner}: {arg} has {len(feats)} feature level(s) but it was built '
                         f'with num_levels={num_levels}.')
    return feats


def to_maps(x: torch.Tensor, owner: str, arg: str, level: int) -> torch.Tensor:
    """View a level as (B, C, H, W): logits (B, C) as 1x1 maps, square token grids as maps."""
    if x.dim() == 4:
        return x
    if x.dim() == 2:  # logits (B, C)
        return x[:, :, None, None]
    if x.dim() == 3:  # tokens (B, N, C), N = side * side in row-major order
        b, n, c = x.shape
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f'{owner}: {arg}[{level}] holds {n} tokens, not a square number; '
                             'select the patch tokens (drop class/distill tokens) before DiffKD.')
        return x.transpose(1, 2).reshape(b, c, side, side)
    raise ValueError(f'{owner}: {arg}[{level}] must be (B, C, H, W), (B, C) or (B, N, C), got '
                     f'shape {tuple(x.shape)}.')


def from_maps(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Undo :func:`to_maps`: put a (B, L, H, W) map back in the layout of ``like``."""
    if like.dim() == 2:
        return x.flatten(1)
    if like.dim() == 3:
        return x.flatten(2).transpose(1, 2)
    return x


def check_channels(x: torch.Tensor,
                   expected: int,
                   owner: str,
                   arg: str,
                   key: str,
                   level: int,
                   source: Optional[str] = None) -> None:
    """Raise a ValueError naming the config ``key`` when ``x`` has not ``expected`` channels."""
    if x.shape[1] != expected:
        raise ValueError(
            f'{owner}: {arg}[{level}] has {x.shape[1]} channels (shape {tuple(x.shape)}) but '
            f'{key}={expected}; set {key} to the recorded feature\'s channels or record another '
            'module.' + (f' {arg} comes from {source}.' if source else ''))


def level_maps(feats: Features,
               num_levels: int,
               channels: List[int],
               owner: str,
               arg: str,
               key: str,
               source: Optional[str] = None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Each level of a call's input viewed as a map and checked against its channels.

    Args:
        feats (Tensor | Sequence[Tensor]): One tensor or ``num_levels`` tensors.
        num_levels (int): Levels expected.
        channels (list[int]): Channels expected per level (the config ``key``).
        owner (str): Who asks, for error messages; ``arg`` names the input, ``source`` where it
            was recorded.

    Yields:
        tuple[Tensor, Tensor]: per level, the map (B, C, H, W) and the input as given.
    """
    for level, given in enumerate(as_levels(feats, num_levels, owner, arg)):
        x = to_maps(given, owner, arg, level)
        check_channels(x, channels[level], owner, arg, key, level, source)
        yield x, given


def build_per_level(owner: str, share: bool, build: Callable[..., nn.Module], *channels:
                    List[int]) -> nn.ModuleList:
    """One module per level, ``build(*channels_of_the_level)``, or one for all levels.

    Args:
        owner (str): Who builds them, for error messages.
        share (bool): One module for all levels (``share_branch``); needs the same channels on
            every level.
        build (callable): Builds the module of a level from its channels.
        *channels (list[int]): Channels per level, one list per argument of ``build``.
    """
    if share:
        if any(len(set(values)) > 1 for values in channels):
            raise ValueError(f'{owner}: share_branch=True needs the same channels on every level,'
                             f' got {" and ".join(map(str, channels))}.')
        return nn.ModuleList([build(*(values[0] for values in channels))])
    return nn.ModuleList([build(*level) for level in zip(*channels)])
