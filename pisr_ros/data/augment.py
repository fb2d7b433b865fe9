"""Training augmentations on an image and its Cityscapes label maps, applied together.

Labels (labelIds, instanceIds) are resized by nearest neighbour only: interpolating ids would
invent classes and instances at every boundary.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pisr_ros.panoptic import resize_nearest
from pisr_ros.taxonomy import VOID_LABEL_ID


@dataclass(frozen=True)
class Augment:
    """Random scale, then a random crop (padded with void where the image is smaller), then a flip.

    ``base_size`` (H, W) is the size the scale factors are relative to: the model's input size,
    so that a factor of 1.0 shows objects as large as the model will see them at run time.
    """

    base_size: tuple[int, int]
    crop_size: tuple[int, int]
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True


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
    s = resize_sample(s, (max(1, round(bh * scale)), max(1, round(bw * scale))))
    s = random_crop(s, aug.crop_size, rng)
    if aug.flip and rng.random() < 0.5:
        s = Sample(s.image[:, ::-1].copy(), s.label_ids[:, ::-1].copy(), s.instance_ids[:, ::-1].copy())
    return s, scale


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
