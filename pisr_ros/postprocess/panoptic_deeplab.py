"""Panoptic-DeepLab post-processing as batched torch functions (same code on CPU and GPU).

Semantics are detectron2's ``get_panoptic_segmentation`` (projects/Panoptic-DeepLab), id for
id on the grid it runs on, vectorised over pixels and instances (Python loops only over the
images of a batch):

1. centers: heatmap values <= ``center_threshold`` are dropped, then every value that is not
   the maximum of its ``nms_kernel`` window; of the rest, those strictly above the
   ``top_k``-th largest value are kept (detectron2's rule, which keeps top_k - 1 when there
   are more than top_k candidates), in row-major order;
2. thing pixels (semantic argmax is a thing class) join the nearest center to their
   position + offset (ties: the first center in row-major order);
3. each instance takes the majority semantic class of its pixels (ties: the smallest
   trainId, what ``torch.mode`` returns on CPU) and the next instance number of that class,
   counting from 1 in center order;
4. thing instances of fewer than ``thing_area`` pixels (scaled as below; 0 keeps all) become
   void and are not numbered;
5. stuff classes covering at least ``stuff_area`` pixels (scaled from the full 1024x2048
   Cityscapes frame to the grid's size) become trainId*1000; everything else is void (-1),
   including thing pixels when no center was found.

The per-pixel confidence is the max softmax probability, computed on the heads' grid and
resized bilinearly with them. Parameters and their defaults: ``PanopticDeepLabSettings``. Timings:
docs/postprocess_timing.md.

    heads = model(images)
    batch = panoptic_deeplab_postprocess(heads["semantic"], heads["center"], heads["offset"],
                                         input_size=images.shape[-2:])
    results = batch.results()        # list[PanopticResult], numpy, one per image
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pisr_ros import settings
from pisr_ros.panoptic import LABEL_DIVISOR, VOID_ID, PanopticResult
from pisr_ros.settings import setting
from pisr_ros.taxonomy import NUM_CLASSES, THING_TRAIN_IDS

FULL_RESOLUTION_AREA = 1024 * 2048


@dataclass(frozen=True)
class PanopticDeepLabSettings:
    """Post-processing settings. Each tunable one is declared here once (default, range,
    description, where a CPU differs): the node's parameters, the command line's flags and
    config/panoptic.yaml derive from these fields (``pisr_ros.settings``)."""

    center_threshold: float = setting(0.1, "Minimum center heatmap score of an instance.", range=(0.0, 1.0))
    # A CPU groups on the heads' own grid, 4x coarser than the input (upsample False): 3 cells
    # there span about as far as detectron2's 7 pixels of the upsampled map.
    nms_kernel: int = setting(7, "Center NMS window in cells of the grid post-processing runs on (odd).",
                              range=(1, 31), odd=True, cpu=3)
    top_k: int = setting(200, "At most this many instances per frame.", range=(1, 1000))
    stuff_area: int = setting(2048, "Stuff segments smaller than this many pixels (at 1024x2048) become void.",
                              range=(0, FULL_RESOLUTION_AREA))
    thing_area: int = setting(0, "Thing instances smaller than this many pixels (at 1024x2048) become void.",
                              range=(0, FULL_RESOLUTION_AREA))
    # True: upsample the stride-4 heads to the input size first (detectron2; exact). False: run
    # on the heads' grid, about 16x less work on a CPU (docs/postprocess_timing.md).
    upsample: bool = setting(True, "Upsample the heads to the network input before grouping (exact, "
                             "slower) instead of grouping on the heads' stride-4 grid.", cpu=False)
    # Fixed by the data set and id convention, not tuned.
    reference_area: int = FULL_RESOLUTION_AREA
    label_divisor: int = LABEL_DIVISOR
    void_id: int = VOID_ID
    thing_ids: tuple[int, ...] = THING_TRAIN_IDS
    num_classes: int = NUM_CLASSES

    def __post_init__(self):
        settings.check(self)

    def stuff_area_at(self, height: int, width: int) -> float:
        return self.stuff_area * height * width / self.reference_area

    def thing_area_at(self, height: int, width: int) -> float:
        return self.thing_area * height * width / self.reference_area


@dataclass
class PanopticBatch:
    """Post-processed batch, tensors on the heads' device."""

    id_map: torch.Tensor  # (N,H,W) int32: trainId*1000+k, -1 void
    semantic: torch.Tensor  # (N,H,W) int64 argmax trainIds
    confidence: torch.Tensor  # (N,H,W) float32 max softmax probability (heads' grid, resized)
    centers: list[torch.Tensor]  # per image (K,2) int64 (y, x) on the grid, row-major order

    def results(self) -> list[PanopticResult]:
        """One ``PanopticResult`` (numpy, CPU) per image."""
        ids = self.id_map.cpu().numpy()
        conf = self.confidence.cpu().numpy()
        return [PanopticResult(np.ascontiguousarray(ids[i]), np.ascontiguousarray(conf[i]))
                for i in range(ids.shape[0])]


