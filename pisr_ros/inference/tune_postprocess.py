"""Post-processing settings chosen on data, per model: a sweep of the family's settings on a
validation split, scored by PQ, and the winner stored in the model file.

    frames = load_frames(predictor, "data/synth_tune", "val")   # the network runs once per frame
    sweep = Sweep(predictor, frames)
    best = sweep.run(candidates(predictor), passes=2)            # coordinate descent
    store_settings("models/m.pt", "cpu", best.values)

Only the post-processing is re-run per setting (``Predictor.finish`` with another
``predictor.postprocess``), and PQ is computed in memory with the project's evaluator's own
matching (``pisr_ros.evaluation.panoptic_quality``; a test checks it equals ``pisr-ros
evaluate`` on written files), so a setting costs the grouping and one histogram per frame.

The search is coordinate descent from the model's current settings: each setting in turn takes
the candidate value that scores best with the others held, for ``passes`` rounds. The settings
interact (a higher threshold wants a smaller NMS window), which the second pass catches; a full
grid would cost hundreds of evaluations for little more.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pisr_ros import settings as settings_mod
from pisr_ros.errors import UsageError
from pisr_ros.evaluation import panoptic_quality as pq
from pisr_ros.evaluation.panoptic_quality import VOID
from pisr_ros.panoptic import LABEL_DIVISOR
from pisr_ros.taxonomy import TRAIN_TO_LABEL

#: Values tried per setting, of both families (each model tries those its family has); settings
#: without candidates keep their value.
CANDIDATES: dict[str, tuple] = {
    "center_threshold": (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5),
    "nms_kernel": (3, 5, 7, 9),
    "top_k": (50, 100, 200),
    "thing_area": (0, 256, 512, 1024, 2048),
    "score_threshold": (0.1, 0.2, 0.3, 0.4, 0.5),
    "nms_iou": (0.3, 0.4, 0.5, 0.6, 0.7),
    "mask_threshold": (0.3, 0.4, 0.5, 0.6),
    "stuff_area": (0, 1024, 2048, 4096),
}
OBJECTIVES = ("pq", "pq_things")


@dataclass
class Frame:
    """One val image: the network's output (``Predictor.run_network``) and its ground truth, as
    the evaluator's pair-matrix row index of every pixel (fixed across settings, made once)."""

    image_id: str
    heads: object  # NetworkOutput
    gt_index: np.ndarray  # HxW int64: position of the pixel's gt id in gt_keys (len(gt_keys): other)
    gt_keys: np.ndarray  # sorted gt segment ids and void (0)
    gt_segments: dict  # id -> segment of the gt JSON


@dataclass
class Trial:
    values: dict  # the settings tried
    results: dict  # All/Things/Stuff {pq, sq, rq, n} and per_class
    stats: dict  # category id -> CategoryStats

    def score(self, objective: str) -> float:
        v = self.results["Things" if objective == "pq_things" else "All"]["pq"]
        return -1.0 if math.isnan(v) else v


def load_frames(predictor, root: str | Path, split: str, frames: int | None = None,
                progress: Callable[[Iterable], Iterable] | None = None) -> tuple[list[Frame], dict]:
    """The network's output for the labelled images of ``split`` (the first ``frames`` of them,
    sorted by id) and the gt JSON's categories."""
    from pisr_ros import cityscapes_layout as layout
    from pisr_ros.image_files import read_rgb

    root = Path(root)
    gt_json_path = layout.panoptic_json(root, split)
    if not gt_json_path.is_file():
        raise UsageError(f"--data {root} --split {split}: no {gt_json_path}; `pisr-ros synth` writes it "
                         "(cityscapesscripts' csCreatePanopticImgs for real Cityscapes)")
    gt_json = pq.load_json(str(gt_json_path), "ground-truth panoptic JSON")
    categories = pq.categories_of(gt_json, str(gt_json_path))
    annotations = {a["image_id"]: a for a in gt_json.get("annotations", [])}
    ids = [i for i in layout.list_split(root, split) if i in annotations]
    if not ids:
        raise UsageError(f"--data {root} --split {split}: no image there has an annotation in {gt_json_path}")
    ids = ids[:frames] if frames else ids
    out = []
    for image_id in (progress(ids) if progress else ids):
        ann = annotations[image_id]
        image = read_rgb(layout.image_paths(root, split, image_id).left_img)
        gt_ids = pq.read_panoptic_png(str(layout.panoptic_dir(root, split) / ann["file_name"]))
        segments = {s["id"]: s for s in ann["segments_info"]}
        gt_keys = np.array(sorted(set(segments) | {VOID}), dtype=np.int64)
        out.append(Frame(image_id, predictor.run_network([image], "rgb"), pq._index_of(gt_ids, gt_keys),
                         gt_keys, segments))
    return out, categories


