"""YOLO-Panoptic's post-processing: decode the three YOLOv3 heads, class-wise NMS, the box-guided
mask head on the boxes kept, masks pasted onto the semantic head's grid, and the heuristic merge
of the thesis (section 3.4.1):

1. overlaps between instances go to the instance with the higher objectness score (``merge:
   heuristic``), or with the higher ranking score of OANet's spatial ranking module (``merge:
   ranking``, ``pisr_ros.models.yolo_panoptic.spatial_ranking``; its weights come with the model);
2. instances win over stuff (and over the semantic head's thing pixels: thing pixels that no
   instance claims become void, as no instance id can be given to them);
3. stuff classes left with fewer than ``stuff_area`` pixels (scaled from 1024x2048 to the grid)
   once the instances took theirs become void.

Ids are ``trainId*1000 + k`` (k = 1, 2, ... per class, in decreasing confidence), stuff
``trainId*1000``, void -1. The confidence of an instance's pixels is its detection confidence
(objectness x class probability), so each segment's score is that; stuff pixels get the
semantic head's max softmax probability. Everything runs on the heads' device, on the stride-4
grid of the semantic head (the Predictor resizes the id map to each image).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pisr_ros import settings
from pisr_ros.errors import UsageError
from pisr_ros.models.yolo_panoptic.boxes import box_iou, decode_boxes, head_view
from pisr_ros.panoptic import LABEL_DIVISOR, VOID_ID
from pisr_ros.settings import setting
from pisr_ros.taxonomy import IS_THING

FULL_RESOLUTION_AREA = 1024 * 2048
SEMANTIC_STRIDE = 4
CANDIDATES = 1000  # the most confident boxes NMS considers per image (YOLOv3's implementations: 300-1000)
MERGES = ("heuristic", "ranking")


@dataclass(frozen=True)
class YoloPanopticSettings:
    """Post-processing settings (the node's parameters and the tools' flags derive from these)."""

    score_threshold: float = setting(0.3, "Detections less confident than this (objectness x class "
                                     "probability) are dropped.", range=(0.0, 1.0))
    nms_iou: float = setting(0.5, "Class-wise NMS: a box overlapping a more confident box of its class "
                             "by more than this IoU is dropped.", range=(0.0, 1.0))
    max_detections: int = setting(100, "At most this many instances per frame (the most confident).",
                                  range=(1, 1000))
    mask_threshold: float = setting(0.5, "A pixel of a box belongs to its instance where the mask "
                                    "probability is at least this.", range=(0.0, 1.0))
    stuff_area: int = setting(2048, "Stuff segments smaller than this many pixels (at 1024x2048) become void.",
                              range=(0, FULL_RESOLUTION_AREA))
    merge: str = setting(MERGES[0], "Who gets a pixel two instances claim: heuristic, the higher objectness "
                         "(the thesis); ranking, the higher score of OANet's spatial ranking module (its weights "
                         "come from pisr-ros train-ranking).", choices=MERGES)
    reference_area: int = FULL_RESOLUTION_AREA
    label_divisor: int = LABEL_DIVISOR
    void_id: int = VOID_ID

    def __post_init__(self):
        settings.check(self)

    def stuff_area_at(self, height: int, width: int) -> float:
        return self.stuff_area * height * width / self.reference_area


@dataclass
class Detections:
    """One image's detections after NMS, most confident first."""

    boxes: torch.Tensor  # (K, 4) x1, y1, x2, y2 in input pixels
    scores: torch.Tensor  # (K,) objectness x class probability
    objectness: torch.Tensor  # (K,)
    classes: torch.Tensor  # (K,) detection class (index into the spec's thing_ids)


@dataclass
class YoloPanopticBatch:
    id_map: torch.Tensor  # (N, h, w) int32
    confidence: torch.Tensor  # (N, h, w) float32
    semantic: torch.Tensor  # (N, h, w) the semantic head's argmax (trainIds)
    detections: list  # Detections per image


