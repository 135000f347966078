"""Deterministic synthetic shape datasets for detection, segmentation and classification.

Each image shows a few circles, squares and triangles (filled or outlined, random size, colour,
rotation and position, possibly partly overlapping) on a cluttered background: a colour gradient
or a smooth texture, distractor lines and elongated blobs that are not objects, and Gaussian
noise. Image ``index`` of a split is drawn from its own generator,
``numpy.random.default_rng([seed, stream, split, index])``, so every image is reproducible on its
own and the datasets are byte-identical for a given seed.

The detection and segmentation datasets draw the same scenes (same seed, ``img_size`` and
``max_objects`` give the same images), so a detector and a segmentor can be compared on one set.

Datasets are written into a temporary directory next to the target and renamed into place once
complete, with a ``.complete`` marker holding the generation arguments: an interrupted run never
leaves a half dataset that is reused, and :func:`ensure_dataset` generates each dataset once.
"""
import hashlib
import inspect
import json
import os
import os.path as osp
import shutil
import tempfile
import uuid
from typing import Callable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', ) + CLASSES
SEG_PALETTE = [[0, 0, 0], [220, 20, 60], [0, 128, 255], [255, 200, 0]]
TASKS = ('det', 'seg', 'cls')
SPLITS = ('train', 'val')

# Part of every marker and cache key: bump it when the drawing or the layout changes, so that a
# dataset from an older generator is never reused.
GENERATOR_VERSION = 1
_GENERATOR = 'diffkd_mm.datasets.synthetic'
_OWNER_FILE = '.diffkd_mm_synthetic'  # written first: this module created the directory
_MARKER_FILE = '.complete'  # written last: the dataset is complete

# Random streams: detection and segmentation share the scene stream on purpose (same images).
_SCENE_STREAM, _CLS_STREAM = 0, 1
# Object diameter as a fraction of the image side: several objects per scene, one large for cls.
_SCENE_SIZE_RANGE = (0.14, 0.4)
_CLS_SIZE_RANGE = (0.4, 0.75)
_MIN_VISIBLE = 0.5  # an object keeps at least this fraction of its pixels under later objects
_PLACEMENT_TRIES = 20
_COLOUR_CANDIDATES = 8
_OUTLINED_PROB = 0.3

PathLike = Union[str, os.PathLike]


def default_data_root() -> str:
    """Directory under which :func:`ensure_dataset` generates datasets.

    Returns:
        str: ``$DIFFKD_DATA_ROOT`` if set and not empty, else ``~/.cache/diffkd_mm/data``.
    """
    root = os.environ.get('DIFFKD_DATA_ROOT') or osp.join('~', '.cache', 'diffkd_mm', 'data')
    return osp.abspath(osp.expanduser(root))


# ------------------------------------------------------------------------------------ drawing


def _image_rng(seed: int, stream: int, split: str, index: int) -> np.random.Generator:
    """The generator of one image, independent of every other image."""
    return np.random.default_rng([seed, stream, SPLITS.index(split), index])


