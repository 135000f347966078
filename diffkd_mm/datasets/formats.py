"""Writers of one split of the embedded data in each task's standard on-disk format.

Each ``write_*_split(out_dir, split, args)`` draws the split's images with :mod:`.shapes`, writes
them under ``out_dir`` in the layout the task's stock dataset class reads unchanged, and returns
the split's statistics. ``args`` are the validated generation arguments (``num_train``,
``num_val``, ``img_size``, ``seed`` and, for scenes, ``max_objects``).
"""
import json
import os
import os.path as osp

import cv2
import numpy as np

from .shapes import CLASSES, classification_image, scene


def write_png(path: str, array: np.ndarray) -> None:
    """Write an image or label map as PNG.

    Encoded by OpenCV, written by Python, so that a failed write raises the OSError with its
    errno (a full disk is ENOSPC), which ``cv2.imwrite`` would reduce to False.
    """
    ok, encoded = cv2.imencode('.png', array)
    if not ok:
        raise ValueError(f'OpenCV could not encode {path} as PNG (array {array.shape})')
    with open(path, 'wb') as f:
        f.write(encoded.tobytes())


def file_name(index: int) -> str:
    """File name of image ``index`` of a split (zero-padded, sorts in index order)."""
    return f'{index:06d}.png'


def _scenes(args: dict, split: str):
    """``(index, image, label map, objects)`` of every scene of a detection/segmentation split."""
    for index in range(args[f'num_{split}']):
        yield (index, ) + scene(args['seed'], split, index, args['img_size'], args['max_objects'])


def write_coco_split(out_dir: str, split: str, args: dict, description: str = '') -> dict:
    """COCO detection format: ``images/<split>/NNNNNN.png`` and
    ``annotations/instances_<split>.json``.

    Each annotation has a ``bbox`` [x, y, w, h] covering the whole shape, its ``area`` in pixels,
    ``iscrowd`` 0 and the shape's outline as ``segmentation`` polygon; category ids are 1-3, in
    :data:`CLASSES` order.

    Returns:
        dict: ``images`` and ``objects`` counts.
    """
    img_dir = osp.join(out_dir, 'images', split)
    os.makedirs(img_dir)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for index, img, _, objects in _scenes(args, split):
        write_png(osp.join(img_dir, file_name(index)), img)
        image_id = index + 1
        images.append(
            dict(id=image_id, file_name=file_name(index), width=img.shape[1], height=img.shape[0]))
        for obj in objects:
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=obj['label'] + 1,
                    bbox=obj['bbox'],
                    area=obj['area'],
                    iscrowd=0,
                    segmentation=[obj['polygon']]))
    coco = dict(
        info=dict(description=description, **args),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)])
    with open(osp.join(out_dir, 'annotations', f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f)
    return dict(images=len(images), objects=len(annotations))


def write_seg_split(out_dir: str, split: str, args: dict) -> dict:
    """mmseg folder format: ``img_dir/<split>/NNNNNN.png`` (BGR) and ``ann_dir/<split>/NNNNNN.png``
    (uint8 label maps in :data:`SEG_CLASSES` order: 0 background, 1-3 the visible pixels of each
    class).

    Returns:
        dict: ``images`` and ``objects`` counts.
    """
    img_dir = osp.join(out_dir, 'img_dir', split)
    ann_dir = osp.join(out_dir, 'ann_dir', split)
    os.makedirs(img_dir)
    os.makedirs(ann_dir)
    num_objects = 0
    for index, img, label_map, objects in _scenes(args, split):
        write_png(osp.join(img_dir, file_name(index)), img)
        write_png(osp.join(ann_dir, file_name(index)), label_map)
        num_objects += len(objects)
    return dict(images=args[f'num_{split}'], objects=num_objects)


def write_cls_split(out_dir: str, split: str, args: dict) -> dict:
    """mmpretrain ``CustomDataset`` folder format: ``<split>/<class>/NNNNNN.png``.

    Returns:
        dict: ``images`` and ``per_class`` counts.
    """
    for name in CLASSES:
        os.makedirs(osp.join(out_dir, split, name))
    per_class = dict.fromkeys(CLASSES, 0)
    for index in range(args[f'num_{split}']):
        img, label = classification_image(args['seed'], split, index, args['img_size'])
        write_png(osp.join(out_dir, split, CLASSES[label], file_name(index)), img)
        per_class[CLASSES[label]] += 1
    return dict(images=args[f'num_{split}'], per_class=per_class)
