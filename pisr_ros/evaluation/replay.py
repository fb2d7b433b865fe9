"""Replay evaluation: frames of a bag through a model (offline) or a running node (live), scored
against Cityscapes-style ground truth, with a report.

The pieces, in the order a replay uses them:

1. A *replay* produces a ``ReplayOutput``: what came back for each header stamp (a
   ``FrameResult``: the id map at camera resolution and the latency, or None) and the stamps that
   were sent. ``run_offline`` is the replay without ROS (the Predictor on every frame); the live
   replay (rclpy, pisr_ros.ros) produces the same object.
2. ``evaluate_replay`` pairs stamps with image ids through the bag's frames map
   (pisr_ros.evaluation.bags), counts what was sent, received, dropped and scored, writes the
   predictions and scores them (``score_frames``), then writes the report (``write_report``).
3. ``score_frames`` writes predictions in the Cityscapes panoptic format (what ``pisr-ros
   predict`` writes: panoptic.json + PNGs + semantic labelIds) and scores them with the project's
   evaluator (pisr_ros.evaluation.panoptic_quality and .semantic) against the ground-truth images
   that were scored, and nothing else.

Semantics that matter when reading the numbers:

- PQ/SQ/RQ and mIoU are over the *scored* frames: labelled frames whose result came back. A
  frame that did not come back is *dropped*: counted and listed, never silently left out. The
  report also gives PQ with each dropped frame scored as an empty (all-void) prediction, i.e.
  every ground-truth segment of it a false negative (``panoptic_with_drops``).
- The semantic labelIds scored for mIoU are the class of each pixel's panoptic segment
  (trainId -> labelId, void -> 0), the only semantics a node's labels carry; ``pisr-ros predict``
  writes the semantic head's argmax instead, so its mIoU differs while its PQ is the same.
- Frames whose stamp is not in the frames map are *unlabelled*: sent (they load the node like any
  other) but not scored.
"""
from __future__ import annotations

import functools
import json
import math
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pisr_ros.data import cityscapes_layout as layout
from pisr_ros.errors import UsageError
from pisr_ros.evaluation import panoptic_quality as pq
from pisr_ros.evaluation import semantic
from pisr_ros.evaluation.bags import FrameMap
from pisr_ros.inference.predict_cli import (PANOPTIC_DIR, PANOPTIC_JSON, PANOPTIC_SUFFIX, SEMANTIC_DIR,
                                            SEMANTIC_SUFFIX, categories)
from pisr_ros.panoptic import semantic_of, to_cityscapes_panoptic
from pisr_ros.taxonomy import LABEL_COLORS, TRAIN_TO_LABEL

PREDICTIONS_DIR = "predictions"
PLOTS_DIR = "plots"
EXAMPLES_DIR = "examples"
REPORT = "report.md"
METRICS = "metrics.json"


# ---------------------------------------------------------------------------------------------
# What a replay hands over


@dataclass(frozen=True)
class FrameResult:
    """What came back for one frame."""

    id_map: np.ndarray  # HxW int32 at camera resolution: trainId*1000+k, -1 void
    latency_s: float | None = None  # sent -> result received (live), or the model call (offline)


@dataclass
class ReplayOutput:
    """What one replay produced; offline and live replays both hand this to ``evaluate_replay``.

    ``results`` maps header stamps (ns) to ``FrameResult``s: a dict, or an iterable of
    (stamp, FrameResult) pairs (e.g. a generator that predicts frame by frame, so that not every
    id map is held in memory at once). ``sent_stamps``, ``wall_s`` and ``example_images`` are read
    only after ``results`` has been consumed, so a generator may fill them as it goes.
    """

    results: Mapping[int, FrameResult] | Iterable[tuple[int, FrameResult]]
    sent_stamps: list[int]  # header stamps of the frames sent, in the order sent
    wall_s: float | None = None  # first frame sent -> last result received; throughput = received / wall_s
    mode: str = "offline"  # "offline" or "live", for the report
    description: str = ""  # the model / node, for the report
    example_images: dict[int, np.ndarray] = field(default_factory=dict)  # stamp -> BGR frame (optional)
    notes: list[str] = field(default_factory=list)  # extra lines for the report


