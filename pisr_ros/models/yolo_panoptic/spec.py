"""YOLO-Panoptic's model spec (``family: yolo_panoptic``), read from config/models/yolo_panoptic_*.yaml.

The network is Diaz-Zapata's (2020, chapter 3): Darknet-53 + YOLOv3's three detection heads
(``pisr_ros.models.darknet``), a Pyramid Pooling Module semantic head over the backbone taps of
cfg layers 11, 36 and 61, and a box-guided mask head run on the boxes that survive NMS. ``width``
and ``depth`` scale Darknet-53 (1, 1: the published network, which Darknet weights load into);
the head widths are written in the spec so that a light CPU variant is a YAML file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pisr_ros.errors import UsageError
from pisr_ros.models.spec import SpecBase, _plain
from pisr_ros.taxonomy import NUM_CLASSES, THING_TRAIN_IDS

MASK_HEADS = ("deep", "shallow")
BOX_LOSSES = ("giou", "mse")
#: YOLOv3's COCO anchors (w, h) at its 416x416 input; the specs scale them to their own input.
COCO_ANCHORS_416 = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326))


def scaled_coco_anchors(height: int) -> tuple[tuple[float, float], ...]:
    """COCO's anchors for an input ``height`` pixels high (scaled by height / 416, rounded)."""
    return tuple((round(w * height / 416, 1), round(h * height / 416, 1)) for w, h in COCO_ANCHORS_416)


@dataclass(frozen=True)
class YoloLossSpec:
    """L = L_det + semantic_weight L_sem + mask_weight L_inst (the thesis: L_sem + 0.1 L_inst).

    L_det is YOLOv3's: each ground-truth box goes to the one anchor (of all nine) whose shape
    overlaps it most, at the cell of its center in that anchor's head; other predictions whose
    box overlaps a ground-truth box by more than ``ignore_iou`` are neither positive nor
    negative; BCE for objectness (positives and negatives averaged separately, then added, so
    that the few positives are not drowned by the many empty cells) and per-class BCE on the
    positives; the box term is ``box_loss`` ("giou": 1 - GIoU of the decoded box, the default,
    see docs/yolo_panoptic.md; "mse": YOLOv3's squared error on tx, ty, tw, th)."""

    box_loss: str = "giou"
    box_weight: float = 1.0
    objectness_weight: float = 1.0
    class_weight: float = 1.0
    ignore_iou: float = 0.5
    semantic_weight: float = 1.0
    mask_weight: float = 0.1
    ignore_label: int = 255
    mask_size: int = 20  # side of the mask target (the mask head's output) per instance
    max_mask_instances: int = 32  # ground-truth instances per image the mask loss trains on


@dataclass(frozen=True)
class RankingSpec:
    """OANet's spatial ranking module (``merge: ranking``, docs/yolo_panoptic.md): the side of its
    separable large kernel (k x 1 then 1 x k), in cells of the stride-4 grid the masks are pasted
    on. OANet's table 5: 7 (its largest) beat 3 and 1 on COCO at full resolution; on our stride-4
    grid 15 cells span 60 input pixels. Its weights are not part of the network: `pisr-ros
    train-ranking` writes them into the checkpoint beside it."""

    kernel: int = 15


