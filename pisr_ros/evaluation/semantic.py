"""Semantic IoU per class and mIoU, as cityscapesscripts' ``evalPixelLevelSemanticLabeling``.

Both ground truth and predictions are labelIds PNGs (single channel, values 0..33). The confusion
matrix is built with one ``np.bincount`` per image, images in a process pool. The scores follow
the reference exactly:

- IoU = TP / (TP + FP + FN) in pixels, where FP counts only pixels whose ground truth is one of
  the 19 evaluated classes (pixels on ignored ground truth never count against a prediction);
- a prediction of an ignored labelId (e.g. 0) on an evaluated pixel is an FN of the true class;
- a class with TP + FP + FN = 0 (absent from the ground truth and never predicted on evaluated
  pixels) has IoU NaN and is left out of the mean; a class absent from the ground truth but
  predicted somewhere evaluated has IoU 0 and counts;
- mIoU is the mean over the non-NaN classes, summed in labelId order.

Pairing rule (the reference's ``getPrediction``): every ``<image_id>_gtFine_labelIds.png`` under
the ground-truth folder (searched recursively, e.g. ``gtFine/val``) needs exactly one file named
``<image_id>*.png`` anywhere under the prediction folder.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS
from PIL import Image

from pisr_ros.errors import UsageError
from pisr_ros.evaluation.panoptic_quality import map_images
from pisr_ros.taxonomy import CLASSES

GT_SUFFIX = "_gtFine_labelIds.png"
#: Every labelId the reference accepts in a confusion matrix (it skips only license plate, -1).
LABEL_IDS: tuple[int, ...] = tuple(sorted(lab.id for lab in _CITYSCAPES_LABELS if lab.id >= 0))
MATRIX_SIZE = max(LABEL_IDS) + 1
#: Ground-truth labelIds that are evaluated (the reference's "not ignoreInEval").
EVALUATED = np.zeros(MATRIX_SIZE, dtype=bool)
EVALUATED[[lab.id for lab in _CITYSCAPES_LABELS if lab.id >= 0 and not lab.ignoreInEval]] = True
#: The scored classes, in labelId order (the order the reference averages in).
SCORED = tuple(sorted(CLASSES, key=lambda c: c.label_id))
if sorted(c.label_id for c in SCORED) != np.nonzero(EVALUATED)[0].tolist():
    raise RuntimeError("taxonomy's training classes differ from cityscapesscripts' evaluated labels")


def find_pairs(gt_dir: str, pred_dir: str) -> list[tuple[str, str]]:
    """(ground truth, prediction) paths, sorted by ground truth; see the module doc for the rule."""
    for folder, what in ((gt_dir, "ground-truth labelIds"), (pred_dir, "prediction labelIds")):
        if not os.path.isdir(folder):
            raise UsageError(f"{folder}: no such directory ({what} folder)")
    gts = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(gt_dir)
        for name in names
        if name.endswith(GT_SUFFIX)
    )
    if not gts:
        raise UsageError(f"{gt_dir}: no *{GT_SUFFIX} files found (searched recursively)")
    ids = {os.path.basename(p)[: -len(GT_SUFFIX)] for p in gts}
    found: dict[str, list[str]] = {}
    for root, _, names in os.walk(pred_dir):
        for name in names:
            if not name.endswith(".png"):
                continue
            # Every prefix that is an image id matches, as fnmatch("<image_id>*.png") would.
            for k in range(1, len(name) - 3):
                if name[:k] in ids:
                    found.setdefault(name[:k], []).append(os.path.join(root, name))
    pairs = []
    for gt in gts:
        image_id = os.path.basename(gt)[: -len(GT_SUFFIX)]
        preds = found.get(image_id, [])
        if not preds:
            raise UsageError(f"{gt}: no prediction; expected one file named {image_id}*.png under {pred_dir}")
        if len(preds) > 1:
            raise UsageError(f"{gt}: {len(preds)} predictions match {image_id}*.png: {sorted(preds)[:3]}")
        pairs.append((gt, preds[0]))
    return pairs


def read_label_png(path: str) -> np.ndarray:
    """A single-channel labelIds PNG as int64, read with PIL as the reference reads it."""
    try:
        with Image.open(path) as img:
            arr = np.array(img)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot be decoded as an image: {exc}") from None
    if arr.ndim != 2 or arr.dtype.kind not in "iu":
        raise UsageError(f"{path}: not a single-channel labelIds image (got shape {arr.shape}, {arr.dtype})")
    return arr.astype(np.int64, copy=False)


def _check_values(arr: np.ndarray, path: str) -> None:
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= MATRIX_SIZE:
        bad = np.unique(arr[(arr < 0) | (arr >= MATRIX_SIZE)])[:5].tolist()
        raise UsageError(f"{path}: value(s) {bad} are not Cityscapes labelIds (0..{MATRIX_SIZE - 1})")


def pair_confusion(pair: tuple[str, str]) -> np.ndarray:
    """Confusion matrix (rows ground truth, columns prediction, labelIds) of one image pair."""
    gt_path, pred_path = pair
    gt = read_label_png(gt_path)
    pred = read_label_png(pred_path)
    if gt.shape != pred.shape:
        raise UsageError(
            f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} differs from the ground truth "
            f"{gt_path} ({gt.shape[1]}x{gt.shape[0]})"
        )
    _check_values(gt, gt_path)
    _check_values(pred, pred_path)
    key = gt * MATRIX_SIZE
    key += pred
    return np.bincount(key.ravel(), minlength=MATRIX_SIZE * MATRIX_SIZE).reshape(MATRIX_SIZE, MATRIX_SIZE)


def confusion(pairs: Sequence[tuple[str, str]], workers: int | None = None) -> np.ndarray:
    total = np.zeros((MATRIX_SIZE, MATRIX_SIZE), dtype=np.int64)
    for conf in map_images(pair_confusion, pairs, workers):
        total += conf
    return total


def class_iou(conf: np.ndarray) -> dict[str, float]:
    """IoU per scored class (NaN where undefined), keyed by class name, in labelId order."""
    scores = {}
    for cls in SCORED:
        lab = cls.label_id
        tp = int(conf[lab, lab])
        fn = int(conf[lab, :].sum()) - tp
        fp = int(conf[EVALUATED, lab].sum()) - tp
        denom = tp + fp + fn
        scores[cls.name] = float(tp) / denom if denom else math.nan
    return scores


def mean_iou(scores: dict[str, float]) -> float:
    valid = [v for v in scores.values() if not math.isnan(v)]
    total = 0.0
    for v in valid:  # summed one by one, in labelId order, as the reference does
        total += v
    return total / len(valid) if valid else math.nan


def evaluate_semantic(gt_dir: str, pred_dir: str, workers: int | None = None) -> dict:
    """``classScores`` (IoU per class), ``averageScoreClasses`` (mIoU) and ``numImages``."""
    pairs = find_pairs(gt_dir, pred_dir)
    scores = class_iou(confusion(pairs, workers))
    return {"classScores": scores, "averageScoreClasses": mean_iou(scores), "numImages": len(pairs)}


def format_table(results: dict) -> str:
    lines = [f"{'class':14s}|   IoU", "-" * 22]
    for name, iou in results["classScores"].items():
        lines.append(f"{name:14s}| " + ("    -" if math.isnan(iou) else f"{100 * iou:5.1f}"))
    lines.append("-" * 22)
    miou = results["averageScoreClasses"]
    lines.append(f"{'mIoU':14s}| " + ("    -" if math.isnan(miou) else f"{100 * miou:5.1f}"))
    return "\n".join(lines)