@dataclass
class Counts:
    sent: int = 0  # frames sent (played)
    received: int = 0  # sent frames whose result came back
    dropped: int = 0  # sent frames whose result did not come back
    labelled: int = 0  # sent frames whose stamp is in the frames map
    scored: int = 0  # labelled frames that came back and were scored
    dropped_labelled: int = 0  # labelled frames that did not come back (not scored; see panoptic_with_drops)
    unlabelled: int = 0  # sent frames whose stamp is not in the frames map (not scored)
    labels_not_sent: int = 0  # frames-map entries with no frame in the bag
    unexpected: int = 0  # results for stamps that were not sent (ignored)


# ---------------------------------------------------------------------------------------------
# Ground truth


@dataclass
class GroundTruth:
    """A Cityscapes-layout split's panoptic ground truth (gtFine/cityscapes_panoptic_<split>.json
    and PNGs, from cityscapesscripts' createPanopticImgs) and labelIds PNGs (gtFine/<split>)."""

    root: Path
    split: str
    json_path: Path
    folder: Path
    json: dict
    annotations: dict[str, dict]
    categories: dict[int, dict]

    def label_ids_png(self, image_id: str) -> Path:
        return layout.image_paths(self.root, self.split, image_id).label_ids

    def left_img(self, image_id: str) -> Path:
        return layout.image_paths(self.root, self.split, image_id).left_img

    def check_labelled(self, image_ids: Iterable[str], where: str = "the bag") -> None:
        """UsageError unless every image id has panoptic and labelIds ground truth."""
        ids = list(image_ids)
        missing = [i for i in ids if i not in self.annotations]
        if missing:
            raise UsageError(
                f"{len(missing)} of the {len(ids)} images of {where} have no label in {self.json_path} "
                f"(e.g. {', '.join(missing[:3])}); point --gt at the Cityscapes root those images come from "
                f"(and --split at their split)")
        no_sem = [i for i in ids if not _is_cityscapes_id(i) or not self.label_ids_png(i).is_file()]
        if no_sem:
            example = self.label_ids_png(no_sem[0]) if _is_cityscapes_id(no_sem[0]) else no_sem[0]
            raise UsageError(f"{len(no_sem)} of the {len(ids)} images of {where} have no labelIds ground truth "
                             f"(e.g. {example}); expected gtFine/{self.split}/<city>/<id>{layout.LABEL_IDS_SUFFIX}")


def _is_cityscapes_id(image_id: str) -> bool:
    try:
        layout.parse_image_id(image_id)
    except ValueError:
        return False
    return True


def load_ground_truth(root: str | Path, split: str = "val") -> GroundTruth:
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--gt {root}: no such directory (a Cityscapes root with gtFine/)")
    json_path = layout.panoptic_json(root, split)
    folder = layout.panoptic_dir(root, split)
    if not json_path.is_file():
        raise UsageError(f"--gt {root}: no {json_path.relative_to(root)}; make it with cityscapesscripts' "
                         f"createPanopticImgs (csCreatePanopticImgs --set-names {split}), or check --split")
    if not folder.is_dir():
        raise UsageError(f"--gt {root}: no {folder.relative_to(root)}/ (the panoptic PNGs beside {json_path.name})")
    doc = pq.load_json(str(json_path), "ground-truth panoptic JSON")
    cats = pq.categories_of(doc, str(json_path))
    anns = doc.get("annotations")
    if not isinstance(anns, list):
        raise UsageError(f"{json_path}: no 'annotations' list")
    by_id = {}
    for ann in anns:
        if not isinstance(ann, dict) or "image_id" not in ann or "file_name" not in ann:
            raise UsageError(f"{json_path}: an annotation lacks 'image_id' or 'file_name'")
        by_id[str(ann["image_id"])] = ann
    return GroundTruth(root, split, json_path, folder, doc, by_id, cats)


# ---------------------------------------------------------------------------------------------
# Predictions on disk


