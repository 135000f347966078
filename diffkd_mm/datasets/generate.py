"""Generating the embedded datasets once, into folders keyed by their arguments.

:func:`make_detection_dataset`, :func:`make_segmentation_dataset` and
:func:`make_classification_dataset` write one dataset with the writers of :mod:`.formats`;
:func:`ensure_dataset` generates each dataset once under :func:`default_data_root` and reuses it
after. A dataset is published atomically (:func:`diffkd_mm.fileio.publish_directory`) with a
``.complete`` marker holding the generation arguments and a manifest of its files (path and
size), written last: an interrupted run never leaves a half dataset that is reused, a dataset
damaged later (a file deleted or cut short) is found on reuse and generated again, and concurrent
calls (one per rank) are safe.
"""
import hashlib
import inspect
import json
import logging
import os
import os.path as osp
from functools import partial
from typing import Callable, Dict, Optional, Union

import numpy as np
from mmengine.logging import print_log

from ..fileio import atomic_write_text, publish_directory
from .formats import write_cls_split, write_coco_split, write_seg_split
from .shapes import CLASSES, SPLITS

TASKS = ('det', 'seg', 'cls')

# Part of every marker and cache key: bump it when the drawing or the layout changes, so that a
# dataset from an older generator is never reused.
GENERATOR_VERSION = 1
# The generator's name in markers (unchanged since version 1, so that datasets stay reusable).
_GENERATOR = 'diffkd_mm.datasets.synthetic'
_OWNER_FILE = '.diffkd_mm_synthetic'  # written first: this project created the folder
_MARKER_FILE = '.complete'  # written last: the dataset is complete

PathLike = Union[str, os.PathLike]


def default_data_root() -> str:
    """Directory under which :func:`ensure_dataset` generates datasets.

    Returns:
        str: ``$DIFFKD_DATA_ROOT`` if set and not empty, else ``~/.cache/diffkd_mm/data``.
    """
    root = os.environ.get('DIFFKD_DATA_ROOT') or osp.join('~', '.cache', 'diffkd_mm', 'data')
    return osp.abspath(osp.expanduser(root))


# --------------------------------------------------------------------------------- validation


