"""The replay report: report.md and metrics.json (with the plots and examples of
pisr_ros.evaluation.replay.plots) in the output folder."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pisr_ros.evaluation import panoptic_quality as pq
from pisr_ros.evaluation.replay.ground_truth import GroundTruth
from pisr_ros.evaluation.replay.handoff import Counts
from pisr_ros.evaluation.replay.plots import write_examples, write_plots
from pisr_ros.evaluation.replay.predictions import PREDICTIONS_DIR
from pisr_ros.evaluation.replay.text import ms, pct

REPORT = "report.md"
METRICS = "metrics.json"


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
    plots = write_plots(out_dir, doc, latencies)
    doc["files"] = {"report": str(out_dir / REPORT), "metrics": str(out_dir / METRICS),
                    "predictions": metrics.get("predictions"), "plots": plots["plots"],
                    "examples": write_examples(out_dir, gt, metrics, example_ids, example_images or {})}
    pq.write_json(doc, str(out_dir / METRICS))
    (out_dir / REPORT).write_text(_markdown(doc), encoding="utf-8")
    return doc


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
              f"| {lat['n']} | {ms(lat['p50_s'])} | {ms(lat['p90_s'])} | {ms(lat['max_s'])} | "
              f"{ms(lat['mean_s'])} | {fps} | {wall} |"]
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