class PredictionWriter:
    """Writes id maps as ``pisr-ros predict`` does, under ``<out>/predictions/``: panoptic.json,
    panoptic/<id>_panoptic.png, semantic/<id>_labelIds.png (the segments' classes as labelIds).
    Files of an earlier run there are removed first."""

    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir) / PREDICTIONS_DIR
        self.panoptic_dir = self.dir / PANOPTIC_DIR
        self.semantic_dir = self.dir / SEMANTIC_DIR
        self.json_path = self.dir / PANOPTIC_JSON
        for d in (self.panoptic_dir, self.semantic_dir):
            if d.is_dir():
                shutil.rmtree(d)
            d.mkdir(parents=True)
        self.annotations: list[dict] = []
        self.images: list[dict] = []
        self.ids: list[str] = []
        self._seen: set[str] = set()

    def semantic_png(self, image_id: str) -> Path:
        return self.semantic_dir / (image_id + SEMANTIC_SUFFIX)

    def panoptic_png(self, image_id: str) -> Path:
        return self.panoptic_dir / (image_id + PANOPTIC_SUFFIX)

    def add(self, image_id: str, id_map: np.ndarray) -> None:
        if not isinstance(id_map, np.ndarray) or id_map.ndim != 2 or id_map.dtype != np.int32:
            got = f"{getattr(id_map, 'shape', '?')} {getattr(id_map, 'dtype', type(id_map).__name__)}"
            raise ValueError(f"id map of {image_id} must be HxW int32, got {got}")
        if image_id in self._seen:
            raise ValueError(f"two predictions for image {image_id}")
        png, segments = to_cityscapes_panoptic(id_map)
        _write_png(self.panoptic_png(image_id), cv2.cvtColor(png, cv2.COLOR_RGB2BGR))
        _write_png(self.semantic_png(image_id), TRAIN_TO_LABEL[semantic_of(id_map)])
        self.annotations.append({"image_id": image_id, "file_name": self.panoptic_png(image_id).name,
                                 "segments_info": segments})
        self.images.append({"id": image_id, "file_name": image_id + layout.LEFT_IMG_SUFFIX,
                            "height": int(id_map.shape[0]), "width": int(id_map.shape[1])})
        self.ids.append(image_id)
        self._seen.add(image_id)

    def finish(self) -> dict:
        doc = {"annotations": self.annotations, "images": self.images, "categories": categories()}
        with open(self.json_path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        return doc


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise UsageError(f"cannot write {path}")


# ---------------------------------------------------------------------------------------------
# Scoring


def _items(frames) -> Iterator[tuple[Any, Any]]:
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
    writer = PredictionWriter(out_dir)
    for image_id, id_map in _items(frames):
        if image_id not in gt.annotations:
            raise UsageError(f"image {image_id} has no label in {gt.json_path}")
        writer.add(image_id, id_map)
    return score_written(writer, gt, dropped, workers)


def score_written(writer: PredictionWriter, gt: GroundTruth, dropped: Sequence[str] = (),
                  workers: int | None = None) -> dict:
    """``score_frames`` for predictions already written with ``writer``."""
    pred_doc = writer.finish()
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
        "predictions": str(writer.dir),
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


# ---------------------------------------------------------------------------------------------
# Replays


def run_offline(bag: str | Path, topic: str, predictor, *, total: int | None = None,
                example_stamps: Iterable[int] = (), progress: bool = True) -> ReplayOutput:
    """The replay without ROS: ``predictor`` (pisr_ros.inference.Predictor) on every frame of
    ``topic``, in bag order. Latency is the predictor call (preprocess, network, post-processing,
    resize to the frame); wall_s also counts reading and decoding the bag. Results are produced
    lazily, as ``evaluate_replay`` consumes them."""
    from tqdm import tqdm

    from pisr_ros.evaluation.bags import read_image_frames

    wanted = set(example_stamps)
    out = ReplayOutput(results=(), sent_stamps=[], mode="offline",
                       description=predictor.describe() if hasattr(predictor, "describe") else "")

    def results() -> Iterator[tuple[int, FrameResult]]:
        t0 = time.perf_counter()
        frames = read_image_frames(bag, topic)
        for stamp, _, image in tqdm(frames, total=total, desc="replay (offline)", unit="frame", disable=not progress):
            out.sent_stamps.append(stamp)
            t = time.perf_counter()
            result = predictor(image, encoding="bgr")
            latency = time.perf_counter() - t
            if stamp in wanted:
                out.example_images[stamp] = image
            yield stamp, FrameResult(result.id_map, latency)
        out.wall_s = time.perf_counter() - t0

    out.results = results()
    return out


def pick_examples(items: Sequence, n: int) -> list:
    """``n`` items spread evenly over ``items`` (first, ..., last)."""
    if n <= 0 or not items:
        return []
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)] if n > 1 else [items[0]]