def decode(heads: dict, anchors: torch.Tensor, num_things: int, score_threshold: float,
           candidates: int = CANDIDATES) -> list[tuple[torch.Tensor, ...]]:
    """Per image: (boxes, scores, objectness, classes) of the predictions at or above
    ``score_threshold``, at most ``candidates`` of them, each with its best class."""
    from pisr_ros.models.yolo_panoptic.network import HEAD_ANCHORS, HEAD_STRIDES

    per_head = []
    for name, stride in HEAD_STRIDES.items():
        p = head_view(heads[name].float(), 5 + num_things)
        boxes = decode_boxes(p, anchors[list(HEAD_ANCHORS[name])], stride)
        n = p.shape[0]
        per_head.append((boxes.reshape(n, -1, 4), torch.sigmoid(p[..., 4]).reshape(n, -1),
                         torch.sigmoid(p[..., 5:]).reshape(n, -1, num_things)))
    boxes = torch.cat([h[0] for h in per_head], 1)
    obj = torch.cat([h[1] for h in per_head], 1)
    cls_prob, cls = torch.cat([h[2] for h in per_head], 1).max(-1)
    scores = obj * cls_prob
    out = []
    for i in range(boxes.shape[0]):
        keep = (scores[i] >= score_threshold).nonzero()[:, 0]
        if keep.numel() > candidates:
            keep = keep[scores[i, keep].topk(candidates).indices]
        out.append((boxes[i, keep], scores[i, keep], obj[i, keep], cls[i, keep]))
    return out


def class_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy NMS within each class: indices of the boxes kept, most confident first. A box is
    dropped when it overlaps a kept, more confident box of its class by more than ``iou``."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    b, c = boxes[order], classes[order]
    overlap = (box_iou(b, b) > iou) & (c[:, None] == c[None])
    # Greedy pass on the CPU over the (few) candidates: a kept box suppresses the later ones.
    overlap = overlap.cpu().numpy()
    removed = [False] * len(order)
    kept = []
    for i in range(len(order)):
        if removed[i]:
            continue
        kept.append(i)
        for j in overlap[i, i + 1:].nonzero()[0]:
            removed[i + 1 + j] = True
    return order[torch.as_tensor(kept, dtype=torch.long, device=boxes.device)]


def paste_masks(mask_logits: torch.Tensor, boxes: torch.Tensor, grid: tuple[int, int], stride: int) -> torch.Tensor:
    """Mask probabilities (K, h, w) on the grid whose cell (i, j) covers input pixels centred at
    ((j + 0.5) stride, (i + 0.5) stride): each box's (crop x crop) logits resampled bilinearly
    into the box, 0 outside it."""
    k = boxes.shape[0]
    h, w = grid
    if k == 0:
        return mask_logits.new_zeros((0, h, w))
    xs = (torch.arange(w, device=boxes.device, dtype=torch.float32) + 0.5) * stride
    ys = (torch.arange(h, device=boxes.device, dtype=torch.float32) + 0.5) * stride
    u = (xs[None] - boxes[:, 0:1]) / (boxes[:, 2:3] - boxes[:, 0:1]).clamp(min=1e-6)  # (K, w) in 0..1 inside
    v = (ys[None] - boxes[:, 1:2]) / (boxes[:, 3:4] - boxes[:, 1:2]).clamp(min=1e-6)
    grid_uv = torch.stack(torch.broadcast_tensors((2 * u - 1)[:, None, :], (2 * v - 1)[:, :, None]), -1)
    sampled = F.grid_sample(mask_logits.float(), grid_uv, mode="bilinear", padding_mode="border", align_corners=False)
    inside = ((u >= 0) & (u <= 1))[:, None, :] & ((v >= 0) & (v <= 1))[:, :, None]
    return torch.sigmoid(sampled[:, 0]) * inside