@dataclass(frozen=True)
class YoloPanopticSpec(SpecBase):
    family: str = "yolo_panoptic"
    name: str = "yolo_panoptic_light"
    num_classes: int = NUM_CLASSES  # semantic classes (Cityscapes trainIds)
    thing_ids: tuple[int, ...] = THING_TRAIN_IDS  # detection class k is trainId thing_ids[k]
    input_size: tuple[int, int] = (512, 1024)
    # Darknet's input convention (RGB / 255), which imported Darknet weights expect.
    pixel_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pixel_std: tuple[float, float, float] = (255.0, 255.0, 255.0)
    width: float = 0.25  # Darknet-53 / YOLOv3 channel multiplier (1: the published network)
    depth: float = 0.34  # residual blocks per stage multiplier (1: 1-2-8-8-4)
    # Nine (w, h) anchors in input pixels, small to large; heads at strides 8, 16, 32 use
    # anchors 0-2, 3-5, 6-8 (YOLOv3's masks).
    anchors: tuple[tuple[float, float], ...] = scaled_coco_anchors(512)
    ppm_bins: tuple[int, ...] = (1, 2, 3, 6)
    semantic_channels: int = 64  # the PPM's 3x3 conv (PSPNet: 512)
    # A 1x1 conv (+ BN + ReLU) to this many channels before the PPM's 3x3 conv; 0: none, the
    # thesis. The 3x3 runs at stride 4 on the concatenated pools, so it is most of the light
    # network's training time on a CPU (docs/yolo_panoptic.md, training speed).
    fuse_reduce: int = 0
    mask_channels: int = 32  # the 1x1 reduction of the PPM's input the mask head reads
    mask_head: str = "deep"  # "deep" (20x20 crop, two 3x3 + ReLU6, 3x3, 1x1) or "shallow" (40x40, 3x3, 1x1)
    mask_head_channels: int = 32
    loss: YoloLossSpec = field(default_factory=YoloLossSpec)
    ranking: RankingSpec = field(default_factory=RankingSpec)

    def __post_init__(self):
        problems = yolo_spec_problems(self)
        if problems:
            raise UsageError("model spec: " + "; ".join(problems))

    @property
    def num_things(self) -> int:
        return len(self.thing_ids)

    @property
    def mask_crop(self) -> int:
        return 20 if self.mask_head == "deep" else 40


def yolo_spec_problems(spec: YoloPanopticSpec) -> list[str]:
    out = []
    size = spec.input_size
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 32 and v % 32 == 0 for v in size)):
        out.append(f"input_size must be [H, W], multiples of 32 (YOLOv3 concatenates upsampled maps), "
                   f"not {_plain(size)!r}")
    if spec.num_classes != NUM_CLASSES:
        out.append(f"num_classes must be {NUM_CLASSES}, not {spec.num_classes!r}")
    if not spec.thing_ids or any(not 0 <= t < NUM_CLASSES for t in spec.thing_ids):
        out.append(f"thing_ids must be trainIds in 0..{NUM_CLASSES - 1}, not {_plain(spec.thing_ids)!r}")
    for name in ("pixel_mean", "pixel_std"):
        value = getattr(spec, name)
        if not (isinstance(value, (tuple, list)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
            out.append(f"{name} must be three numbers (R, G, B), not {_plain(value)!r}")
    if not all(isinstance(v, (int, float)) and v > 0 for v in (spec.width, spec.depth)):
        out.append(f"width and depth must be positive numbers, not {spec.width!r}, {spec.depth!r}")
    anchors = spec.anchors
    if not (len(anchors) == 9 and all(len(a) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in a)
                                      for a in anchors)):
        out.append(f"anchors must be nine [w, h] pairs of positive pixels, not {_plain(anchors)!r}")
    if spec.mask_head not in MASK_HEADS:
        out.append(f"mask_head must be one of {', '.join(MASK_HEADS)}, not {spec.mask_head!r}")
    if spec.loss.box_loss not in BOX_LOSSES:
        out.append(f"loss.box_loss must be one of {', '.join(BOX_LOSSES)}, not {spec.loss.box_loss!r}")
    if not spec.ppm_bins or any(not isinstance(b, int) or b < 1 for b in spec.ppm_bins):
        out.append(f"ppm_bins must be positive whole numbers, not {_plain(spec.ppm_bins)!r}")
    kernel = spec.ranking.kernel
    if not (isinstance(kernel, int) and not isinstance(kernel, bool) and kernel >= 1 and kernel % 2 == 1):
        out.append(f"ranking.kernel must be an odd positive whole number (the kernel is centred), not {kernel!r}")
    for name in ("semantic_channels", "mask_channels", "mask_head_channels"):
        if not isinstance(getattr(spec, name), int) or getattr(spec, name) < 1:
            out.append(f"{name} must be a positive whole number, not {getattr(spec, name)!r}")
    if not isinstance(spec.fuse_reduce, int) or isinstance(spec.fuse_reduce, bool) or spec.fuse_reduce < 0:
        out.append(f"fuse_reduce must be a whole number >= 0 (0: no reduction), not {spec.fuse_reduce!r}")
    return out
