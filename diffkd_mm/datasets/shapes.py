"""Drawing the embedded shape scenes: circles, squares and triangles on cluttered backgrounds.

Each image shows a few circles, squares and triangles (filled or outlined, random size, colour,
rotation and position, possibly partly overlapping) on a cluttered background: a colour gradient
or a smooth texture, distractor lines and elongated blobs that are not objects, and Gaussian
noise. Image ``index`` of a split is drawn from its own generator,
``numpy.random.default_rng([seed, stream, split, index])``, so every image is reproducible on its
own and a dataset is byte-identical for a given seed.

Detection and segmentation draw the same scenes (:func:`scene`), so a detector and a segmentor
can be compared on one set; classification draws one large object per image
(:func:`classification_image`).
"""
from typing import List, Sequence, Tuple

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', ) + CLASSES
SEG_PALETTE = [[0, 0, 0], [220, 20, 60], [0, 128, 255], [255, 200, 0]]
SPLITS = ('train', 'val')

# Random streams: detection and segmentation share the scene stream on purpose (same images).
_SCENE_STREAM, _CLS_STREAM = 0, 1
# Object diameter as a fraction of the image side: several objects per scene, one large for cls.
_SCENE_SIZE_RANGE = (0.14, 0.4)
_CLS_SIZE_RANGE = (0.4, 0.75)
_MIN_VISIBLE = 0.5  # an object keeps at least this fraction of its pixels under later objects
_PLACEMENT_TRIES = 20
_COLOUR_CANDIDATES = 8
_OUTLINED_PROB = 0.3


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


def _pick_colour(rng: np.random.Generator, img: np.ndarray, instances: np.ndarray, mask: np.ndarray,
                 colours: List[np.ndarray]) -> np.ndarray:
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
                bbox=[float(x0),
                      float(y0),
                      float(xs.max() - x0 + 1),
                      float(ys.max() - y0 + 1)],
                area=float(len(xs)),
                polygon=points.reshape(-1).astype(float).tolist()))
        colours.append(colour)
        areas.append(len(xs))
    img += rng.normal(0, rng.uniform(2, 8), img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), label_map, objects


def scene(seed: int, split: str, index: int, img_size: int,
          max_objects: int) -> Tuple[np.ndarray, np.ndarray, List[dict]]:
    """Scene ``index`` of a detection/segmentation split: 1 to ``max_objects`` objects.

    Returns:
        tuple: ``(image, label_map, objects)`` as :func:`_render_scene` describes.
    """
    rng = _image_rng(seed, _SCENE_STREAM, split, index)
    labels = rng.integers(0, len(CLASSES), int(rng.integers(1, max_objects + 1)))
    return _render_scene(rng, img_size, labels, _SCENE_SIZE_RANGE)


def classification_image(seed: int, split: str, index: int,
                         img_size: int) -> Tuple[np.ndarray, int]:
    """Image ``index`` of a classification split: one large object of class ``index % 3``.

    Returns:
        tuple: BGR image (H, W, 3) uint8 and its class index into :data:`CLASSES` (balanced
        classes: the counts of a split differ by at most one).
    """
    label = index % len(CLASSES)
    rng = _image_rng(seed, _CLS_STREAM, split, index)
    img, _, _ = _render_scene(rng, img_size, [label], _CLS_SIZE_RANGE)
    return img, label
