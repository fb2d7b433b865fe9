"""Box AP50 of the thing segments in panoptic predictions: COCO's detection AP at IoU 0.5 (all
areas, at most 100 boxes per image and class), computed from the two panoptic JSONs.

A predicted segment's box is its ``bbox`` and its confidence the ``score`` that `pisr-ros
predict` writes into ``segments_info``; a ground-truth segment's box is its ``bbox``, and
``iscrowd`` segments are ignored regions as in COCO (a box matched to one is neither a true nor
a false positive; its IoU is the intersection over the predicted box's area). The matching,
the precision envelope and the 101 recall points are pycocotools' ``COCOeval`` for
``iouType="bbox"``; test_box_ap checks the numbers against it.

    ap = box_ap50(gt_json_doc, pred_json_doc)   # BoxAP: mean over classes with ground truth
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pisr_ros.errors import UsageError

IOU = 0.5
MAX_DETECTIONS = 100  # per image and class, COCOeval's maxDets[-1]
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class BoxAP:
    mean: float  # over the classes that have ground truth; NaN when none has
    per_class: dict[int, float]  # category_id -> AP (classes with ground truth)
    num_images: int

    def as_dict(self, names: dict[int, str]) -> dict:
        return {"iou": IOU, "mean": self.mean, "num_images": self.num_images,
                "per_class": {names.get(c, str(c)): v for c, v in sorted(self.per_class.items())}}


def box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """(D, G) IoU of [x, y, w, h] boxes; against a crowd box, intersection over the detection's area."""
    if not len(dt) or not len(gt):
        return np.zeros((len(dt), len(gt)))
    x1 = np.maximum(dt[:, None, 0], gt[None, :, 0])
    y1 = np.maximum(dt[:, None, 1], gt[None, :, 1])
    x2 = np.minimum(dt[:, None, 0] + dt[:, None, 2], gt[None, :, 0] + gt[None, :, 2])
    y2 = np.minimum(dt[:, None, 1] + dt[:, None, 3], gt[None, :, 1] + gt[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_d = (dt[:, 2] * dt[:, 3])[:, None]
    union = np.where(crowd[None, :], area_d, area_d + (gt[:, 2] * gt[:, 3])[None, :] - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_image(dt: np.ndarray, scores: np.ndarray, gt: np.ndarray, crowd: np.ndarray):
    """One image and class: (scores, matched, ignored) of its kept detections, best first, and
    the number of ground-truth boxes that count. COCOeval.evaluateImg at one IoU threshold."""
    order = np.argsort(-scores, kind="mergesort")[:MAX_DETECTIONS]
    dt, scores = dt[order], scores[order]
    g_order = np.argsort(crowd, kind="mergesort")  # counted boxes first, crowds last
    gt, crowd = gt[g_order], crowd[g_order]
    ious = box_iou(dt, gt, crowd)
    taken = np.zeros(len(gt), bool)
    matched = np.zeros(len(dt), bool)
    ignored = np.zeros(len(dt), bool)
    for d in range(len(dt)):
        best, m = min(IOU, 1 - 1e-10), -1
        for g in range(len(gt)):
            if taken[g] and not crowd[g]:
                continue
            if m > -1 and not crowd[m] and crowd[g]:
                break  # a counted match beats any crowd
            if ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m == -1:
            continue
        taken[m] = True
        matched[d] = True
        ignored[d] = crowd[m]
    return scores, matched, ignored, int((~crowd).sum())


def average_precision(scores: np.ndarray, matched: np.ndarray, ignored: np.ndarray, positives: int) -> float:
    """COCOeval.accumulate for one class: precision at the 101 recall points, averaged."""
    order = np.argsort(-scores, kind="mergesort")
    matched, ignored = matched[order], ignored[order]
    tp = np.cumsum(matched & ~ignored).astype(float)
    fp = np.cumsum(~matched & ~ignored).astype(float)
    recall = tp / positives
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope, from the right
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    q = np.zeros(len(RECALL_POINTS))
    ok = at < len(precision)
    q[ok] = precision[at[ok]]
    return float(q.mean())


def _boxes(segments: list[dict], category: int, with_scores: bool, where: str):
    mine = [s for s in segments if s["category_id"] == category]
    boxes = np.array([s["bbox"] for s in mine], float).reshape(-1, 4)
    crowd = np.array([bool(s.get("iscrowd", 0)) for s in mine], bool)
    if not with_scores:
        return boxes, crowd
    if any("score" not in s for s in mine):
        raise UsageError(f"{where}: a thing segment has no 'score'; box AP needs the scores that "
                         "`pisr-ros predict` writes (predict again with this version)")
    return boxes, np.array([float(s["score"]) for s in mine], float)


def box_ap50(gt: dict, pred: dict) -> BoxAP:
    """``gt``, ``pred``: panoptic JSON documents (annotations with segments_info; ``gt`` also
    has the categories with ``isthing``). Images are paired by image_id, as for PQ."""
    things = [c["id"] for c in gt["categories"] if c.get("isthing")]
    preds = {a["image_id"]: a["segments_info"] for a in pred["annotations"]}
    missing = [a["image_id"] for a in gt["annotations"] if a["image_id"] not in preds]
    if missing:
        raise UsageError(f"no prediction for {len(missing)} ground-truth image(s), e.g. {missing[0]}")
    # Images in image_id order: the order COCOeval concatenates them in, which decides ties.
    annotations = sorted(gt["annotations"], key=lambda a: a["image_id"])
    per_class: dict[int, float] = {}
    for category in things:
        parts, positives = [], 0
        for ann in annotations:
            g_boxes, crowd = _boxes(ann["segments_info"], category, False, ann["image_id"])
            d_boxes, scores = _boxes(preds[ann["image_id"]], category, True, ann["image_id"])
            s, m, i, n = match_image(d_boxes, scores, g_boxes, crowd)
            parts.append((s, m, i))
            positives += n
        if positives == 0:
            continue  # COCOeval: -1, left out of the mean
        s, m, i = (np.concatenate(x) for x in zip(*parts))
        per_class[category] = average_precision(s, m, i, positives)
    mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return BoxAP(mean, per_class, len(gt["annotations"]))