def _draw_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) float32 gradient or smooth texture, with distractor lines and blobs."""
    base = rng.uniform(30, 225, 3)
    if rng.random() < 0.5:
        # Linear gradient from `base` to a nearby colour along a random direction.
        end = np.clip(base + rng.uniform(-80, 80, 3), 0, 255)
        theta = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        t = np.cos(theta) * xx + np.sin(theta) * yy
        t = (t - t.min()) / (t.max() - t.min())
        img = base + t[..., None] * (end - base)
    else:
        # Smooth texture: a coarse random grid around `base`, upsampled bicubically.
        cells = int(rng.integers(3, 9))
        coarse = base + rng.uniform(-1, 1, (cells, cells, 3)) * rng.uniform(20, 60)
        img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.ascontiguousarray(img, dtype=np.float32)

    # Clutter that is not an object: thin lines and elongated translucent blobs (too thin to
    # pass for a circle). Drawn first, so that objects cover them as the label maps say.
    for _ in range(int(rng.integers(0, 4))):
        p0, p1 = rng.integers(0, size, (2, 2))
        colour = rng.uniform(0, 255, 3).tolist()
        cv2.line(img, tuple(map(int, p0)), tuple(map(int, p1)), colour, int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(0, 3))):
        centre = tuple(map(int, rng.integers(0, size, 2)))
        major = int(rng.uniform(0.08, 0.25) * size)
        axes = (major, max(1, int(major * rng.uniform(0.15, 0.4))))
        blob = np.zeros((size, size), np.uint8)
        cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        alpha = rng.uniform(0.3, 0.6)
        inside = blob.astype(bool)
        img[inside] = (1 - alpha) * img[inside] + alpha * rng.uniform(0, 255, 3)
    return img


def _shape_outline(rng: np.random.Generator, label: int, radius: float) -> np.ndarray:
    """Vertices (N, 2) of a shape centred on the origin, inside a circle of ``radius``."""
    name = CLASSES[label]
    if name == 'circle':
        # A 32-gon is within 0.005 * radius of the circle, and it gives the COCO polygon.
        angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if name == 'square':
        # Near-square rectangle (aspect 0.8-1.25) with half-diagonal `radius`, rotated <= 30 deg.
        half_angle = np.arctan(1 / rng.uniform(0.8, 1.25))
        corners = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float64)
        corners *= radius * np.array([np.cos(half_angle), np.sin(half_angle)])
        rot = np.deg2rad(rng.uniform(-30, 30))
        rotation = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
        return corners @ rotation.T
    # Triangle: three vertices on the circle, each up to ~15 deg off the equilateral position.
    angles = rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.25, 0.25, 3)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _pick_colour(rng: np.random.Generator, img: np.ndarray, instances: np.ndarray,
                 mask: np.ndarray, colours: List[np.ndarray]) -> np.ndarray:
    """The candidate colour furthest (L1) from everything the new object covers."""
    covered = instances[mask]
    references = [colours[k] for k in np.unique(covered[covered >= 0])]
    if (covered < 0).any():
        references.append(img[mask & (instances < 0)].mean(axis=0))
    candidates = rng.uniform(0, 255, (_COLOUR_CANDIDATES, 3))
    distances = np.abs(candidates[:, None] - np.asarray(references)[None]).sum(-1).min(axis=1)
    return candidates[int(distances.argmax())]


def _render_scene(rng: np.random.Generator, img_size: int, labels: Sequence[int],
                  size_range: Tuple[float, float]) -> Tuple[np.ndarray, np.ndarray, List[dict]]:
    """Draws objects of the given classes, in order, on a cluttered background.

    An object whose every placement would hide more than half of an earlier object is dropped;
    the first one always fits, so a scene has at least one object.

    Args:
        rng (np.random.Generator): The image's generator.
        img_size (int): Image side.
        labels (Sequence[int]): Class indices (into :data:`CLASSES`) to draw.
        size_range (tuple[float, float]): Object diameter range, as fractions of ``img_size``.

    Returns:
        tuple: BGR image (H, W, 3) uint8; label map (H, W) uint8 with 0 for the background and
        ``label + 1`` for the visible pixels of each object; the drawn objects, each a dict with
        ``label``, ``bbox`` ([x, y, w, h] of the whole shape, inside the image), ``area`` (its
        pixel count) and ``polygon`` (its outline, flat [x1, y1, x2, y2, ...]).
    """
    img = _draw_background(rng, img_size)
    label_map = np.zeros((img_size, img_size), np.uint8)
    instances = np.full((img_size, img_size), -1, np.int16)  # which object shows at each pixel
    objects, colours, areas = [], [], []
    for label in labels:
        radius = rng.uniform(*size_range) * img_size / 2
        thickness = max(2, int(round(radius / 4))) if rng.random() < _OUTLINED_PROB else 0
        # Keeps the shape, its stroke and the rounding of its vertices inside the image.
        margin = thickness // 2 + 2
        radius = min(radius, img_size / 2 - margin - 1)
        outline = _shape_outline(rng, label, radius)
        low = np.ceil(margin - outline.min(axis=0))
        high = np.floor(img_size - 1 - margin - outline.max(axis=0))
        for _ in range(_PLACEMENT_TRIES):
            points = np.round(outline + rng.uniform(low, high)).astype(np.int32)
            mask = np.zeros((img_size, img_size), np.uint8)
            if thickness:
                cv2.polylines(mask, [points], True, 1, thickness)
            else:
                cv2.fillPoly(mask, [points], 1)
            mask = mask.astype(bool)
            still_visible = np.bincount(instances[~mask & (instances >= 0)], minlength=len(areas))
            if np.all(still_visible >= _MIN_VISIBLE * np.asarray(areas, np.int64)):
                break
        else:
            continue
        colour = _pick_colour(rng, img, instances, mask, colours)
        img[mask] = colour
        label_map[mask] = label + 1
        instances[mask] = len(objects)
        ys, xs = np.nonzero(mask)
        x0, y0 = int(xs.min()), int(ys.min())
        objects.append(
            dict(
                label=int(label),
                bbox=[float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)],
                area=float(len(xs)),
                polygon=points.reshape(-1).astype(float).tolist()))
        colours.append(colour)
        areas.append(len(xs))
    img += rng.normal(0, rng.uniform(2, 8), img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), label_map, objects


def _scene(seed: int, split: str, index: int, img_size: int,
           max_objects: int) -> Tuple[np.ndarray, np.ndarray, List[dict]]:
    """Scene ``index`` of a detection/segmentation split: 1 to ``max_objects`` objects."""
    rng = _image_rng(seed, _SCENE_STREAM, split, index)
    labels = rng.integers(0, len(CLASSES), int(rng.integers(1, max_objects + 1)))
    return _render_scene(rng, img_size, labels, _SCENE_SIZE_RANGE)


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


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')


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


# ---------------------------------------------------------------------------- atomic writing


def _dump_json(obj, path: str) -> None:
    with open(path, 'w') as f:
        json.dump(obj, f)


def _write_png(path: str, array: np.ndarray) -> None:
    if not cv2.imwrite(path, array):
        raise OSError(f'could not write {path}')


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


def _check_replaceable(data_dir: str) -> None:
    """Refuses to overwrite anything this module did not create (an empty dir is fine)."""
    if not osp.lexists(data_dir):
        return
    if not osp.isdir(data_dir) or (os.listdir(data_dir)
                                   and not osp.isfile(osp.join(data_dir, _OWNER_FILE))):
        raise FileExistsError(
            f'{data_dir} exists and was not created by {_GENERATOR}: refusing to overwrite it; '
            'remove it or choose another directory')


def _remove_own_dir(data_dir: str) -> None:
    """Removes a directory this module created, renaming it away first so that the target path
    never shows a half-deleted dataset."""
    trash = tempfile.mkdtemp(prefix=f'.{osp.basename(data_dir)}.old-', dir=osp.dirname(data_dir))
    os.rename(data_dir, osp.join(trash, 'old'))
    shutil.rmtree(trash)


def _file_name(index: int) -> str:
    return f'{index:06d}.png'


def _scenes(args: dict, split: str):
    """``(index, image, label map, objects)`` of every scene of a detection/segmentation split."""
    for index in range(args[f'num_{split}']):
        yield (index, ) + _scene(args['seed'], split, index, args['img_size'],
                                 args['max_objects'])


def _generate(task: str, data_dir: str, args: dict,
              write_split: Callable[[str, str], dict]) -> dict:
    """Writes a dataset atomically into ``data_dir``, or reuses the complete one found there.

    Args:
        task (str): One of :data:`TASKS`.
        data_dir (str): Absolute target directory.
        args (dict): The validated generation arguments (recorded in the marker).
        write_split (Callable): ``write_split(out_dir, split)`` writes one split into
            ``out_dir`` and returns its statistics.

    Returns:
        dict: The marker (``generator``, ``version``, ``task``, ``args``, ``splits``) plus
        ``data_root``.
    """
    marker = dict(generator=_GENERATOR, version=GENERATOR_VERSION, task=task, args=args)
    found = _read_marker(data_dir)
    if _same_dataset(found, marker):
        return dict(found, data_root=data_dir)
    _check_replaceable(data_dir)
    parent = osp.dirname(data_dir)
    os.makedirs(parent, exist_ok=True)
    # Not tempfile.mkdtemp: its 0o700 mode would stay on the published dataset.
    tmp = osp.join(parent, f'.{osp.basename(data_dir)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}')
    os.mkdir(tmp)
    try:
        _dump_json(dict(generator=_GENERATOR), osp.join(tmp, _OWNER_FILE))
        marker['splits'] = {split: write_split(tmp, split) for split in SPLITS}
        _dump_json(marker, osp.join(tmp, _MARKER_FILE))
        if osp.isdir(data_dir) and os.listdir(data_dir) and not _same_dataset(
                _read_marker(data_dir), marker):
            # Ours (checked above) but incomplete or made with other arguments.
            _remove_own_dir(data_dir)
        try:
            os.rename(tmp, data_dir)
        except OSError:
            # Renaming onto a non-empty directory fails: a concurrent call (e.g. another rank)
            # published the same dataset first.
            found = _read_marker(data_dir)
            if not _same_dataset(found, marker):
                raise
            shutil.rmtree(tmp)
            marker = found
    except BaseException:
        # Also on KeyboardInterrupt: never leave a temporary directory behind.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dict(marker, data_root=data_dir)


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
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)]

    def write_split(out_dir: str, split: str) -> dict:
        img_dir = osp.join(out_dir, 'images', split)
        os.makedirs(img_dir)
        os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
        images, annotations = [], []
        for index, img, _, objects in _scenes(args, split):
            _write_png(osp.join(img_dir, _file_name(index)), img)
            image_id = index + 1
            images.append(
                dict(id=image_id, file_name=_file_name(index), width=img.shape[1],
                     height=img.shape[0]))
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
            info=dict(description=f'{_GENERATOR} v{GENERATOR_VERSION}', **args),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=categories)
        _dump_json(coco, osp.join(out_dir, 'annotations', f'instances_{split}.json'))
        return dict(images=len(images), objects=len(annotations))

    return _generate('det', data_dir, args, write_split)


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
    args = _check_args('seg', num_train, num_val, img_size, seed, max_objects)

    def write_split(out_dir: str, split: str) -> dict:
        img_dir = osp.join(out_dir, 'img_dir', split)
        ann_dir = osp.join(out_dir, 'ann_dir', split)
        os.makedirs(img_dir)
        os.makedirs(ann_dir)
        num_objects = 0
        for index, img, label_map, objects in _scenes(args, split):
            _write_png(osp.join(img_dir, _file_name(index)), img)
            _write_png(osp.join(ann_dir, _file_name(index)), label_map)
            num_objects += len(objects)
        return dict(images=args[f'num_{split}'], objects=num_objects)

    return _generate('seg', data_dir, args, write_split)


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

    def write_split(out_dir: str, split: str) -> dict:
        for name in CLASSES:
            os.makedirs(osp.join(out_dir, split, name))
        per_class = dict.fromkeys(CLASSES, 0)
        for index in range(args[f'num_{split}']):
            label = index % len(CLASSES)
            rng = _image_rng(args['seed'], _CLS_STREAM, split, index)
            img, _, _ = _render_scene(rng, args['img_size'], [label], _CLS_SIZE_RANGE)
            _write_png(osp.join(out_dir, split, CLASSES[label], _file_name(index)), img)
            per_class[CLASSES[label]] += 1
        return dict(images=args[f'num_{split}'], per_class=per_class)

    return _generate('cls', data_dir, args, write_split)


_MAKERS = dict(
    det=make_detection_dataset, seg=make_segmentation_dataset, cls=make_classification_dataset)


def ensure_dataset(task: str, root: Optional[PathLike] = None, **kwargs) -> str:
    """Generates a dataset once into a directory keyed by its arguments, and reuses it after.

    The directory is ``<root>/<task>_<hash>``, the hash covering the generator version and all
    the arguments (defaults filled in, so ``seed=0`` and no seed give the same directory). A
    directory whose ``.complete`` marker is missing (an interrupted or tampered run) is
    regenerated; concurrent calls (e.g. one per rank) are safe.

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