def evaluate_replay(replay: ReplayOutput, frame_map: FrameMap, gt: GroundTruth, out_dir: str | Path, *,
                    info: Mapping[str, Any] | None = None, examples: int = 3, workers: int | None = None) -> dict:
    """Pair the replay's results with labels by stamp, score them, and write the report into
    ``out_dir``. Returns the metrics (also in ``out_dir/metrics.json``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = PredictionWriter(out_dir)
    latency_of: dict[int, float | None] = {}
    results_seen: set[int] = set()
    # sent_stamps may grow while results are produced (a generator): follow it incrementally.
    sent_so_far: set[int] = set()
    followed = 0

    def was_sent(stamp: int) -> bool:
        nonlocal followed
        if followed < len(replay.sent_stamps):
            sent_so_far.update(int(s) for s in replay.sent_stamps[followed:])
            followed = len(replay.sent_stamps)
        return stamp in sent_so_far

    for stamp, res in _items(replay.results):
        stamp = int(stamp)
        if stamp in results_seen:
            continue  # a duplicate delivery: the first one counts
        results_seen.add(stamp)
        latency_of[stamp] = res.latency_s
        image_id = frame_map.by_stamp.get(stamp)
        if image_id is not None and was_sent(stamp):
            if image_id not in gt.annotations:
                raise UsageError(f"image {image_id} (stamp {stamp} ns) has no label in {gt.json_path}")
            writer.add(image_id, res.id_map)

    sent = [int(s) for s in replay.sent_stamps]
    sent_set = set(sent)
    counts = Counts(sent=len(sent))
    per_frame: list[dict] = []
    dropped_ids: list[str] = []
    for stamp in sent:
        image_id = frame_map.by_stamp.get(stamp)
        came_back = stamp in results_seen
        counts.received += came_back
        counts.dropped += not came_back
        if image_id is None:
            counts.unlabelled += 1
            status = "unlabelled" if came_back else "unlabelled, dropped"
        else:
            counts.labelled += 1
            status = "scored" if came_back else "dropped"
            if not came_back:
                dropped_ids.append(image_id)
        per_frame.append({"stamp_ns": stamp, "image_id": image_id, "status": status,
                          "latency_s": latency_of.get(stamp), "pq": None})
    counts.dropped_labelled = len(dropped_ids)
    counts.unexpected = len(results_seen - sent_set)
    counts.labels_not_sent = sum(1 for f in frame_map.frames if f.stamp_ns not in sent_set)
    if counts.labelled == 0:
        raise UsageError(
            f"none of the {len(sent)} frames' stamps is in the frames map {frame_map.source} "
            f"({_stamp_range(sent)} in the bag, {_stamp_range([f.stamp_ns for f in frame_map.frames])} in the map): "
            "the map belongs to another bag")
    counts.scored = len(writer.ids)

    metrics = score_written(writer, gt, dropped_ids, workers)
    for row in per_frame:
        if row["status"] == "scored":
            row["pq"] = metrics["per_frame_pq"].get(row["image_id"])
    latencies = [lat for s in sent if (lat := latency_of.get(s)) is not None]
    example_ids = pick_examples(writer.ids, examples)
    stamp_of = {f.image_id: f.stamp_ns for f in frame_map.frames}
    images = {i: replay.example_images[stamp_of[i]] for i in example_ids if stamp_of.get(i) in replay.example_images}
    run_info = {"mode": replay.mode, "model": replay.description, **(info or {})}
    if replay.notes:
        run_info["notes"] = list(replay.notes)
    return write_report(out_dir, metrics, latencies, counts, per_frame=per_frame, wall_s=replay.wall_s,
                        info=run_info, gt=gt, example_ids=example_ids, example_images=images)


def _stamp_range(stamps: Sequence[int]) -> str:
    if not stamps:
        return "no stamps"
    return f"stamps {min(stamps) / 1e9:.3f}..{max(stamps) / 1e9:.3f} s"


# ---------------------------------------------------------------------------------------------
# Report


def latency_summary(latencies: Sequence[float]) -> dict:
    if not latencies:
        return {"n": 0, "p50_s": None, "p90_s": None, "max_s": None, "mean_s": None}
    a = np.asarray(latencies, dtype=np.float64)
    return {"n": int(a.size), "p50_s": float(np.percentile(a, 50)), "p90_s": float(np.percentile(a, 90)),
            "max_s": float(a.max()), "mean_s": float(a.mean())}


def write_report(out_dir: str | Path, metrics: dict, latencies: Sequence[float], counts: Counts | Mapping, *,
                 per_frame: Sequence[Mapping] | None = None, wall_s: float | None = None,
                 info: Mapping[str, Any] | None = None, gt: GroundTruth | None = None,
                 example_ids: Sequence[str] = (), example_images: Mapping[str, np.ndarray] | None = None) -> dict:
    """Write ``report.md``, ``metrics.json``, plots/ (per-class PQ, latency histogram, PQ over
    the sequence) and examples/ (image | ground truth | prediction) into ``out_dir``.

    ``metrics``: what ``score_frames`` returns. ``latencies``: seconds, one per frame that came
    back. ``counts``: a ``Counts`` (or its dict). ``per_frame``: rows {stamp_ns, image_id,
    status, latency_s, pq} in the order sent. ``example_images``: image_id -> BGR frame; without
    one, the example reads ``leftImg8bit`` from ``gt``. Returns the metrics document written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = dict(asdict(counts) if isinstance(counts, Counts) else counts)
    received = counts.get("received", 0)
    throughput = received / wall_s if wall_s and wall_s > 0 else None
    doc = {
        "info": dict(info or {}),
        "counts": counts,
        "panoptic": metrics["panoptic"],
        "panoptic_with_drops": metrics.get("panoptic_with_drops"),
        "semantic": metrics["semantic"],
        "latency": latency_summary(latencies),
        "wall_s": wall_s,
        "throughput_fps": throughput,
        "scored_ids": metrics.get("scored_ids", []),
        "dropped_ids": metrics.get("dropped_ids", []),
        "per_frame": list(per_frame) if per_frame is not None else [
            {"image_id": i, "status": "scored", "pq": v} for i, v in metrics.get("per_frame_pq", {}).items()],
    }
    plots = _plots(out_dir, doc, latencies)
    doc["files"] = {"report": str(out_dir / REPORT), "metrics": str(out_dir / METRICS),
                    "predictions": metrics.get("predictions"), "plots": plots["plots"],
                    "examples": _examples(out_dir, gt, metrics, example_ids, example_images or {})}
    pq.write_json(doc, str(out_dir / METRICS))
    (out_dir / REPORT).write_text(_markdown(doc), encoding="utf-8")
    return doc


