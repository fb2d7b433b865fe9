"""Scoring a replay's predictions with the project's evaluator (pisr_ros.evaluation.panoptic_quality
and .semantic) against the ground truth of exactly the frames that were written."""
from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pisr_ros.errors import UsageError
from pisr_ros.evaluation import panoptic_quality as pq
from pisr_ros.evaluation import semantic
from pisr_ros.evaluation.cityscapes_files import CityscapesWriter
from pisr_ros.evaluation.replay.ground_truth import GroundTruth, load_ground_truth
from pisr_ros.evaluation.replay.predictions import add_frame, open_predictions


def pairs_of(frames) -> Iterator[tuple[Any, Any]]:
    """The (key, value) pairs of a dict, or the pairs of an iterable of them."""
    return iter(frames.items()) if isinstance(frames, Mapping) else iter(frames)


def score_frames(frames: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
                 gt_root: str | Path | GroundTruth, split: str = "val", out_dir: str | Path = ".", *,
                 dropped: Sequence[str] = (), workers: int | None = None) -> dict:
    """Write ``frames`` (image_id -> id map at the ground truth's resolution, a dict or an
    iterable of pairs) as predictions under ``out_dir/predictions`` and score them against the
    ground truth of exactly those images. ``dropped``: labelled image ids whose result never came
    back; they are not in the main scores, and are scored as empty predictions in
    ``panoptic_with_drops``.

    Returns ``{"panoptic": {All, Things, Stuff: {pq, sq, rq, n}, per_class: {name: {label_id,
    pq, sq, rq, tp, fp, fn}}}, "panoptic_with_drops": same or None, "semantic": {classScores,
    averageScoreClasses, numImages}, "per_frame_pq": {image_id: PQ All of that image alone},
    "scored_ids": [...], "dropped_ids": [...]}``; fractions in 0..1, NaN where undefined.
    """
    gt = gt_root if isinstance(gt_root, GroundTruth) else load_ground_truth(gt_root, split)
    writer = open_predictions(out_dir)
    for image_id, id_map in pairs_of(frames):
        if image_id not in gt.annotations:
            raise UsageError(f"image {image_id} has no label in {gt.json_path}")
        add_frame(writer, image_id, id_map)
    return score_written(writer, gt, dropped, workers)


def score_written(writer: CityscapesWriter, gt: GroundTruth, dropped: Sequence[str] = (),
                  workers: int | None = None) -> dict:
    """``score_frames`` for predictions already written with ``writer`` (``open_predictions``)."""
    pred_doc = writer.document()
    writer.close()
    written = set(writer.ids)
    dropped = [i for i in dropped if i not in written]
    gt.check_labelled(list(writer.ids) + list(dropped), "the replay")
    if not writer.ids:
        raise UsageError("no frame was scored: none of the labelled frames came back")
    gt_sub = {"annotations": [gt.annotations[i] for i in writer.ids], "categories": gt.json["categories"]}
    pairs = pq.pair_images(gt_sub, str(gt.json_path), str(gt.folder), pred_doc, str(writer.json_path),
                           str(writer.panoptic_dir))
    func = functools.partial(pq.image_stats, categories=frozenset(gt.categories))
    per_image = list(pq.map_images(func, pairs, workers))
    stats = pq.accumulate(per_image)
    results = pq.average_pq(stats, gt.categories)
    per_frame = {str(p.image_id): pq.average_pq(s, gt.categories)["All"]["pq"] for p, s in zip(pairs, per_image)}

    with_drops = None
    if dropped:
        # An empty prediction matches nothing: every non-crowd ground-truth segment is a false
        # negative (the reference's rule), with no false positives.
        misses: dict[int, pq.CategoryStats] = {}
        for image_id in dropped:
            for seg in gt.annotations[image_id].get("segments_info", []):
                if seg.get("iscrowd") != 1:
                    misses.setdefault(seg["category_id"], pq.CategoryStats()).fn += 1
        total = pq.accumulate([stats, misses])
        with_drops = _panoptic_summary(pq.average_pq(total, gt.categories), total, gt.categories)

    sem_pairs = [(str(gt.label_ids_png(i)), str(writer.semantic_png(i))) for i in writer.ids]
    scores = semantic.class_iou(semantic.confusion(sem_pairs, workers))
    return {
        "panoptic": _panoptic_summary(results, stats, gt.categories),
        "panoptic_with_drops": with_drops,
        "semantic": {"classScores": scores, "averageScoreClasses": semantic.mean_iou(scores),
                     "numImages": len(sem_pairs)},
        "per_frame_pq": per_frame,
        "scored_ids": list(writer.ids),
        "dropped_ids": list(dropped),
        "predictions": str(writer.out),
    }


def _panoptic_summary(results: dict, stats: dict, cats: dict[int, dict]) -> dict:
    out = {name: dict(results[name]) for name, _ in pq.GROUPS}
    per_class = {}
    for label, r in results["per_class"].items():
        s = stats.get(label, pq.CategoryStats())
        name = str(cats[label].get("name", label))
        per_class[name] = {"label_id": label, "isthing": int(cats[label]["isthing"]), **r,
                           "tp": s.tp, "fp": s.fp, "fn": s.fn}
    out["per_class"] = per_class
    return out
