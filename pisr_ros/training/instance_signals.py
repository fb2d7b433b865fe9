"""Whether instances are coming: what the center head does at the ground-truth centers of a
val split, measured on the network's own grid during training.

PQ of things stays near 0 long after the heatmap has started to learn (issue 17: 53-131 peaks
per frame against 4-55 instances, each object split into several segments), so validation also
logs, over the first ``frames`` frames of the split:

  heat_at_centers      mean center heat at the cells of the ground-truth centers (target 1)
  heat_elsewhere       mean heat over the labelled cells farther than ``radius`` from every center
  peaks_per_frame      heatmap peaks (``nms_kernel`` max-pool NMS) above ``threshold`` per frame
  instances_per_frame  ground-truth thing instances per frame (what peaks_per_frame should reach)
  centers_found        share of ground-truth centers with a peak within ``radius`` cells
  peak_precision       share of peaks within ``radius`` cells of a ground-truth center

Defaults are the CPU post-processing's (threshold 0.1, 3x3 NMS on the stride-4 grid).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

STRIDE = 4  # Panoptic-DeepLab's center head


@torch.no_grad()
def instance_signals(model, spec, root: Path, split: str, frames: int = 20, threshold: float = 0.1,
                     nms_kernel: int = 3, radius: int = 2) -> dict:
    from pisr_ros import cityscapes_layout as layout
    from pisr_ros.data.augment import resize_sample
    from pisr_ros.data.dataset import read_sample
    from pisr_ros.data.targets import instance_centers
    from pisr_ros.inference.predictor import normalize

    if getattr(spec, "family", "panoptic_deeplab") != "panoptic_deeplab":
        return {}  # the signals read Panoptic-DeepLab's center head; other families have none
    ids = layout.list_split(root, split)[:frames]
    if not ids:
        return {}
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    heat_gt, elsewhere, found, precise = [], [], [], []
    peaks = instances = 0
    try:
        for image_id in ids:
            sample = resize_sample(read_sample(layout.image_paths(root, split, image_id)), tuple(spec.input_size))
            image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))[None].to(device)
            heat = model(normalize(image, spec.pixel_mean, spec.pixel_std))["center"][0, 0].float()
            pooled = F.max_pool2d(heat[None, None], nms_kernel, stride=1, padding=nms_kernel // 2)[0, 0]
            peak_cells = torch.nonzero((heat == pooled) & (heat > threshold)).cpu().numpy()
            heat = heat.cpu().numpy()
            centers, _, _ = instance_centers(sample.instance_ids)
            cells = np.minimum(np.floor(centers / STRIDE).astype(int), np.array(heat.shape) - 1)
            heat_gt.extend(heat[cells[:, 0], cells[:, 1]].tolist())
            near = _chebyshev(cells, peak_cells) <= radius  # (instances, peaks)
            found.extend(near.any(axis=1).tolist())
            precise.extend(near.any(axis=0).tolist())
            peaks += len(peak_cells)
            instances += len(cells)
            labelled = sample.label_ids[STRIDE // 2::STRIDE, STRIDE // 2::STRIDE][: heat.shape[0], : heat.shape[1]] > 0
            far = labelled.copy()
            for y, x in cells:
                far[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1] = False
            if far.any():
                elsewhere.append(float(heat[far].mean()))
    finally:
        model.train(was_training)

    def mean(v):
        return float(np.mean(v)) if len(v) else float("nan")

    return {"heat_at_centers": mean(heat_gt), "heat_elsewhere": mean(elsewhere),
            "peaks_per_frame": peaks / len(ids), "instances_per_frame": instances / len(ids),
            "centers_found": mean(found), "peak_precision": mean(precise)}


def _chebyshev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.full((len(a), len(b)), np.inf)
    return np.abs(a[:, None, :] - b[None, :, :]).max(axis=2)
