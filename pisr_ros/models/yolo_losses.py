"""YOLO-Panoptic's training loss: YOLOv3's detection loss + L_sem + 0.1 L_inst (thesis eq. 3.1).

    criterion = YoloPanopticLoss(spec)
    parts = criterion(model(images), targets)   # model in training mode; targets: yolo_targets
    parts["loss"].backward()

Parts (each unweighted; "loss" is the weighted sum, weights in ``spec.loss``):
  box         1 - GIoU of the decoded box of each positive (or YOLOv3's squared error, "mse")
  objectness  BCE: mean over positives + mean over negatives (predictions overlapping no
              ground-truth box by more than ``ignore_iou``)
  class       per-class BCE of the positives (summed over classes, averaged over positives)
  semantic    cross-entropy of the PPM's logits, upsampled to the targets (255 ignored)
  mask        BCE of the mask head on each ground-truth box's crop against the instance's pixels
              in it (the largest ``max_mask_instances`` per image); the mask head trains on the
              ground-truth boxes, as Mask R-CNN's trains on its positive proposals
A positive is the one (head, anchor, cell) per ground-truth box: the anchor of all nine whose
(w, h) overlaps the box's most (YOLOv3's best-anchor assignment), at the cell of its center.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pisr_ros.models.yolo_panoptic.boxes import box_iou, decode_boxes, giou, head_view
from pisr_ros.models.yolo_panoptic.network import HEAD_ANCHORS, HEAD_STRIDES, mask_head_input
from pisr_ros.models.yolo_panoptic.spec import YoloPanopticSpec

LOSS_PARTS = ("box", "objectness", "class", "semantic", "mask")


def best_anchors(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Index of the anchor (of ``anchors`` (9, 2)) whose shape overlaps each (w, h) most."""
    inter = torch.minimum(wh[:, None], anchors[None]).prod(-1)
    union = wh.prod(-1)[:, None] + anchors.prod(-1)[None] - inter
    return (inter / union).argmax(1)


def mask_targets(instances: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor, numbers: torch.Tensor,
                 size: int, samples: int = 2) -> torch.Tensor:
    """(K, 1, size, size) 0/1: whether most of each bin of a box's crop is that instance's pixels
    (``instances`` (N, H, W) numbers them, ``numbers`` (K,) the box's), sampled like RoIAlign
    (``samples`` x ``samples`` points per bin, nearest pixel)."""
    _, h, w = instances.shape
    steps = (torch.arange(size * samples, device=boxes.device, dtype=torch.float32) + 0.5) / samples
    xs = boxes[:, 0:1] + steps * ((boxes[:, 2:3] - boxes[:, 0:1]) / size)
    ys = boxes[:, 1:2] + steps * ((boxes[:, 3:4] - boxes[:, 1:2]) / size)
    cols = xs.floor().long().clamp(0, w - 1)
    rows = ys.floor().long().clamp(0, h - 1)
    ids = instances[batch_index[:, None, None], rows[:, :, None], cols[:, None, :]]  # (K, S, S)
    hit = (ids == numbers[:, None, None]).float()[:, None]
    return (F.avg_pool2d(hit, samples) >= 0.5).float()


