"""YOLO-Panoptic's training targets from Cityscapes ``instanceIds`` (labelId*1000+k on thing
instances, the labelId elsewhere): one box per instance, and the maps the semantic and mask
losses read.

    targets = yolo_targets(instance_ids, thing_ids)
    targets["semantic"]   (H,W) uint8    trainIds, 255 void
    targets["boxes"]      (M,5) float32  detection class (index into thing_ids; -1: padding),
                                         x1, y1, x2, y2 in pixels (x2, y2 exclusive: a one-pixel
                                         instance at column 3 is [3, 4))
    targets["instances"]  (H,W) int16    j + 1 on the pixels of box j, 0 elsewhere

Boxes are padded to ``max_boxes`` rows so that a batch stacks into one tensor; an image with
more instances keeps the largest. Crowd regions (thing pixels without an instance id) get no
box. ``YoloPanopticDataset`` is ``CityscapesPanoptic`` (same augmentation) with these targets.
"""
from __future__ import annotations

import numpy as np

from pisr_ros.data.dataset import CityscapesPanoptic, read_sample
from pisr_ros.data.augment import augment, resize_sample
from pisr_ros.data.targets import INSTANCE_DIVISOR
from pisr_ros.taxonomy import LABEL_TO_TRAIN

MAX_BOXES = 128  # Cityscapes' busiest fine frames have about 100 thing instances
MIN_BOX_SIDE = 2  # pixels; slivers cut by a crop border are not worth a box


def yolo_targets(instance_ids: np.ndarray, thing_ids, max_boxes: int = MAX_BOXES) -> dict[str, np.ndarray]:
    inst = np.asarray(instance_ids).astype(np.int64, copy=False)
    if inst.ndim != 2:
        raise ValueError(f"instance_ids must be HxW, got shape {inst.shape}")
    label_ids = np.where(inst >= INSTANCE_DIVISOR, inst // INSTANCE_DIVISOR, inst)
    semantic = LABEL_TO_TRAIN[np.clip(label_ids, 0, 255).astype(np.uint8)]
    det_class = np.full(256, -1, np.int64)
    det_class[np.asarray(thing_ids, np.int64)] = np.arange(len(thing_ids))
    boxes = np.zeros((max_boxes, 5), np.float32)
    boxes[:, 0] = -1
    instances = np.zeros(inst.shape, np.int16)
    ids, inverse = np.unique(inst, return_inverse=True)
    inverse = inverse.reshape(inst.shape)
    found = []
    for n, value in enumerate(ids):
        if value < INSTANCE_DIVISOR:
            continue
        cls = det_class[LABEL_TO_TRAIN[value // INSTANCE_DIVISOR]]
        if cls < 0:  # caravan, trailer: void in the training classes
            continue
        ys, xs = np.nonzero(inverse == n)
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        if min(x2 - x1, y2 - y1) < MIN_BOX_SIDE:
            continue
        found.append((ys.size, n, cls, (x1, y1, x2, y2)))
    found.sort(key=lambda f: -f[0])
    for j, (_, n, cls, box) in enumerate(found[:max_boxes]):
        boxes[j] = (cls, *box)
        instances[inverse == n] = j + 1
    return {"semantic": semantic, "boxes": boxes, "instances": instances}


class YoloPanopticDataset(CityscapesPanoptic):
    """``CityscapesPanoptic``'s images and augmentation, ``yolo_targets``' targets."""

    def __init__(self, root, split, input_size, thing_ids, max_boxes: int = MAX_BOXES, **options):
        super().__init__(root, split, input_size, **options)
        self.thing_ids = tuple(thing_ids)
        self.max_boxes = max_boxes

    def __getitem__(self, key) -> dict:
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        index = int(index)
        sample = read_sample(self.paths(index))
        if self.train:
            rng = np.random.default_rng([self.seed, index] if sample_seed is None else [self.seed, index, int(sample_seed)])
            sample, _ = augment(sample, self.aug, rng)
        else:
            sample = resize_sample(sample, self.input_size)
        targets = yolo_targets(sample.instance_ids, self.thing_ids, self.max_boxes)
        targets["image"] = np.ascontiguousarray(sample.image.transpose(2, 0, 1))
        targets["index"] = np.int64(index)
        return targets
