"""Embedded datasets: deterministic synthetic shapes for detection, segmentation and
classification, generated on demand (no download), with ready-made mmengine dataset configs."""
from .dataset_cfgs import cls_dataset_cfg, det_dataset_cfg, seg_dataset_cfg
from .generate import (TASKS, default_data_root, ensure_dataset, make_classification_dataset,
                       make_detection_dataset, make_segmentation_dataset)
from .shapes import CLASSES, SEG_CLASSES, SEG_PALETTE

__all__ = [
    'CLASSES', 'SEG_CLASSES', 'SEG_PALETTE', 'TASKS', 'cls_dataset_cfg', 'default_data_root',
    'det_dataset_cfg', 'ensure_dataset', 'make_classification_dataset', 'make_detection_dataset',
    'make_segmentation_dataset', 'seg_dataset_cfg'
]
