"""Panoptic-DeepLab training targets from a Cityscapes instanceIds / labelIds pair (numpy).

Cityscapes' ``*_instanceIds.png`` holds labelId*1000 + k for pixels of individual thing
instances and the plain labelId elsewhere (stuff, void, and thing "groups" = crowd regions).
The targets follow detectron2's ``PanopticDeepLabTargetGenerator``:

  semantic          (H,W) uint8    trainId, 255 void
  semantic_weights  (H,W) float32  1, or ``small_instance_weight`` (3) on instances smaller
                                   than ``small_instance_area`` (4096 px at full resolution)
  center            (1,H,W) float32  max over instances of a Gaussian (sigma 8) at the
                                   rounded mean of each instance's mask
  center_weights    (1,H,W) float32  1 on labelled pixels except crowd regions, else 0
  offset            (2,H,W) float32  (dy, dx) from each instance pixel to its mask mean
  offset_weights    (1,H,W) float32  1 on instance pixels, else 0

    t = make_targets(instance_ids, label_ids, scale=0.5)   # images resized to 1024x512
    batch = collate_targets([t1, t2, ...])                  # dict of torch tensors for the loss
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pisr_ros.taxonomy import IS_THING, LABEL_TO_TRAIN, VOID_TRAIN_ID

INSTANCE_DIVISOR = 1000  # Cityscapes instanceIds: labelId * 1000 + k


@dataclass(frozen=True)
class TargetConfig:
    sigma: float = 8.0  # center Gaussian, in pixels of the target map
    small_instance_area: int = 4096  # at full Cityscapes resolution (1024x2048)
    small_instance_weight: float = 3.0


def _gaussian_window(sigma: float):
    # detectron2's window: (6 sigma + 3) wide, peak in the middle, values beyond it 0.
    radius = int(round(3 * sigma + 1))
    ax = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)
    return g, radius


def _instance_moments(inst: np.ndarray, is_instance: np.ndarray):
    """Pixels (ys, xs) of the instances, each one's dense instance number, and per instance its
    area and mean row and column. Bincounts, O(pixels + max id): ids are below 34000, so a
    lookup table renumbers them densely without sorting."""
    ys, xs = np.nonzero(is_instance)
    if not ys.size:
        empty = np.zeros(0)
        return ys, xs, ys, empty, empty, empty
    ids = inst[ys, xs]
    present = np.bincount(ids) > 0
    dense = (np.cumsum(present) - 1)[ids]
    area = np.bincount(dense)
    return ys, xs, dense, area, np.bincount(dense, weights=ys) / area, np.bincount(dense, weights=xs) / area


def instance_centers(instance_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The thing instances of a Cityscapes instanceIds map, in id order: their centers (K, 2)
    (row, column; the mask means the center targets are drawn at), trainIds (K,) and areas (K,)."""
    inst = np.asarray(instance_ids).astype(np.int64, copy=False)
    semantic = LABEL_TO_TRAIN[np.where(inst >= INSTANCE_DIVISOR, inst // INSTANCE_DIVISOR, inst).astype(np.uint8)]
    void = semantic == VOID_TRAIN_ID
    is_instance = (inst >= INSTANCE_DIVISOR) & ~void & IS_THING[np.where(void, 0, semantic)]
    ys, xs, dense, area, cy, cx = _instance_moments(inst, is_instance)
    classes = np.zeros(len(area), np.int64)
    classes[dense] = semantic[ys, xs]
    return np.stack([cy, cx], axis=1).reshape(-1, 2), classes, np.asarray(area)


def make_targets(instance_ids: np.ndarray, label_ids: np.ndarray | None = None,
                 cfg: TargetConfig = TargetConfig(), scale: float = 1.0) -> dict[str, np.ndarray]:
    """Targets (see the module docstring) for one image.

    ``instance_ids``: (H,W) Cityscapes instanceIds (any int dtype). ``label_ids``: (H,W)
    labelIds; derived from ``instance_ids`` when None (they carry the same labels).
    ``scale``: the image's linear size relative to full Cityscapes resolution (0.5 when
    1024x2048 frames were resized to 512x1024); the small-instance area threshold scales
    with its square. ``cfg.sigma`` is not scaled: it is in pixels of the target map, as in
    detectron2, which keeps sigma 8 for every crop and scale.
    """
    inst = np.asarray(instance_ids).astype(np.int64, copy=False)
    if inst.ndim != 2:
        raise ValueError(f"instance_ids must be HxW, got shape {inst.shape}")
    h, w = inst.shape
    if label_ids is None:
        label_ids = np.where(inst >= INSTANCE_DIVISOR, inst // INSTANCE_DIVISOR, inst)
    label_ids = np.asarray(label_ids)
    if label_ids.shape != inst.shape:
        raise ValueError(f"label_ids {label_ids.shape} and instance_ids {inst.shape} differ in shape")
    if label_ids.min() < 0 or label_ids.max() > 255:
        raise ValueError("label_ids must be Cityscapes labelIds in 0..255")
    semantic = LABEL_TO_TRAIN[label_ids.astype(np.uint8)]
    void = semantic == VOID_TRAIN_ID
    thing_class = ~void & IS_THING[np.where(void, 0, semantic)]

    # Individual instances: ids >= 1000 of a thing training class (caravan/trailer instances
    # have trainId 255 and stay void). Thing pixels without an instance id are crowd.
    is_instance = (inst >= INSTANCE_DIVISOR) & thing_class
    crowd = thing_class & ~is_instance

    center = np.zeros((h, w), np.float32)
    offset = np.zeros((2, h, w), np.float32)
    semantic_weights = np.ones((h, w), np.float32)
    ys, xs, dense, area, cy, cx = _instance_moments(inst, is_instance)
    if ys.size:
        offset[0, ys, xs] = (cy[dense] - ys).astype(np.float32)
        offset[1, ys, xs] = (cx[dense] - xs).astype(np.float32)
        small = area < cfg.small_instance_area * scale * scale
        semantic_weights[ys, xs] = np.where(small[dense], cfg.small_instance_weight, 1.0)
        g, r = _gaussian_window(cfg.sigma)
        for y, x in zip(np.round(cy).astype(int), np.round(cx).astype(int)):
            y0, y1 = max(0, y - r), min(h, y + r + 1)
            x0, x1 = max(0, x - r), min(w, x + r + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            window = g[y0 - y + r:y1 - y + r, x0 - x + r:x1 - x + r]
            np.maximum(center[y0:y1, x0:x1], window, out=center[y0:y1, x0:x1])

    return {
        "semantic": semantic,
        "semantic_weights": semantic_weights,
        "center": center[None],
        "center_weights": (~void & ~crowd).astype(np.float32)[None],
        "offset": offset,
        "offset_weights": is_instance.astype(np.float32)[None],
    }


def collate_targets(targets: list[dict[str, np.ndarray]], device=None) -> dict:
    """Stack per-image targets into the batch dict ``PanopticDeepLabLoss`` takes."""
    import torch

    out = {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in targets[0]}
    out["semantic"] = out["semantic"].long()
    if device is not None:
        out = {k: v.to(device, non_blocking=True) for k, v in out.items()}
    return out