# ------------------------------------------------------------------------- dataset configs


def _dataset_cfg(scope: str, dataset_type: str, data_dir: PathLike, split: str,
                 overrides: dict, **layout) -> dict:
    """``dict(_scope_, type, data_root, **layout, **overrides)`` after checking ``split``.

    ``_scope_`` lets the dataset (and its pipeline) build whatever the default scope is.
    """
    _check_split(split)
    return dict(_scope_=scope, type=dataset_type, data_root=os.fspath(data_dir), **layout,
                **overrides)


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
        'mmdet', 'CocoDataset', data_dir, split, overrides,
        ann_file=f'annotations/instances_{split}.json',
        data_prefix=dict(img=f'images/{split}/'),
        metainfo=dict(classes=CLASSES))


def seg_dataset_cfg(data_dir: PathLike, split: str, **overrides) -> dict:
    """mmengine config of mmseg's ``BaseSegDataset`` over a :func:`make_segmentation_dataset`
    dir, in scope ``mmseg``; arguments as :func:`det_dataset_cfg`."""
    return _dataset_cfg(
        'mmseg', 'BaseSegDataset', data_dir, split, overrides,
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
        'mmpretrain', 'CustomDataset', data_dir, split, overrides,
        data_prefix=split,
        with_label=True,
        metainfo=dict(classes=CLASSES))
