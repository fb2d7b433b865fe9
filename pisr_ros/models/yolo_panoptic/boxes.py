"""Box arithmetic shared by YOLO-Panoptic's loss and post-processing: the raw heads' layout,
decoding, IoU and GIoU."""
from __future__ import annotations

import torch

MAX_LOG_WH = 8.0  # exp(tw) is clamped here: a diverging box must not overflow to inf


def head_view(raw: torch.Tensor, fields: int) -> torch.Tensor:
    """(N, A*fields, h, w) -> (N, A, h, w, fields)."""
    n, _, h, w = raw.shape
    return raw.view(n, -1, fields, h, w).permute(0, 1, 3, 4, 2)


def decode_boxes(p: torch.Tensor, anchors: torch.Tensor, stride: int) -> torch.Tensor:
    """Boxes x1, y1, x2, y2 in input pixels (N, A, h, w, 4) of a ``head_view``: center
    (sigmoid(t) + cell) * stride, size anchor * exp(t)."""
    _, _, h, w, _ = p.shape
    gy, gx = torch.meshgrid(torch.arange(h, device=p.device, dtype=p.dtype),
                            torch.arange(w, device=p.device, dtype=p.dtype), indexing="ij")
    cx = (torch.sigmoid(p[..., 0]) + gx) * stride
    cy = (torch.sigmoid(p[..., 1]) + gy) * stride
    bw = anchors[:, 0].view(1, -1, 1, 1) * torch.exp(p[..., 2].clamp(max=MAX_LOG_WH))
    bh = anchors[:, 1].view(1, -1, 1, 1) * torch.exp(p[..., 3].clamp(max=MAX_LOG_WH))
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of ``a`` (..., P, 4) with every box of ``b`` (..., Q, 4): (..., P, Q)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-9)


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of paired boxes (K, 4), (K, 4) -> (K,) (Rezatofighi et al. 2019)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    union = (area_a + area_b - inter).clamp(min=1e-9)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1).clamp(min=1e-9)
    return inter / union - (hull - union) / hull
