"""Training augmentations on an image and its Cityscapes label maps, applied together.

Labels (labelIds, instanceIds) are resized by nearest neighbour only: interpolating ids would
invent classes and instances at every boundary.

``augment`` scales and crops in one step: only the crop's pixels are computed (the image by an
affine warp, the labels by gathering the nearest source rows and columns), never the whole
scaled image. At scale 2 that is 1/16 of the work of resizing then cropping (the loader's
augmentation went from ~45 to ~3 ms a sample, docs/training.md), and the labels are exactly
those of resize-then-crop.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pisr_ros.panoptic import nearest_indices, resize_nearest
from pisr_ros.taxonomy import IS_THING, LABEL_TO_TRAIN, VOID_LABEL_ID, VOID_TRAIN_ID

INSTANCE_DIVISOR = 1000  # Cityscapes instanceIds: labelId * 1000 + k


@dataclass(frozen=True)
class Augment:
    """Random scale, then a random crop (padded with void where the image is smaller), then a flip.

    ``base_size`` (H, W) is the size the scale factors are relative to: the model's input size,
    so that a factor of 1.0 shows objects as large as the model will see them at run time.
    ``thing_crop_prob``: the share of crops placed on a thing instance (one drawn uniformly among
    the image's instances, then one of its pixels, which lands anywhere in the crop) rather than
    anywhere; like class-balanced crops, it shows the center and offset heads more instances,
    small ones in particular, than uniform crops of street scenes do.
    """

    base_size: tuple[int, int]
    crop_size: tuple[int, int]
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    thing_crop_prob: float = 0.0


@dataclass
class Sample:
    image: np.ndarray  # HxWx3 uint8 RGB
    label_ids: np.ndarray  # HxW uint8
    instance_ids: np.ndarray  # HxW int32


def resize_sample(s: Sample, size: tuple[int, int]) -> Sample:
    h, w = size
    if s.image.shape[:2] == (h, w):
        return s
    return Sample(
        cv2.resize(s.image, (w, h), interpolation=cv2.INTER_LINEAR),
        # Both label maps sampled at the same pixel centres, so they stay aligned (cv2's nearest
        # samples block corners, and has no int32 resize on every build).
        resize_nearest(s.label_ids, (h, w)),
        resize_nearest(s.instance_ids, (h, w)),
    )


def augment(s: Sample, aug: Augment, rng: np.random.Generator) -> tuple[Sample, float]:
    """The augmented sample and the scale factor drawn (targets need it: small-instance
    thresholds scale with the image)."""
    scale = float(rng.uniform(*aug.scale_range))
    bh, bw = aug.base_size
    scaled = (max(1, round(bh * scale)), max(1, round(bw * scale)))
    ch, cw = aug.crop_size
    point = None
    if aug.thing_crop_prob > 0 and rng.random() < aug.thing_crop_prob:
        point = _thing_pixel(s.instance_ids, rng)
    if point is None:
        y = int(rng.integers(0, max(scaled[0] - ch, 0) + 1))
        x = int(rng.integers(0, max(scaled[1] - cw, 0) + 1))
    else:
        h, w = s.label_ids.shape
        py, px = int(point[0] * scaled[0] / h), int(point[1] * scaled[1] / w)
        y = _window_start(py, ch, scaled[0], rng)
        x = _window_start(px, cw, scaled[1], rng)
    s = scaled_crop(s, scaled, (y, x), (ch, cw))
    if aug.flip and rng.random() < 0.5:
        s = Sample(s.image[:, ::-1].copy(), s.label_ids[:, ::-1].copy(), s.instance_ids[:, ::-1].copy())
    return s, scale


def _window_start(p: int, size: int, total: int, rng: np.random.Generator) -> int:
    """Start of a ``size`` window inside [0, total) holding position ``p``, uniform among those."""
    hi = min(p, total - size)
    lo = max(0, p - size + 1)
    return int(rng.integers(lo, hi + 1)) if hi >= lo else 0


def _thing_pixel(instance_ids: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """A pixel of a thing instance: the instance uniform among the image's, the pixel uniform in it
    (so a pedestrian is as likely as a bus, whatever their areas); None without instances."""
    ys, xs = np.nonzero(instance_ids >= INSTANCE_DIVISOR)
    if ys.size == 0:
        return None
    ids = instance_ids[ys, xs]
    train = LABEL_TO_TRAIN[(ids // INSTANCE_DIVISOR).astype(np.uint8)]
    keep = train != VOID_TRAIN_ID
    keep[keep] = IS_THING[train[keep]]  # caravan/trailer instances are void: no target to show
    if not keep.any():
        return None
    ys, xs, ids = ys[keep], xs[keep], ids[keep]
    uniq, inverse = np.unique(ids, return_inverse=True)
    chosen = np.flatnonzero(inverse == rng.integers(len(uniq)))
    i = chosen[rng.integers(chosen.size)]
    return int(ys[i]), int(xs[i])


def scaled_crop(s: Sample, scaled: tuple[int, int], origin: tuple[int, int], crop: tuple[int, int]) -> Sample:
    """The ``crop`` window at ``origin`` of ``s`` resized to ``scaled`` (H, W), computed directly;
    where the window passes the scaled image's edge it is void (label 0, black image)."""
    h, w = s.label_ids.shape
    (sh, sw), (y0, x0), (ch, cw) = scaled, origin, crop
    fy, fx = sh / h, sw / w
    # Bilinear at pixel centres, as cv2.resize: source = (dst + origin + 0.5) / f - 0.5.
    m = np.array([[1 / fx, 0, (x0 + 0.5) / fx - 0.5], [0, 1 / fy, (y0 + 0.5) / fy - 0.5]])
    image = cv2.warpAffine(s.image, m, (cw, ch), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
    vy, vx = max(0, min(ch, sh - y0)), max(0, min(cw, sw - x0))  # the part inside the scaled image
    rows = nearest_indices(h, sh)[y0:y0 + vy]
    cols = nearest_indices(w, sw)[x0:x0 + vx]
    label_ids = np.full((ch, cw), VOID_LABEL_ID, np.uint8)
    instance_ids = np.full((ch, cw), VOID_LABEL_ID, np.int32)
    label_ids[:vy, :vx] = s.label_ids[rows][:, cols]
    instance_ids[:vy, :vx] = s.instance_ids[rows][:, cols]
    if vy < ch or vx < cw:
        image[vy:] = 0
        image[:, vx:] = 0
    return Sample(image, label_ids, instance_ids)


def random_crop(s: Sample, crop: tuple[int, int], rng: np.random.Generator) -> Sample:
    ch, cw = crop
    h, w = s.label_ids.shape
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:
        s = Sample(
            np.pad(s.image, ((0, ph), (0, pw), (0, 0))),
            np.pad(s.label_ids, ((0, ph), (0, pw)), constant_values=VOID_LABEL_ID),
            np.pad(s.instance_ids, ((0, ph), (0, pw)), constant_values=VOID_LABEL_ID),
        )
        h, w = h + ph, w + pw
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return Sample(s.image[y : y + ch, x : x + cw], s.label_ids[y : y + ch, x : x + cw], s.instance_ids[y : y + ch, x : x + cw])