def merge(semantic_logits: torch.Tensor, masks: torch.Tensor, objectness: torch.Tensor, scores: torch.Tensor,
          train_ids: torch.Tensor, cfg: YoloPanopticSettings,
          order: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image: (id map, confidence, semantic argmax) on the grid of ``semantic_logits``
    (C, h, w) from the instances' 0/1 ``masks`` (K, h, w), most confident first. A pixel several
    masks cover goes to the highest ``order`` (default: ``objectness``, the heuristic; the
    ranking merge passes the ranking scores), the most confident of those on a tie."""
    c, h, w = semantic_logits.shape
    prob, sem = semantic_logits.float().softmax(0).max(0)
    is_thing = torch.as_tensor(IS_THING, device=sem.device)[sem]
    k = masks.shape[0]
    has = masks.bool().any(0) if k else torch.zeros_like(is_thing)
    # Stuff: what the instances leave of each class, kept where it is large enough.
    stuff = ~is_thing & ~has
    area = torch.bincount(sem[stuff], minlength=c)
    keep_stuff = stuff & (area[sem] >= cfg.stuff_area_at(h, w))
    ids = torch.where(keep_stuff, sem.int() * cfg.label_divisor, torch.full_like(sem, cfg.void_id, dtype=torch.int32))
    confidence = prob
    if k:
        # Each pixel goes to the instance with the highest order among those covering it (argmax
        # takes the first of equal values: the more confident one).
        rank = (objectness if order is None else order).float()
        claim = torch.where(masks.bool(), rank[:, None, None], torch.full_like(masks, -1.0, dtype=torch.float32))
        owner = claim.argmax(0)
        pixels = torch.bincount(owner[has], minlength=k)
        present = pixels > 0
        # k per class: 1, 2, ... among the instances that kept pixels, in the given order.
        same = (train_ids[:, None] == train_ids[None]) & present[None]
        number = torch.tril(same.int()).sum(1).int()
        inst_ids = train_ids.int() * cfg.label_divisor + number
        ids = torch.where(has, inst_ids[owner], ids)
        confidence = torch.where(has, scores.float()[owner], confidence)
    return ids.int(), confidence.float(), sem


@dataclass
class FrameInstances:
    """One image's instances before the merge, most confident first."""

    detections: Detections
    masks: torch.Tensor  # (K, h, w) 0/1 float on the semantic grid
    train_ids: torch.Tensor  # (K,) trainIds


class YoloPanopticPostprocessor:
    """The family's post-processing with the mask head's weights (and, for ``merge: ranking``,
    the spatial ranking module's): a callable ``(heads, input_size, settings) -> YoloPanopticBatch``
    for the Predictor. ``source`` names where the weights came from, for messages."""

    def __init__(self, spec, mask_head: torch.nn.Module, device, ranking: torch.nn.Module | None = None,
                 source: str = "the model"):
        self.spec = spec
        self.mask_head = mask_head.to(device).eval()
        self.ranking = ranking.to(device).eval() if ranking is not None else None
        self.source = source
        self.anchors = torch.tensor(spec.anchors, dtype=torch.float32, device=device)
        self.train_ids = torch.tensor(spec.thing_ids, dtype=torch.long, device=device)

    def problem(self, cfg: YoloPanopticSettings) -> str | None:
        """Why these weights cannot post-process with ``cfg``, or None."""
        if cfg.merge == "ranking" and self.ranking is None:
            return (f"merge: ranking needs the spatial ranking module's weights, which {self.source} does not "
                    "hold; train them on top of this checkpoint with `pisr-ros train-ranking --model CHECKPOINT.pt "
                    "--data ROOT --out RANKED.pt` (then export that file for ONNX), or use merge: heuristic")
        return None

    @torch.no_grad()
    def instances(self, heads: dict, cfg: YoloPanopticSettings) -> list[FrameInstances]:
        """Per image: the detections NMS keeps and their masks on the semantic grid."""
        from pisr_ros.models.yolo_panoptic.network import mask_head_input

        semantic, features = heads["semantic"].float(), heads["mask_features"].float()
        grid = tuple(semantic.shape[-2:])
        found = decode(heads, self.anchors.to(semantic.device), len(self.spec.thing_ids), cfg.score_threshold)
        dets = []
        for boxes, scores, obj, cls in found:
            keep = class_nms(boxes, scores, cls, cfg.nms_iou)[: cfg.max_detections]
            dets.append(Detections(boxes[keep], scores[keep], obj[keep], cls[keep]))
        batch_index = torch.cat([torch.full((len(d.scores),), i, dtype=torch.long, device=semantic.device)
                                 for i, d in enumerate(dets)])
        boxes = torch.cat([d.boxes for d in dets])
        train_ids = self.train_ids.to(semantic.device)[torch.cat([d.classes for d in dets]).long()]
        crops = mask_head_input(features, semantic, boxes, batch_index, train_ids, self.mask_head.crop,
                                SEMANTIC_STRIDE)
        logits = self.mask_head(crops) if boxes.shape[0] else crops[:, :1]
        masks = (paste_masks(logits, boxes, grid, SEMANTIC_STRIDE) >= cfg.mask_threshold).float()
        return [FrameInstances(d, masks[batch_index == i], train_ids[batch_index == i]) for i, d in enumerate(dets)]

    @torch.no_grad()
    def __call__(self, heads: dict, input_size, cfg: YoloPanopticSettings) -> YoloPanopticBatch:
        from pisr_ros.models.yolo_panoptic.spatial_ranking import ranking_scores

        reason = self.problem(cfg)
        if reason:
            raise UsageError(reason)
        semantic = heads["semantic"].float()
        frames = self.instances(heads, cfg)
        ids, conf, sems = [], [], []
        for i, f in enumerate(frames):
            d = f.detections
            order = ranking_scores(self.ranking, f.masks, d.classes) if cfg.merge == "ranking" else None
            a, b, s = merge(semantic[i], f.masks, d.objectness, d.scores, f.train_ids, cfg, order)
            ids.append(a)
            conf.append(b)
            sems.append(s)
        return YoloPanopticBatch(torch.stack(ids), torch.stack(conf), torch.stack(sems), [f.detections for f in frames])