class YoloPanopticLoss(nn.Module):
    def __init__(self, spec: YoloPanopticSpec):
        super().__init__()
        self.spec = spec
        self.cfg = spec.loss
        self.register_buffer("anchors", torch.tensor(spec.anchors, dtype=torch.float32), persistent=False)
        self.register_buffer("train_ids", torch.tensor(spec.thing_ids, dtype=torch.long), persistent=False)

    def forward(self, outputs: dict, targets: dict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        det = self.detection(outputs, targets["boxes"])
        sem_logits = outputs["semantic"]
        labels = targets["semantic"].long()
        up = F.interpolate(sem_logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
        semantic = F.cross_entropy(up, labels, ignore_index=cfg.ignore_label)
        if not torch.isfinite(semantic):  # every pixel void
            semantic = up.sum() * 0.0
        mask = self.mask(outputs, targets)
        parts = dict(det, semantic=semantic, mask=mask)
        parts["loss"] = (cfg.box_weight * parts["box"] + cfg.objectness_weight * parts["objectness"]
                         + cfg.class_weight * parts["class"] + cfg.semantic_weight * semantic + cfg.mask_weight * mask)
        return parts

    def detection(self, outputs: dict, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, fields = self.cfg, 5 + self.spec.num_things
        anchors = self.anchors.to(boxes.device)
        # Only the slots some image uses: the IoU of every prediction with every slot below is
        # the loss's largest tensor, and most of the padded slots are empty.
        boxes = boxes[:, (boxes[..., 0] >= 0).any(0)]
        valid = boxes[..., 0] >= 0  # (N, M)
        img, slot = valid.nonzero(as_tuple=True)
        gt = boxes[img, slot]  # (G, 5): class, x1, y1, x2, y2
        wh = (gt[:, 3:5] - gt[:, 1:3]).clamp(min=1.0)
        centers = (gt[:, 1:3] + gt[:, 3:5]) / 2
        best = best_anchors(wh, anchors)
        pos_logits, neg_logits, box_terms, cls_terms = [], [], [], []
        gt_boxes = torch.where(valid[..., None], boxes[..., 1:], torch.full_like(boxes[..., 1:], -1e6))
        for name, stride in HEAD_STRIDES.items():
            p = head_view(outputs[name].float(), fields)  # (N, A, h, w, F)
            n, _, h, w, _ = p.shape
            which = torch.tensor(HEAD_ANCHORS[name], device=boxes.device)
            head_anchors = anchors[which]
            pred = decode_boxes(p, head_anchors, stride)
            with torch.no_grad():  # YOLOv3's ignore rule: a good box somewhere else is no negative
                overlap = box_iou(pred.reshape(n, -1, 4), gt_boxes).amax(-1) if boxes.shape[1] else \
                    pred.new_zeros((n, pred[..., 0].numel() // n))
                negative = (overlap <= cfg.ignore_iou).view(n, -1, h, w)
            mine = (best[:, None] == which[None]).any(1)
            a = (best[mine, None] == which[None]).float().argmax(1)
            b = img[mine]
            gx = (centers[mine, 0] / stride).floor().long().clamp(0, w - 1)
            gy = (centers[mine, 1] / stride).floor().long().clamp(0, h - 1)
            negative[b, a, gy, gx] = False
            neg_logits.append(p[..., 4][negative])
            if b.numel() == 0:
                continue
            cell = p[b, a, gy, gx]  # (P, F)
            pos_logits.append(cell[:, 4])
            target_cls = F.one_hot(gt[mine, 0].long(), self.spec.num_things).float()
            cls_terms.append(F.binary_cross_entropy_with_logits(cell[:, 5:], target_cls, reduction="none").sum(1))
            if cfg.box_loss == "giou":
                box_terms.append(1.0 - giou(pred[b, a, gy, gx], gt[mine, 1:]))
            else:
                txy = centers[mine] / stride - torch.stack([gx, gy], 1).float()
                twh = torch.log(wh[mine] / head_anchors[a])
                scale = 2.0 - wh[mine].prod(1) / float(self.spec.input_size[0] * self.spec.input_size[1])
                err = (torch.sigmoid(cell[:, :2]) - txy).pow(2).sum(1) + (cell[:, 2:4] - twh).pow(2).sum(1)
                box_terms.append(scale * err)
        negatives = torch.cat(neg_logits)
        objectness = F.binary_cross_entropy_with_logits(negatives, torch.zeros_like(negatives))
        zero = negatives.sum() * 0.0
        if pos_logits:
            positives = torch.cat(pos_logits)
            objectness = objectness + F.binary_cross_entropy_with_logits(positives, torch.ones_like(positives))
            box, cls = torch.cat(box_terms).mean(), torch.cat(cls_terms).mean()
        else:
            box, cls = zero, zero
        return {"box": box, "objectness": objectness, "class": cls}

    def mask(self, outputs: dict, targets: dict) -> torch.Tensor:
        head = outputs.get("mask_head")
        if head is None:
            raise ValueError("YoloPanopticLoss needs the network in training mode (its output carries the mask head)")
        boxes = targets["boxes"][:, : self.cfg.max_mask_instances]
        valid = boxes[..., 0] >= 0
        img, slot = valid.nonzero(as_tuple=True)
        if img.numel() == 0:
            return sum(p.sum() for p in head.parameters()) * 0.0 + outputs["mask_features"].sum() * 0.0
        gt = boxes[img, slot]
        train_ids = self.train_ids.to(gt.device)[gt[:, 0].long()]
        crops = mask_head_input(outputs["mask_features"].float(), outputs["semantic"].float(), gt[:, 1:], img,
                                train_ids, head.crop)
        logits = head(crops)
        target = mask_targets(targets["instances"], gt[:, 1:], img, slot + 1, head.crop)
        return F.binary_cross_entropy_with_logits(logits, target)
