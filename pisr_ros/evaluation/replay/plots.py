"""The replay report's pictures: per-class PQ, the latency histogram, PQ over the sequence, and
examples (image | ground truth | prediction). matplotlib's Figure without pyplot: no global
state or GUI backend, safe beside a ROS executor's threads."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from pisr_ros.evaluation import panoptic_quality as pq
from pisr_ros.evaluation.cityscapes_files import PANOPTIC_DIR, PANOPTIC_JSON, PANOPTIC_SUFFIX
from pisr_ros.evaluation.replay.ground_truth import GroundTruth
from pisr_ros.evaluation.replay.text import pct
from pisr_ros.taxonomy import LABEL_COLORS

PLOTS_DIR = "plots"
EXAMPLES_DIR = "examples"


def write_plots(out_dir: Path, doc: dict, latencies: Sequence[float]) -> dict:
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


def colorize_panoptic(ids: np.ndarray, segments: Iterable[Mapping], size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB picture of a panoptic PNG's ids: each segment in its class colour (labelId colours),
    segment borders in white, void black. ``size`` (H, W), smaller than the ids: the colours are
    area-averaged down to it and the borders drawn there, one pixel wide along the objects; a
    nearest-neighbour downscale of full-size borders samples them into a dotted lattice."""
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
    if size is not None and tuple(size) != ids.shape[:2]:
        rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        ids = cv2.resize(ids.astype(np.int32), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    edge = np.zeros(ids.shape, bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= ids[1:, :] != ids[:-1, :]
    rgb[edge & (ids != 0)] = 255
    return rgb


def write_examples(out_dir: Path, gt: GroundTruth | None, metrics: dict, example_ids: Sequence[str],
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
        h, w = pred_ids.shape
        scale = min(1.0, 640 / w)
        shown = (round(h * scale), round(w * scale))  # each panel at the size it is drawn
        panels = [("ground truth", colorize_panoptic(gt_ids, ann.get("segments_info", []), shown)),
                  (f"prediction (PQ {pct(per_frame.get(image_id))})",
                   colorize_panoptic(pred_ids, pred_segments[image_id], shown))]
        if bgr is not None:
            panels.insert(0, ("image", cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (shown[1], shown[0]),
                                                  interpolation=cv2.INTER_AREA)))
        fig = Figure(figsize=(len(panels) * 6.4, 6.4 * h / w + 0.6))
        axes = fig.subplots(1, len(panels))
        for ax, (title, img) in zip(np.atleast_1d(axes), panels):
            ax.imshow(img)
            ax.set_title(title)
            ax.axis("off")
        fig.suptitle(image_id)
        fig.tight_layout()
        paths.append(_save(fig, ex_dir / f"{image_id}.png"))
    return paths
