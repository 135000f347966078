"""Embedded datasets: deterministic synthetic shapes for detection, segmentation and
classification, generated on demand (no download), with ready-made mmengine dataset configs."""
from .synthetic import (CLASSES, SEG_CLASSES, SEG_PALETTE, TASKS, cls_dataset_cfg,
                        default_data_root, det_dataset_cfg, ensure_dataset,
                        make_classification_dataset, make_detection_dataset,
                        make_segmentation_dataset, seg_dataset_cfg)

__all__ = [
    'CLASSES', 'SEG_CLASSES', 'SEG_PALETTE', 'TASKS', 'cls_dataset_cfg', 'default_data_root',
    'det_dataset_cfg', 'ensure_dataset', 'make_classification_dataset', 'make_detection_dataset',
    'make_segmentation_dataset', 'seg_dataset_cfg'
]
