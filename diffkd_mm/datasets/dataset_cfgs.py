"""mmengine dataset configs of the stock dataset classes over the generated folders."""
import os
from typing import Union

from .shapes import CLASSES, SEG_CLASSES, SEG_PALETTE, SPLITS

PathLike = Union[str, os.PathLike]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')


def _dataset_cfg(scope: str, dataset_type: str, data_dir: PathLike, split: str, overrides: dict,
                 **layout) -> dict:
    """``dict(_scope_, type, data_root, **layout, **overrides)`` after checking ``split``.

    ``_scope_`` lets the dataset (and its pipeline) build whatever the default scope is.
    """
    _check_split(split)
    return dict(
        _scope_=scope, type=dataset_type, data_root=os.fspath(data_dir), **layout, **overrides)


def det_dataset_cfg(data_dir: PathLike, split: str, **overrides) -> dict:
    """mmengine config of mmdet's ``CocoDataset`` over a :func:`make_detection_dataset` dir.

    Args:
        data_dir (str | PathLike): The generated dataset directory.
        split (str): ``'train'`` or ``'val'``.
        **overrides: More dataset arguments (``pipeline``, ``test_mode``, ...).

    Returns:
        dict: The dataset config, in scope ``mmdet``; the caller adds the pipeline.
    """
    return _dataset_cfg(
        'mmdet',
        'CocoDataset',
        data_dir,
        split,
        overrides,
        ann_file=f'annotations/instances_{split}.json',
        data_prefix=dict(img=f'images/{split}/'),
        metainfo=dict(classes=CLASSES))


def seg_dataset_cfg(data_dir: PathLike, split: str, **overrides) -> dict:
    """mmengine config of mmseg's ``BaseSegDataset`` over a :func:`make_segmentation_dataset`
    dir, in scope ``mmseg``; arguments as :func:`det_dataset_cfg`."""
    return _dataset_cfg(
        'mmseg',
        'BaseSegDataset',
        data_dir,
        split,
        overrides,
        data_prefix=dict(img_path=f'img_dir/{split}', seg_map_path=f'ann_dir/{split}'),
        img_suffix='.png',
        seg_map_suffix='.png',
        metainfo=dict(classes=SEG_CLASSES, palette=SEG_PALETTE),
        reduce_zero_label=False)


def cls_dataset_cfg(data_dir: PathLike, split: str, **overrides) -> dict:
    """mmengine config of mmpretrain's ``CustomDataset`` over a
    :func:`make_classification_dataset` dir, in scope ``mmpretrain``; arguments as
    :func:`det_dataset_cfg`."""
    return _dataset_cfg(
        'mmpretrain',
        'CustomDataset',
        data_dir,
        split,
        overrides,
        data_prefix=split,
        with_label=True,
        metainfo=dict(classes=CLASSES))
