"""Training losses: Panoptic-DeepLab's, on the final and (with PISR) the intermediate heads.

    L = gamma (L'sem + L'ins) + Lsem + Lins                       (PISR, eq. 1)
    Lsem = semantic_weight * hard-pixel-mined weighted cross-entropy (top 20 % of pixels)
    Lins = center_weight (200) * MSE(center) + offset_weight (0.01) * L1(offset, thing pixels)

    criterion = PanopticDeepLabLoss(spec.loss)
    losses = criterion(model(images), targets)      # dict; losses["loss"] is L
    losses["loss"].backward()

``targets`` is a dict of tensors at the *input* resolution (H,W), as made by
``pisr_ros.data.targets.make_targets`` and stacked by ``collate_targets``:
  "semantic" (N,H,W) int64 trainIds, ignore_label (255) = void
  "semantic_weights" (N,H,W) float   per-pixel CE weights (3 on small instances)
  "center" (N,1,H,W) float, "center_weights" (N,1,H,W) float
  "offset" (N,2,H,W) float (dy, dx) in pixels, "offset_weights" (N,1,H,W) float
Predictions (stride 4) are upsampled bilinearly to the targets' size before the loss, as in
detectron2; offsets are already in input pixels, so they are not rescaled.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _upsample(x, size):
    if x.shape[-2:] == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def hard_pixel_cross_entropy(logits, labels, weights=None, top_k_percent=0.2, ignore_label=255):
    """Cross-entropy averaged over the ``top_k_percent`` largest (weighted) pixel losses of
    the whole batch (DeepLab's hard pixel mining; detectron2's ``DeepLabCE``).

    Void pixels have loss 0 and still count in the pixel total, as in detectron2.
    """
    losses = F.cross_entropy(logits, labels, ignore_index=ignore_label, reduction="none")
    if weights is not None:
        losses = losses * weights
    losses = losses.reshape(-1)
    if top_k_percent >= 1.0:
        return losses.mean()
    k = max(1, int(top_k_percent * losses.numel()))
    return losses.topk(k).values.mean()


def weighted_mean(loss, weights):
    """sum(loss * weights) / sum(weights), and 0 (with a graph) when no pixel has weight."""
    total = weights.sum()
    weighted = (loss * weights).sum()
    return weighted / total if total > 0 else weighted * 0.0


class PanopticDeepLabLoss(nn.Module):
    """The PISR training objective; ``spec`` is a ``LossSpec``.

    ``forward(outputs, targets)`` returns a dict: ``loss`` (the total to backpropagate) and
    its unweighted-by-gamma parts ``semantic``, ``center``, ``offset`` (final heads) and,
    when ``outputs`` has intermediate heads, ``semantic_aux``, ``center_aux``, ``offset_aux``.
    Each part already includes its own weight (200 for center, 0.01 for offset).
    """

    def __init__(self, spec):
        super().__init__()
        self.spec = spec

    def head_losses(self, semantic, center, offset, targets):
        s = self.spec
        size = targets["semantic"].shape[-2:]
        sem = hard_pixel_cross_entropy(
            _upsample(semantic, size), targets["semantic"], targets.get("semantic_weights"),
            s.top_k_percent, s.ignore_label)
        center_l = F.mse_loss(_upsample(center, size), targets["center"], reduction="none")
        offset_l = F.l1_loss(_upsample(offset, size), targets["offset"], reduction="none")
        return {
            "semantic": s.semantic_weight * sem,
            "center": s.center_weight * weighted_mean(center_l, targets["center_weights"]),
            # Weights (N,1,H,W) broadcast over dy and dx, but count each pixel once (detectron2).
            "offset": s.offset_weight * weighted_mean(offset_l, targets["offset_weights"]),
        }

    def forward(self, outputs: dict, targets: dict) -> dict:
        out = self.head_losses(outputs["semantic"], outputs["center"], outputs["offset"], targets)
        total = out["semantic"] + out["center"] + out["offset"]
        if "semantic_aux" in outputs:
            aux = self.head_losses(outputs["semantic_aux"], outputs["center_aux"],
                                   outputs["offset_aux"], targets)
            out.update({f"{k}_aux": v for k, v in aux.items()})
            total = total + self.spec.gamma * (aux["semantic"] + aux["center"] + aux["offset"])
        out["loss"] = total
        return out
