"""Pairing a replay's results with the labels by header stamp: what was sent, received, dropped
and scored, then the scores and the report."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pisr_ros.errors import UsageError
from pisr_ros.evaluation.bags import FrameMap
from pisr_ros.evaluation.replay.ground_truth import GroundTruth
from pisr_ros.evaluation.replay.handoff import Counts, ReplayOutput
from pisr_ros.evaluation.replay.predictions import add_frame, open_predictions
from pisr_ros.evaluation.replay.report import write_report
from pisr_ros.evaluation.replay.scoring import pairs_of, score_written


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
    writer = open_predictions(out_dir)
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

    for stamp, res in pairs_of(replay.results):
        stamp = int(stamp)
        if stamp in results_seen:
            continue  # a duplicate delivery: the first one counts
        results_seen.add(stamp)
        latency_of[stamp] = res.latency_s
        image_id = frame_map.by_stamp.get(stamp)
        if image_id is not None and was_sent(stamp):
            if image_id not in gt.annotations:
                raise UsageError(f"image {image_id} (stamp {stamp} ns) has no label in {gt.json_path}")
            add_frame(writer, image_id, res.id_map)

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