def frame_stats(frame: Frame, result) -> dict:
    """Per-category TP/FP/FN and summed IoU of one prediction (a ``PanopticResult`` at the
    ground truth's size), by the evaluator's rules, without writing or re-reading the prediction.

    The prediction's segments come from ``result.segments`` (made on the small map) in the ids
    ``to_cityscapes_panoptic`` writes: labelId*1000+k for things, labelId for stuff."""
    segs = sorted(((int(TRAIN_TO_LABEL[s.class_id]) * LABEL_DIVISOR + s.id % LABEL_DIVISOR if s.is_thing
                    else int(TRAIN_TO_LABEL[s.class_id]), s) for s in result.segments), key=lambda t: t[0])
    pred_keys = np.array([VOID] + [int(k) for k, _ in segs], dtype=np.int64)
    # Our ids (trainId*1000+k, -1 void) -> column of the pair matrix; void is column 0.
    lut = np.zeros(max([s.id for _, s in segs], default=0) + 2, np.int64)
    for col, (_, seg) in enumerate(segs, start=1):
        lut[seg.id + 1] = col
    n_pred = len(pred_keys) + 1
    key = frame.gt_index * n_pred
    key += lut.take(result.id_map + 1)
    inter = np.bincount(key.ravel(), minlength=(len(frame.gt_keys) + 1) * n_pred).reshape(-1, n_pred)
    pred_area = inter.sum(axis=0)
    # A segment of the small map that the resize dropped is not in the written file either.
    keep = np.flatnonzero(pred_area[:-1] > 0)
    keep = np.union1d(keep, [0])
    pred_keys = pred_keys[keep]
    inter = np.concatenate([inter[:, keep], inter[:, -1:]], axis=1)
    kept = set(pred_keys.tolist())
    pred_segments = {k: {"id": k, "category_id": int(TRAIN_TO_LABEL[s.class_id])} for k, s in segs if k in kept}
    return pq._score_image(inter, inter.sum(axis=0), frame.gt_keys, pred_keys, frame.gt_segments, pred_segments)


class Sweep:
    """Scores settings on loaded frames; every trial is kept (``trials``) and none is run twice."""

    def __init__(self, predictor, frames: list[Frame], categories: dict, objective: str = "pq"):
        if objective not in OBJECTIVES:
            raise UsageError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        self.predictor = predictor
        self.frames = frames
        self.categories = categories
        self.objective = objective
        self.cls = type(predictor.postprocess)
        self.start = settings_mod.values(predictor.postprocess)
        self.trials: dict[tuple, Trial] = {}

    def evaluate(self, values: Mapping) -> Trial:
        key = tuple(sorted(values.items()))
        if key in self.trials:
            return self.trials[key]
        saved = self.predictor.postprocess
        self.predictor.postprocess = dataclasses.replace(saved, **values)
        try:
            per_frame = []
            for f in self.frames:
                per_frame.append(frame_stats(f, self.predictor.finish(_copy(f.heads))[0]))
        finally:
            self.predictor.postprocess = saved
        stats = pq.accumulate(per_frame)
        trial = Trial(dict(values), pq.average_pq(stats, self.categories), stats)
        self.trials[key] = trial
        return trial

    def run(self, candidates: Mapping[str, tuple], passes: int = 2,
            on_trial: Callable[[Trial, bool], None] | None = None) -> Trial:
        """Coordinate descent from the predictor's settings; ``on_trial(trial, new)`` after each."""
        best_values = dict(self.start)
        best = self._tried(best_values, on_trial)
        for _ in range(passes):
            improved = False
            for name, options in candidates.items():
                for value in options:
                    if value == best_values[name]:
                        continue
                    trial = self._tried({**best_values, name: value}, on_trial)
                    if trial.score(self.objective) > best.score(self.objective) + 1e-12:
                        best, best_values, improved = trial, dict(trial.values), True
            if not improved:
                break
        return best

    def _tried(self, values: dict, on_trial) -> Trial:
        new = tuple(sorted(values.items())) not in self.trials
        trial = self.evaluate(values)
        if on_trial:
            on_trial(trial, new)
        return trial


def _copy(out):
    # finish() adds its timings to the NetworkOutput; each trial gets its own record.
    return dataclasses.replace(out, timings=dict(out.timings))


def candidates(settings_obj, given: Mapping[str, tuple] | None = None) -> dict[str, tuple]:
    """The values to try per setting: ``given`` (from the command line) or ``CANDIDATES``, for
    the settings the family has; values its settings refuse are left out."""
    table = {s.name: s for s in settings_mod.table(type(settings_obj))}
    out = {}
    for name, options in {**CANDIDATES, **(given or {})}.items():
        if name not in table:
            continue
        kept = tuple(v for v in options if table[name].problem(table[name].type(v)) is None)
        if kept:
            out[name] = tuple(table[name].type(v) for v in kept)
    return out


def store_settings(model: str | Path, device_type: str, values: Mapping) -> None:
    """Write ``values`` as the model's settings for ``device_type``: the checkpoint's top-level
    "postprocess" entry, or the ONNX file's "pisr_ros.postprocess" metadata; other device types'
    entries are kept. Written to a temporary file and renamed, so a crash leaves the old file."""
    from pisr_ros.inference.model_files import CHECKPOINT_POSTPROCESS, META_POSTPROCESS

    path = Path(model)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if path.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(path))
        props = {p.key: p for p in proto.metadata_props}
        stored = json.loads(props[META_POSTPROCESS].value) if META_POSTPROCESS in props else {}
        stored[device_type] = dict(values)
        text = json.dumps(stored, sort_keys=True)
        if META_POSTPROCESS in props:
            props[META_POSTPROCESS].value = text
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = META_POSTPROCESS, text
        onnx.save(proto, str(tmp))
    else:
        import torch

        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
        stored = dict(ckpt.get(CHECKPOINT_POSTPROCESS) or {})
        stored[device_type] = dict(values)
        ckpt[CHECKPOINT_POSTPROCESS] = stored
        torch.save(ckpt, str(tmp))
    os.replace(tmp, path)


def per_class_counts(trial: Trial, categories: dict) -> list[tuple[str, bool, float, int, int, int]]:
    """(name, is thing, PQ, TP, FP, FN) per category of the gt JSON, in its order."""
    rows = []
    for cat_id, cat in categories.items():
        s = trial.stats.get(cat_id, pq.CategoryStats())
        rows.append((cat["name"], cat["isthing"] == 1, trial.results["per_class"][cat_id]["pq"], s.tp, s.fp, s.fn))
    return rows