def pct(v: float | None) -> str:
    """A fraction as percent with one decimal; '-' for None or NaN."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{1000 * v:.1f}"


def _markdown(doc: dict) -> str:
    info, c, pan = doc["info"], doc["counts"], doc["panoptic"]
    lines = ["# Replay evaluation", ""]
    for key in ("mode", "bag", "topic", "model", "gt", "split", "postprocess"):
        if info.get(key):
            lines.append(f"- {key}: `{info[key]}`")
    for note in info.get("notes", []):
        lines.append(f"- note: {note}")
    lines += ["", "## Frames", "",
              "| sent | received | dropped | labelled | scored | labelled, dropped | unlabelled | labels not in bag |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|",
              f"| {c.get('sent', 0)} | {c.get('received', 0)} | {c.get('dropped', 0)} | {c.get('labelled', 0)} | "
              f"{c.get('scored', 0)} | {c.get('dropped_labelled', 0)} | {c.get('unlabelled', 0)} | "
              f"{c.get('labels_not_sent', 0)} |", ""]
    lines.append(f"Scores are over the **{c.get('scored', 0)} scored ground-truth frames**; "
                 f"**{c.get('dropped_labelled', 0)} labelled frames were dropped** (no result came back).")
    if doc.get("panoptic_with_drops"):
        w = doc["panoptic_with_drops"]["All"]
        lines.append(f"Counting each dropped frame as an empty prediction (all its segments missed): "
                     f"PQ {pct(w['pq'])}, SQ {pct(w['sq'])}, RQ {pct(w['rq'])}.")
    if c.get("unexpected"):
        lines.append(f"{c['unexpected']} results had stamps that were never sent and were ignored.")
    lines += ["", "## Panoptic quality (percent)", "", "| | PQ | SQ | RQ | classes |", "|---|---:|---:|---:|---:|"]
    for name, _ in pq.GROUPS:
        r = pan[name]
        lines.append(f"| {name} | {pct(r['pq'])} | {pct(r['sq'])} | {pct(r['rq'])} | {r['n']} |")
    lines += ["", "### Per class", "", "| class | kind | PQ | SQ | RQ | TP | FP | FN |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in pan["per_class"].items():
        seen = r["tp"] + r["fp"] + r["fn"] > 0
        lines.append(f"| {name} | {'thing' if r['isthing'] else 'stuff'} | "
                     f"{pct(r['pq']) if seen else '-'} | {pct(r['sq']) if seen else '-'} | "
                     f"{pct(r['rq']) if seen else '-'} | {r['tp']} | {r['fp']} | {r['fn']} |")
    sem = doc["semantic"]
    lines += ["", "## Semantic IoU (percent)", "",
              f"mIoU **{pct(sem['averageScoreClasses'])}** over {sem['numImages']} images "
              "(classes of the panoptic segments; void scored as unlabeled).", "",
              "| class | IoU |", "|---|---:|"]
    lines += [f"| {name} | {pct(v)} |" for name, v in sem["classScores"].items()]
    lat = doc["latency"]
    fps = "-" if doc["throughput_fps"] is None else f"{doc['throughput_fps']:.2f}"
    wall = "-" if doc["wall_s"] is None else f"{doc['wall_s']:.1f}"
    lines += ["", "## Latency and throughput", "",
              "| frames timed | p50 ms | p90 ms | max ms | mean ms | throughput frames/s | wall s |",
              "|---:|---:|---:|---:|---:|---:|---:|",
              f"| {lat['n']} | {_ms(lat['p50_s'])} | {_ms(lat['p90_s'])} | {_ms(lat['max_s'])} | "
              f"{_ms(lat['mean_s'])} | {fps} | {wall} |"]
    if info.get("mode") == "offline":
        lines.append("\nOffline latency is the model call per frame (preprocess, network, post-processing, "
                     "resize); throughput also counts reading and decoding the bag.")
    files = doc["files"]
    lines += ["", "## Plots", ""]
    for path in files["plots"]:
        rel = Path(path).relative_to(Path(files["report"]).parent)
        lines.append(f"![{rel.stem}]({rel.as_posix()})")
    if files["examples"]:
        lines += ["", "## Examples (image | ground truth | prediction)", ""]
        for path in files["examples"]:
            rel = Path(path).relative_to(Path(files["report"]).parent)
            lines.append(f"![{rel.stem}]({rel.as_posix()})")
    lines += ["", "## Files", "", f"- `{METRICS}`: everything above, and per-frame status, PQ and latency",
              f"- `{PREDICTIONS_DIR}/`: the scored predictions in the Cityscapes panoptic format "
              "(`pisr-ros evaluate` reads them)", ""]
    return "\n".join(lines)


def _plots(out_dir: Path, doc: dict, latencies: Sequence[float]) -> dict:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    plots_dir = out_dir / PLOTS_DIR
    plots_dir.mkdir(exist_ok=True)
    paths = []

    per_class = doc["panoptic"]["per_class"]
    names = list(per_class)
    values = [100 * per_class[n]["pq"] if per_class[n]["tp"] + per_class[n]["fp"] + per_class[n]["fn"] else 0.0
              for n in names]
    colors = [LABEL_COLORS[per_class[n]["label_id"]] / 255.0 for n in names]
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    ax.bar(range(len(names)), values, color=colors, edgecolor="black", linewidth=0.5)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_ylabel("PQ (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"PQ per class (All {pct(doc['panoptic']['All']['pq'])}, over {doc['counts'].get('scored', 0)} frames)")
    fig.tight_layout()
    paths.append(_save(fig, plots_dir / "per_class_pq.png"))

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    if latencies:
        ms = 1000 * np.asarray(latencies, dtype=np.float64)
        ax.hist(ms, bins=min(50, max(5, len(ms) // 2)), color="tab:blue")
        lat = doc["latency"]
        for key, style in (("p50_s", "--"), ("p90_s", ":")):
            ax.axvline(1000 * lat[key], color="black", linestyle=style, label=f"{key[:3]} {1000 * lat[key]:.1f} ms")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no latencies recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("frames")
    ax.set_title("Latency per frame")
    fig.tight_layout()
    paths.append(_save(fig, plots_dir / "latency_hist.png"))

    rows = doc["per_frame"]
    fig = Figure(figsize=(10, 3.5))
    ax = fig.subplots()
    xs = [i for i, r in enumerate(rows) if r.get("status") == "scored" and r.get("pq") is not None]
    ax.plot(xs, [100 * rows[i]["pq"] for i in xs], marker="o", markersize=3, linewidth=1, label="PQ of the frame")
    dropped = [i for i, r in enumerate(rows) if r.get("status") == "dropped"]
    if dropped:
        ax.scatter(dropped, [0] * len(dropped), marker="x", color="red", label=f"dropped ({len(dropped)})", zorder=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("frame (order sent)")
    ax.set_ylabel("PQ (%)")
    ax.set_ylim(-3, 100)
    ax.set_title("PQ over the sequence")
    ax.legend(loc="upper right")
    fig.tight_layout()
    paths.append(_save(fig, plots_dir / "pq_over_sequence.png"))
    return {"plots": paths}


def _save(fig, path: Path) -> str:
    # Figure without pyplot: no global state or GUI backend, safe beside a ROS executor's threads.
    fig.savefig(path, dpi=100)
    return str(path)


def colorize_panoptic(ids: np.ndarray, segments: Iterable[Mapping]) -> np.ndarray:
    """RGB picture of a panoptic PNG's ids: each segment in its class colour (labelId colours),
    segment borders in white, void black."""
    cat_of = {int(s["id"]): int(s["category_id"]) for s in segments}
    keys = np.array(sorted(cat_of), dtype=np.int64)
    colors = np.zeros((len(keys) + 1, 3), np.uint8)
    for i, k in enumerate(keys.tolist()):
        colors[i] = LABEL_COLORS[cat_of[k]]
    if len(keys):
        pos = np.searchsorted(keys, ids)
        pos = np.minimum(pos, len(keys) - 1)
        index = np.where(keys[pos] == ids, pos, len(keys))
    else:
        index = np.zeros(ids.shape, np.int64)
    rgb = colors[index]
    edge = np.zeros(ids.shape, bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= ids[1:, :] != ids[:-1, :]
    rgb[edge & (ids != 0)] = 255
    return rgb


def _examples(out_dir: Path, gt: GroundTruth | None, metrics: dict, example_ids: Sequence[str],
              images: Mapping[str, np.ndarray]) -> list[str]:
    if gt is None or not example_ids or not metrics.get("predictions"):
        return []
    from matplotlib.figure import Figure

    pred_dir = Path(metrics["predictions"])
    pred_doc = json.loads((pred_dir / PANOPTIC_JSON).read_text())
    pred_segments = {a["image_id"]: a["segments_info"] for a in pred_doc["annotations"]}
    ex_dir = out_dir / EXAMPLES_DIR
    if ex_dir.is_dir():
        shutil.rmtree(ex_dir)
    ex_dir.mkdir()
    paths = []
    per_frame = metrics.get("per_frame_pq", {})
    for image_id in example_ids:
        bgr = images.get(image_id)
        if bgr is None and gt.left_img(image_id).is_file():
            bgr = cv2.imread(str(gt.left_img(image_id)), cv2.IMREAD_COLOR)
        ann = gt.annotations[image_id]
        gt_ids = pq.read_panoptic_png(str(gt.folder / ann["file_name"])).astype(np.int64)
        pred_ids = pq.read_panoptic_png(str(pred_dir / PANOPTIC_DIR / (image_id + PANOPTIC_SUFFIX))).astype(np.int64)
        panels = [("ground truth", colorize_panoptic(gt_ids, ann.get("segments_info", []))),
                  (f"prediction (PQ {pct(per_frame.get(image_id))})", colorize_panoptic(pred_ids, pred_segments[image_id]))]
        if bgr is not None:
            panels.insert(0, ("image", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        h, w = panels[-1][1].shape[:2]
        scale = min(1.0, 640 / w)
        fig = Figure(figsize=(len(panels) * 6.4, 6.4 * h / w + 0.6))
        axes = fig.subplots(1, len(panels))
        for ax, (title, img) in zip(np.atleast_1d(axes), panels):
            if scale < 1:
                img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                                 interpolation=cv2.INTER_AREA if title == "image" else cv2.INTER_NEAREST)
            ax.imshow(img)
            ax.set_title(title)
            ax.axis("off")
        fig.suptitle(image_id)
        fig.tight_layout()
        paths.append(_save(fig, ex_dir / f"{image_id}.png"))
    return paths
