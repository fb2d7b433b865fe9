"""RoIAlign (He et al., Mask R-CNN) written with ``torch.nn.functional.grid_sample``, because
torchvision (whose ``roi_align`` is the usual one) is not a dependency of this package.

It computes torchvision's ``roi_align(..., aligned=True)``: a box [x1, y1, x2, y2] in input
pixels is scaled by ``spatial_scale`` and shifted by half a cell, cut into ``size`` x ``size``
bins, each bin the mean of ``sampling_ratio`` x ``sampling_ratio`` bilinear samples at the
centers of its sub-cells; a sample more than one cell outside the map is 0, one within a cell of
the border reads the border (grid_sample's "border" padding plus a mask for the far ones).
test_yolo_panoptic checks it against a plain loop over that definition.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def roi_align(features: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor, size: int,
              spatial_scale: float, sampling_ratio: int = 2) -> torch.Tensor:
    """``features`` (N, C, H, W), ``boxes`` (K, 4) x1, y1, x2, y2 in input pixels, ``batch_index``
    (K,) the image of each box -> (K, C, size, size)."""
    n, c, h, w = features.shape
    k = boxes.shape[0]
    if k == 0:
        return features.new_zeros((0, c, size, size))
    s = int(sampling_ratio)
    b = boxes.to(features.dtype) * spatial_scale - 0.5
    # Sample positions along each side, in cells: x1 + (i + (j + 0.5) / s) * bin, i < size, j < s.
    steps = (torch.arange(size * s, device=features.device, dtype=features.dtype) + 0.5) / s
    xs = b[:, 0:1] + steps * ((b[:, 2:3] - b[:, 0:1]) / size)  # (K, size*s)
    ys = b[:, 1:2] + steps * ((b[:, 3:4] - b[:, 1:2]) / size)
    inside = (((xs >= -1.0) & (xs <= w))[:, None, :] & ((ys >= -1.0) & (ys <= h))[:, :, None])  # (K, S, S)
    # grid_sample's align_corners=False: pixel index p is at normalised (2p + 1) / W - 1.
    gx = (2.0 * xs + 1.0) / w - 1.0
    gy = (2.0 * ys + 1.0) / h - 1.0
    side = size * s
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (K, S, S, 2)
    out = features.new_zeros((k, c, side, side))
    for image in torch.unique(batch_index).tolist():
        # One grid_sample per image, its boxes side by side: no (K, C, H, W) copy of the maps.
        rows = (batch_index == image).nonzero()[:, 0]
        g = grid[rows].reshape(1, rows.numel() * side, side, 2)
        sampled = F.grid_sample(features[image:image + 1], g, mode="bilinear", padding_mode="border",
                                align_corners=False)  # (1, C, k*S, S)
        out[rows] = sampled.reshape(c, rows.numel(), side, side).permute(1, 0, 2, 3)
    out = out * inside[:, None].to(out.dtype)
    return F.avg_pool2d(out, s) if s > 1 else out