def _check_int(name: str, value, minimum: int, why: str = '') -> int:
    """``value`` as an int, or a ValueError naming ``name`` if it is not an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}{why}, got {value!r}')
    return int(value)


def _check_root(root: PathLike) -> str:
    if not isinstance(root, (str, os.PathLike)) or not os.fspath(root):
        raise ValueError(f'root must be a non-empty path, got {root!r}')
    return osp.abspath(osp.expanduser(os.fspath(root)))


def _check_args(task: str, num_train, num_val, img_size, seed, max_objects=None) -> dict:
    """The validated generation arguments of ``task`` as plain ints (they go into JSON)."""
    min_images, why = 1, ''
    if task == 'cls':
        # Every class folder must exist, or CustomDataset would infer fewer classes.
        min_images, why = len(CLASSES), ' (one image per class at least)'
    args = dict(
        num_train=_check_int('num_train', num_train, min_images, why),
        num_val=_check_int('num_val', num_val, min_images, why),
        img_size=_check_int('img_size', img_size, 32),
        seed=_check_int('seed', seed, 0))
    if task != 'cls':
        args['max_objects'] = _check_int('max_objects', max_objects, 1)
    return args


# ---------------------------------------------------------------------------------- publishing


def _read_marker(data_dir: str):
    """The ``.complete`` marker of ``data_dir`` as a dict, or None if missing or unreadable."""
    try:
        with open(osp.join(data_dir, _MARKER_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _same_dataset(found, expected: dict) -> bool:
    return isinstance(found, dict) and all(
        found.get(key) == expected[key] for key in ('generator', 'version', 'task', 'args'))


def _manifest(data_dir: str) -> Dict[str, int]:
    """``{relative path: size in bytes}`` of every file of a dataset, markers excepted."""
    files = {}
    for folder, _, names in os.walk(data_dir):
        for name in names:
            path = osp.join(folder, name)
            rel = osp.relpath(path, data_dir)
            if rel not in (_MARKER_FILE, _OWNER_FILE):
                files[rel.replace(os.sep, '/')] = osp.getsize(path)
    return files


def manifest_problem(data_dir: str, marker) -> Optional[str]:
    """What is wrong with a dataset's files against its marker's manifest, or None if nothing.

    The manifest (``files``: relative path -> size, written with the dataset) is checked with one
    ``stat`` per file: a missing, truncated or grown file is found; a file changed in place at
    the same size is not (that would need reading every image).

    Args:
        data_dir (str): The dataset folder.
        marker (dict): Its ``.complete`` marker.

    Returns:
        str or None: e.g. ``'images/val/000003.png is missing'``; None if every file is there
        with its size.
    """
    files = marker.get('files') if isinstance(marker, dict) else None
    if not isinstance(files, dict) or not files:
        return 'it has no file manifest (written by an older diffkd_mm)'
    for rel, size in files.items():
        try:
            found = os.stat(osp.join(data_dir, rel)).st_size
        except OSError:
            return f'{rel} is missing'
        if found != size:
            return f'{rel} has {found} bytes instead of {size}'
    return None


def _intact(data_dir: str, expected: dict) -> bool:
    marker = _read_marker(data_dir)
    return _same_dataset(marker, expected) and manifest_problem(data_dir, marker) is None


def _generate(task: str, data_dir: str, args: dict, write_split: Callable[[str, str, dict],
                                                                          dict]) -> dict:
    """Writes a dataset atomically into ``data_dir``, or reuses the intact one found there.

    A dataset generated here with the same arguments is reused when every file of its manifest
    is there with its size; a damaged one is regenerated, with a one-line warning. The generator
    is deterministic per seed and arguments, so the regenerated files are the ones that were
    lost.

    Args:
        task (str): One of :data:`TASKS`.
        data_dir (str): Absolute target directory.
        args (dict): The validated generation arguments (recorded in the marker).
        write_split (Callable): ``write_split(out_dir, split, args)`` writes one split into
            ``out_dir`` and returns its statistics.

    Returns:
        dict: The marker (``generator``, ``version``, ``task``, ``args``, ``splits``) plus
        ``data_root``.
    """
    marker = dict(generator=_GENERATOR, version=GENERATOR_VERSION, task=task, args=args)

    def fill(out_dir: str) -> None:
        splits = {split: write_split(out_dir, split, args) for split in SPLITS}
        atomic_write_text(
            osp.join(out_dir, _MARKER_FILE),
            json.dumps(dict(marker, splits=splits, files=_manifest(out_dir))))

    found = _read_marker(data_dir)
    if _same_dataset(found, marker):
        problem = manifest_problem(data_dir, found)
        if problem is None:
            return _result(found, data_dir)
        print_log(
            f'dataset {data_dir} is damaged ({problem}): generating it again (the generator is '
            'deterministic per seed: same images and labels)',
            logger='current',
            level=logging.WARNING)
    publish_directory(data_dir, fill, _OWNER_FILE, lambda folder: _intact(folder, marker))
    return _result(_read_marker(data_dir), data_dir)


def _result(marker: dict, data_dir: str) -> dict:
    """What the generators return: the marker without its manifest, plus ``data_root``."""
    return dict({k: v for k, v in marker.items() if k != 'files'}, data_root=data_dir)


# ------------------------------------------------------------------------------ generators


def make_detection_dataset(root: PathLike,
                           num_train: int = 200,
                           num_val: int = 50,
                           img_size: int = 128,
                           seed: int = 0,
                           max_objects: int = 4) -> dict:
    """Generates a COCO-format detection dataset, read unchanged by mmdet's ``CocoDataset``.

    Layout: ``images/{train,val}/NNNNNN.png`` and ``annotations/instances_{train,val}.json``.
    Every image has 1 to ``max_objects`` objects; each annotation has a ``bbox`` [x, y, w, h]
    covering the whole shape (inside the image), its ``area`` in pixels, ``iscrowd`` 0, and the
    shape's outline as ``segmentation`` polygon. Category ids are 1-3, in :data:`CLASSES` order.
    If ``root`` already holds this dataset (same arguments), it is reused as is.

    Args:
        root (str | PathLike): Dataset directory. Created, or replaced if generated here
            before with other arguments; any other non-empty directory raises FileExistsError.
        num_train (int): Training images, >= 1. Defaults to 200.
        num_val (int): Validation images, >= 1. Defaults to 50.
        img_size (int): Side of the square images, >= 32. Defaults to 128.
        seed (int): Seed, >= 0. Defaults to 0.
        max_objects (int): Most objects per image, >= 1. Defaults to 4.

    Returns:
        dict: ``data_root`` (the absolute directory), ``task``, ``args``, ``version``,
        ``generator`` and ``splits`` (per split: ``images`` and ``objects`` counts).
    """
    data_dir = _check_root(root)
    args = _check_args('det', num_train, num_val, img_size, seed, max_objects)
    return _generate('det', data_dir, args,
                     partial(write_coco_split, description=f'{_GENERATOR} v{GENERATOR_VERSION}'))


def make_segmentation_dataset(root: PathLike,
                              num_train: int = 200,
                              num_val: int = 50,
                              img_size: int = 128,
                              seed: int = 0,
                              max_objects: int = 4) -> dict:
    """Generates an mmseg folder-format dataset, read unchanged by mmseg's ``BaseSegDataset``.

    Layout: ``img_dir/{train,val}/NNNNNN.png`` (BGR images) and ``ann_dir/{train,val}/NNNNNN.png``
    (uint8 single-channel label maps, values in :data:`SEG_CLASSES` order: 0 background, 1-3
    the visible pixels of each class; a later-drawn object overwrites an earlier one, as in the
    image). The scenes are the ones :func:`make_detection_dataset` draws for the same arguments.
    If ``root`` already holds this dataset (same arguments), it is reused as is.

    Arguments and return value as :func:`make_detection_dataset`.
    """
    data_dir = _check_root(root)
    args = _check_args('seg', num_train, num_val, img_size, seed, max_objects)
    return _generate('seg', data_dir, args, write_seg_split)


def make_classification_dataset(root: PathLike,
                                num_train: int = 300,
                                num_val: int = 60,
                                img_size: int = 64,
                                seed: int = 0) -> dict:
    """Generates an mmpretrain ``CustomDataset`` folder dataset: one object per image.

    Layout: ``{train,val}/<class>/NNNNNN.png``; the class of image ``i`` of a split is
    ``CLASSES[i % 3]``, so the classes are balanced (counts differ by at most one). The folder
    names sort in :data:`CLASSES` order, hence ``CustomDataset``'s labels are indices into it.
    If ``root`` already holds this dataset (same arguments), it is reused as is.

    Args:
        root (str | PathLike): Dataset directory. Created, or replaced if generated here
            before with other arguments; any other non-empty directory raises FileExistsError.
        num_train (int): Training images, >= 3 (one per class at least). Defaults to 300.
        num_val (int): Validation images, >= 3. Defaults to 60.
        img_size (int): Side of the square images, >= 32. Defaults to 64.
        seed (int): Seed, >= 0. Defaults to 0.

    Returns:
        dict: ``data_root`` (the absolute directory), ``task``, ``args``, ``version``,
        ``generator`` and ``splits`` (per split: ``images`` and per-class ``per_class`` counts).
    """
    data_dir = _check_root(root)
    args = _check_args('cls', num_train, num_val, img_size, seed)
    return _generate('cls', data_dir, args, write_cls_split)


_MAKERS = dict(
    det=make_detection_dataset, seg=make_segmentation_dataset, cls=make_classification_dataset)


def ensure_dataset(task: str, root: Optional[PathLike] = None, **kwargs) -> str:
    """Generates a dataset once into a directory keyed by its arguments, and reuses it after.

    The directory is ``<root>/<task>_<hash>``, the hash covering the generator version and all
    the arguments (defaults filled in, so ``seed=0`` and no seed give the same directory). A
    directory whose ``.complete`` marker is missing (an interrupted or tampered run), or one of
    whose files is missing or has another size than its manifest says, is regenerated;
    concurrent calls (e.g. one per rank) are safe.

    Args:
        task (str): ``'det'``, ``'seg'`` or ``'cls'``.
        root (str | PathLike, optional): Parent directory; None means :func:`default_data_root`.
        **kwargs: Arguments of :func:`make_detection_dataset`, :func:`make_segmentation_dataset`
            or :func:`make_classification_dataset`, except ``root``.

    Returns:
        str: The absolute dataset directory.
    """
    if task not in _MAKERS:
        raise ValueError(f'task must be one of {TASKS}, got {task!r}')
    maker = _MAKERS[task]
    params = {
        name: param.default
        for name, param in inspect.signature(maker).parameters.items() if name != 'root'
    }
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f'unknown argument(s) {unknown} for task {task!r}; expected some of '
                         f'{sorted(params)}')
    args = _check_args(task, **dict(params, **kwargs))
    parent = default_data_root() if root is None else _check_root(root)
    key = json.dumps(dict(version=GENERATOR_VERSION, args=args), sort_keys=True)
    data_dir = osp.join(parent, f'{task}_{hashlib.sha1(key.encode()).hexdigest()[:12]}')
    return maker(data_dir, **args)['data_root']