def max_filter(x: torch.Tensor, k: int) -> torch.Tensor:
    """``F.max_pool2d(x, k, stride=1, padding=(k - 1) // 2)``, exactly. On CPUs as a 1 x k then
    k x 1 running maximum of shifted views: PyTorch's CPU max-pool also computes indices and
    takes ~20-40 ms at 512x1024 where this takes ~1 ms."""
    pad = (k - 1) // 2
    if x.device.type != "cpu":
        return F.max_pool2d(x, k, stride=1, padding=pad)
    h, w = x.shape[-2:]
    # Odd k: the window is centred, pad on both sides (max_pool2d's -inf padding).
    xp = F.pad(x, (pad, k - 1 - pad, 0, 0), value=float("-inf"))
    out = xp[..., 0:w].clone()
    for i in range(1, k):
        torch.maximum(out, xp[..., i:i + w], out=out)
    xp = F.pad(out, (0, 0, pad, k - 1 - pad), value=float("-inf"))
    out = xp[..., 0:h, :].clone()
    for i in range(1, k):
        torch.maximum(out, xp[..., i:i + h, :], out=out)
    return out


def center_mask(center: torch.Tensor, threshold: float, nms_kernel: int, top_k: int):
    """Centers of a (N,1,H,W) heatmap as a (N,H*W) bool mask of kept positions (see step 1)."""
    c = center[:, :1]
    c = torch.where(c > threshold, c, torch.full_like(c, -1.0))
    c = torch.where(c == max_filter(c, nms_kernel), c, torch.full_like(c, -1.0)).flatten(1)
    kept = c > 0
    # Fewer than top_k positive values: the top_k-th value is <= 0 and the rule keeps all c > 0,
    # so the (slow on CPUs) top-k over every pixel is only needed for crowded heatmaps.
    if bool((kept.sum(1) >= top_k).any()):
        kth = c.topk(min(top_k, c.shape[1]), dim=1).values[:, -1].clamp(min=0)
        kept = c > kth[:, None]
    return kept


def _thing_lut(cfg, device):
    lut = torch.zeros(max(cfg.num_classes, 256), dtype=torch.bool, device=device)
    lut[list(cfg.thing_ids)] = True
    return lut


def nearest_center(ly: torch.Tensor, lx: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor,
                   chunk: int = 8192) -> torch.Tensor:
    """Index of the nearest center (cy, cx) (K,) to each point (ly, lx) (P,); ties go to the
    first center. Chunks of ``chunk`` points keep the (chunk, K) distances in cache."""
    out = torch.empty(ly.shape[0], dtype=torch.int64, device=ly.device)
    for s in range(0, ly.shape[0], chunk):
        d = cy[None, :] - ly[s:s + chunk, None]
        d.square_()
        dx = cx[None, :] - lx[s:s + chunk, None]
        d.add_(dx.square_())
        out[s:s + chunk] = d.argmin(1)
    return out


