"""The YOLO-Panoptic network: YOLOv3 (``pisr_ros.models.darknet``) with a Pyramid Pooling
semantic head on its backbone taps, and the box-guided mask head.

``forward`` outputs only what a fixed graph can hold (``OUTPUTS``): the three raw detection
heads, the semantic logits and the mask head's input features, all per pixel. The mask head
itself runs on the boxes left after NMS, a number the graph cannot know, so it is a separate
module (``YoloPanoptic.mask_head``) that the family's post-processor and the loss call
(docs/yolo_panoptic.md: what runs where and why). In training mode the output also carries the
mask head module under ``"mask_head"``, so the loss can train it through the same DDP wrapper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pisr_ros.models.darknet import YoloV3
from pisr_ros.models.yolo_panoptic.spec import YoloPanopticSpec

#: Output name -> stride. ``det32`` etc. are YOLOv3's raw heads (Darknet's channel layout:
#: anchor a's tx, ty, tw, th, objectness, class logits at a * (5 + classes) + ...).
OUTPUTS = (("det32", 32), ("det16", 16), ("det8", 8), ("semantic", 4), ("mask_features", 4))
#: Which anchors (indices into spec.anchors) each detection head uses: YOLOv3's masks.
HEAD_ANCHORS = {"det32": (6, 7, 8), "det16": (3, 4, 5), "det8": (0, 1, 2)}
HEAD_STRIDES = {"det32": 32, "det16": 16, "det8": 8}


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int):
        super().__init__(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def adaptive_pool_matrix(size: int, bins: int, device, dtype) -> torch.Tensor:
    """(bins, size) averaging weights of ``adaptive_avg_pool`` along one axis: bin i averages
    [floor(i size / bins), ceil((i + 1) size / bins)). As a matrix product it exports to ONNX
    (MatMul) for any size; ``AdaptiveAvgPool2d`` does not when the size is not a multiple of
    the bins (3 and 6 do not divide 128)."""
    i = torch.arange(bins)
    start = torch.div(i * size, bins, rounding_mode="floor")
    end = torch.div((i + 1) * size + bins - 1, bins, rounding_mode="floor")
    p = torch.arange(size)
    m = ((p[None] >= start[:, None]) & (p[None] < end[:, None])).to(dtype)
    return (m / m.sum(1, keepdim=True)).to(device)


def bilinear_upsample_matrix(size: int, bins: int, device, dtype) -> torch.Tensor:
    """(size, bins) weights of ``F.interpolate(mode="bilinear", align_corners=False)`` from
    ``bins`` to ``size`` along one axis. The pools' upsampling as two matrix products: the same
    values (to rounding); from a pool's few bins, a CPU's backward pass is up to 15x faster than
    upsample_bilinear2d's (from larger maps it is not, so the taps keep ``F.interpolate``)."""
    o = torch.arange(size, dtype=torch.float64)
    src = ((o + 0.5) * (bins / size) - 0.5).clamp(min=0.0)
    low = src.floor().long().clamp(max=bins - 1)
    high = (low + 1).clamp(max=bins - 1)
    frac = src - low.to(torch.float64)
    m = torch.zeros(size, bins, dtype=torch.float64)
    m[torch.arange(size), low] += 1.0 - frac
    m[torch.arange(size), high] += frac
    return m.to(device=device, dtype=dtype)


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` for upsampling, as
    ``bilinear_upsample_matrix`` products."""
    uh = bilinear_upsample_matrix(int(size[0]), int(x.shape[-2]), x.device, x.dtype)
    uw = bilinear_upsample_matrix(int(size[1]), int(x.shape[-1]), x.device, x.dtype)
    return torch.matmul(torch.matmul(uh, x), uw.t())


class PyramidPoolingHead(nn.Module):
    """Section 3.2: tap 11 projected to twice its channels (128 -> 256) by a 1x1 conv, taps 36
    and 61 upsampled to stride 4, concatenated (1024 channels at full width); average-pooled at
    each bin size, each pool a 1x1 conv to a quarter of the channels, upsampled, BN + ReLU,
    concatenated with the input; a 3x3 conv and a 1x1 conv to the classes.

    BN + ReLU of the pools come after the upsampling (the thesis: before; the same where BN is
    an affine map at inference), so that a batch of one image can be trained: BN over a 1x1
    pooled map has one value per channel. ``reduce`` > 0 puts a 1x1 conv to that many channels
    before the 3x3 (``YoloPanopticSpec.fuse_reduce``)."""

    def __init__(self, taps: tuple[int, int, int], num_classes: int, channels: int, bins: tuple[int, ...],
                 reduce: int = 0):
        super().__init__()
        c4, c8, c16 = taps
        self.project = ConvBNReLU(c4, 2 * c4, 1)
        self.in_channels = 2 * c4 + c8 + c16
        quarter = self.in_channels // 4
        self.bins = tuple(bins)
        self.pools = nn.ModuleList(nn.Conv2d(self.in_channels, quarter, 1, bias=False) for _ in bins)
        self.pool_norms = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(quarter), nn.ReLU(inplace=True)) for _ in bins)
        fused = self.in_channels + quarter * len(bins)
        self.fuse = (nn.Sequential(ConvBNReLU(fused, reduce, 1), ConvBNReLU(reduce, channels, 3)) if reduce
                     else ConvBNReLU(fused, channels, 3))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def features(self, t4, t8, t16) -> torch.Tensor:
        """The PPM's preprocessed input: (N, in_channels, H/4, W/4)."""
        size = t4.shape[-2:]
        up = [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in (t8, t16)]
        return torch.cat([self.project(t4), *up], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        branches = [x]
        for bins, conv, norm in zip(self.bins, self.pools, self.pool_norms):
            ph = adaptive_pool_matrix(h, bins, x.device, x.dtype)
            pw = adaptive_pool_matrix(w, bins, x.device, x.dtype)
            pooled = torch.matmul(torch.matmul(ph, x), pw.t())  # (N, C, bins, bins)
            up = upsample_bilinear(conv(pooled), (h, w))
            branches.append(norm(up))
        return self.classifier(self.fuse(torch.cat(branches, 1)))


class BoxMaskHead(nn.Module):
    """Section 3.3's foreground head on RoIAligned crops of [mask features ; semantic logit of the
    detected class]: "deep" (20x20): two 3x3 convs with ReLU6, then a 3x3 and a 1x1 conv;
    "shallow" (40x40): a 3x3 and a 1x1 conv. Each 3x3 is followed by ReLU6 (the thesis names
    one; a stack of convolutions without one in between would be one linear map). Output: one
    mask logit map per box, (K, 1, crop, crop)."""

    def __init__(self, cin: int, channels: int, kind: str):
        super().__init__()
        self.kind = kind
        self.crop = 20 if kind == "deep" else 40
        layers: list[nn.Module] = []
        if kind == "deep":
            layers += [nn.Conv2d(cin, channels, 3, padding=1), nn.ReLU6(inplace=True),
                       nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU6(inplace=True)]
            cin = channels
        layers += [nn.Conv2d(cin, channels, 3, padding=1), nn.ReLU6(inplace=True), nn.Conv2d(channels, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net(crops)


def mask_head_input(mask_features: torch.Tensor, semantic: torch.Tensor, boxes: torch.Tensor,
                    batch_index: torch.Tensor, train_ids: torch.Tensor, crop: int, stride: int = 4) -> torch.Tensor:
    """The instance input features of each box (K, C + 1, crop, crop): the crop of the mask
    features and of the semantic logit plane of the box's class. The crop is the box: the
    thesis's box attention mask, which is 1 inside the box, is what RoIAlign's crop keeps."""
    from pisr_ros.models.yolo_panoptic.roi_align import roi_align

    k = boxes.shape[0]
    if k == 0:
        return mask_features.new_zeros((0, mask_features.shape[1] + 1, crop, crop))
    # Features and every class's plane cropped in one pass (one grid_sample per image), then
    # each box keeps its own class's plane.
    c = mask_features.shape[1]
    crops = roi_align(torch.cat([mask_features, semantic.to(mask_features.dtype)], 1), boxes, batch_index, crop,
                      1.0 / stride)
    plane = crops[torch.arange(k, device=boxes.device), c + train_ids.long()][:, None]
    feats = crops[:, :c]
    return torch.cat([feats, plane], 1)


class YoloPanoptic(nn.Module):
    def __init__(self, spec: YoloPanopticSpec):
        super().__init__()
        self.spec = spec
        self.yolo = YoloV3(spec.num_things, spec.width, spec.depth)
        self.ppm = PyramidPoolingHead(self.yolo.tap_channels, spec.num_classes, spec.semantic_channels, spec.ppm_bins,
                                      spec.fuse_reduce)
        self.mask_reduce = ConvBNReLU(self.ppm.in_channels, spec.mask_channels, 1)
        self.mask_head = BoxMaskHead(spec.mask_channels + 1, spec.mask_head_channels, spec.mask_head)

    def freezable_parts(self) -> dict[str, nn.Module]:
        """What ``pisr-ros train --freeze`` names: Darknet-53 and YOLOv3's neck + heads."""
        return self.yolo.freezable_parts()

    def forward(self, x: torch.Tensor) -> dict:
        out = self.yolo(x)
        features = self.ppm.features(*out.taps)
        heads = dict(zip(("det32", "det16", "det8"), out.heads))
        heads["semantic"] = self.ppm(features)
        heads["mask_features"] = self.mask_reduce(features)
        if self.training:
            heads["mask_head"] = self.mask_head
        return heads