def merge_panoptic(sem: torch.Tensor, offset: torch.Tensor, keep: torch.Tensor, cfg: PanopticDeepLabSettings):
    """Id maps (N,H,W) int32 from semantic labels (N,H,W), offsets (N,2,H,W) in grid pixels
    and the center mask from ``center_mask``; also the per-image centers."""
    n, h, w = sem.shape
    hw = h * w
    device = sem.device
    nc, div = cfg.num_classes, cfg.label_divisor
    is_thing = _thing_lut(cfg, device)[:nc]
    flat_sem = sem.reshape(n, hw)

    # Stuff first, through a per-image class -> id table; things are pasted over it.
    area = torch.zeros(n, nc, dtype=torch.int64, device=device)
    area.scatter_add_(1, flat_sem, torch.ones_like(flat_sem))
    stuff_ok = (area >= cfg.stuff_area_at(h, w)) & ~is_thing
    class_ids = torch.arange(nc, device=device) * div
    table = torch.where(stuff_ok, class_ids, torch.full_like(class_ids, cfg.void_id))
    pan = table.gather(1, flat_sem)

    counts = keep.sum(1).tolist()
    centers = []
    for i in range(n):
        pos = keep[i].nonzero()[:, 0]  # row-major, like detectron2's torch.nonzero
        centers.append(torch.stack([pos // w, pos % w], 1))
        if counts[i] == 0:
            continue
        pix = is_thing[flat_sem[i]].nonzero()[:, 0]
        if pix.numel() == 0:
            continue
        dtype = offset.dtype
        ly = (pix // w).to(dtype) + offset[i, 0].reshape(-1)[pix]
        lx = (pix % w).to(dtype) + offset[i, 1].reshape(-1)[pix]
        ins = nearest_center(ly, lx, (pos // w).to(dtype), (pos % w).to(dtype))
        # Majority vote: an (instance, class) histogram; argmax takes the first = smallest class.
        k = counts[i]
        hist = torch.zeros(k * nc, dtype=torch.int64, device=device)
        cls_pix = flat_sem[i, pix]
        hist.scatter_add_(0, ins * nc + cls_pix, torch.ones_like(cls_pix))
        hist = hist.reshape(k, nc)
        cls = hist.argmax(1)
        # Instances with no pixels, or fewer than thing_area, are not numbered; their pixels go void.
        present = hist.sum(1) >= max(1.0, cfg.thing_area_at(h, w))
        # Per-class counter from 1, in center order, skipping the instances that are not present.
        number = (F.one_hot(cls, nc) * present[:, None]).cumsum(0).gather(1, cls[:, None])[:, 0]
        ids = torch.where(present, cls * div + number, torch.full_like(cls, cfg.void_id))
        pan[i, pix] = ids[ins]
    return pan.reshape(n, h, w).to(torch.int32), centers


@torch.no_grad()
def panoptic_deeplab_postprocess(semantic: torch.Tensor, center: torch.Tensor, offset: torch.Tensor,
                                 input_size: tuple[int, int] | None = None,
                                 cfg: PanopticDeepLabSettings = PanopticDeepLabSettings(),
                                 output_size: tuple[int, int] | None = None) -> PanopticBatch:
    """Panoptic id maps for a batch of head outputs.

    ``semantic`` (N,C,h,w) logits, ``center`` (N,1,h,w), ``offset`` (N,2,h,w) (dy, dx) in
    pixels of ``input_size`` (the network input; default (h,w), i.e. offsets in grid pixels).
    The grid it runs on is ``output_size`` if given, else ``input_size`` when
    ``cfg.upsample``, else (h,w); heads are resized to it bilinearly and offsets rescaled.
    """
    n, _, h, w = semantic.shape
    input_size = tuple(int(v) for v in (input_size or (h, w)))
    if output_size is None:
        output_size = input_size if cfg.upsample else (h, w)
    output_size = tuple(int(v) for v in output_size)
    # Argmax of the logits (not of probabilities, which can round near-ties into ties); max()
    # gives values and first-maximum indices in one pass, 3x faster than argmax() on NCHW.
    top, sem = semantic.max(dim=1, keepdim=True)
    # Max softmax probability on the heads' grid, then resized: a confidence map does not need
    # the 19-channel softmax at full resolution, which costs tens of ms on a CPU.
    confidence = (semantic - top).exp_().sum(dim=1, keepdim=True).reciprocal_()
    if output_size != (h, w):
        def up(x):
            return F.interpolate(x, size=output_size, mode="bilinear", align_corners=False)
        # Channels-last makes the 19-channel upsampling and the argmax below 3-4x faster on
        # CPUs; values can differ from an NCHW upsample in the last bit.
        semantic = up(semantic.contiguous(memory_format=torch.channels_last))
        center, offset, confidence = up(center), up(offset), up(confidence)
        sem = semantic.argmax(dim=1, keepdim=True)
    if output_size != input_size:
        scale = torch.tensor([output_size[0] / input_size[0], output_size[1] / input_size[1]],
                             dtype=offset.dtype, device=offset.device)
        offset = offset * scale.view(1, 2, 1, 1)
    sem = sem[:, 0]
    keep = center_mask(center, cfg.center_threshold, cfg.nms_kernel, cfg.top_k)
    id_map, centers = merge_panoptic(sem, offset, keep, cfg)
    return PanopticBatch(id_map, sem, confidence[:, 0].float(), centers)
