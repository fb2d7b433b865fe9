"""Panoptic quality (PQ, SQ, RQ), computed exactly as cityscapesscripts' ``evaluatePanoptic``.

The reference (``cityscapesscripts.evaluation.evalPanopticSemanticLabeling``) sorts every pixel
of every image twice with ``np.unique``; here each image costs one lookup table and one
``np.bincount`` over compact segment indices, and images are spread over a process pool. The
matching rules are the reference's, including its quirks, so the numbers agree to 1e-9:

- ground-truth areas come from the JSON ``area`` field, prediction areas from the PNG;
- a pair matches when IoU > 0.5, with the prediction's overlap with void (id 0) removed from the
  union;
- crowd ground truth (``iscrowd == 1``) never matches and is never a false negative; when a
  category has several crowd segments in one image, only the last one in ``segments_info`` is
  used for the "more than half void or crowd" false-positive rule;
- an unmatched prediction is a false positive unless more than half of it (strictly) lies on
  void or on that crowd segment;
- only the gt JSON's ``categories`` are averaged; a category with no TP, FP or FN scores 0 and is
  not counted in ``n``.

Where the reference divides by zero (a group such as Things with no category to count), this
module reports NaN (``null`` in JSON) instead of raising.
"""
from __future__ import annotations

import functools
import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from pisr_ros.errors import UsageError
from pisr_ros.evaluation import panoptic_png

#: PNG id of void in the COCO/Cityscapes panoptic format.
VOID = 0
#: Largest id an RGB PNG can hold.
MAX_PNG_ID = 256**3 - 1
#: The reference's result groups: name -> isthing filter.
GROUPS: tuple[tuple[str, bool | None], ...] = (("All", None), ("Things", True), ("Stuff", False))


@dataclass
class CategoryStats:
    """What the reference's ``PQStatCat`` holds: summed IoU of matches and TP/FP/FN counts."""

    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __iadd__(self, other: "CategoryStats") -> "CategoryStats":
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self


@dataclass(frozen=True)
class ImagePair:
    """One ground-truth annotation and the prediction for the same ``image_id``."""

    image_id: Any
    gt_png: str
    pred_png: str
    gt_segments: tuple[dict, ...]
    pred_segments: tuple[dict, ...]


# ---------------------------------------------------------------------------------------------
# Reading


class Scratch:
    """Large arrays reused from one image to the next within a process.

    A fresh multi-megabyte array per image costs page faults, i.e. kernel time of the same order
    as the arithmetic it holds; reusing a few buffers keeps that out of the per-image cost.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        arr = self._arrays.get(name)
        if arr is None or arr.shape != shape or arr.dtype != dtype:
            arr = self._arrays[name] = np.empty(shape, dtype)
        return arr


class _ThreadScratch(threading.local):
    """One :class:`Scratch` per thread (and so per pool process)."""

    def __init__(self) -> None:
        self.scratch = Scratch()


_THREAD = _ThreadScratch()


def read_panoptic_png(path: str, scratch: Scratch | None = None, slot: str = "png") -> np.ndarray:
    """Segment ids (HxW uint32, R + 256 G + 256^2 B) of a panoptic PNG; alpha is ignored.

    With ``scratch``, the result lives in its buffer ``slot`` and is overwritten by the next read
    into the same slot.
    """
    import cv2  # here: the compiled path does not need it, and importing it costs start-up time

    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        if not os.path.isfile(path):
            raise UsageError(f"{path}: no such file")
        raise UsageError(f"{path}: cannot be decoded as an image")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (3, 4):
        raise UsageError(
            f"{path}: not an 8-bit RGB panoptic PNG (got shape {img.shape}, {img.dtype})"
        )
    code = cv2.COLOR_BGR2RGBA if img.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
    dst = scratch.array(slot, img.shape[:2] + (4,), np.uint8) if scratch is not None else None
    rgba = cv2.cvtColor(img, code, dst=dst)
    # Little-endian RGBA bytes read as one uint32 are R + G<<8 + B<<16 + A<<24; drop A.
    ids = rgba.view(np.dtype("<u4")).reshape(rgba.shape[:2])
    ids &= np.uint32(MAX_PNG_ID)
    return ids


def load_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file ({what})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read {what}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: {what} must be a JSON object")
    return data


def categories_of(gt_json: dict, gt_json_path: str) -> dict[int, dict]:
    """The gt JSON's categories by id, in file order (the order the reference averages in)."""
    cats = gt_json.get("categories")
    if not isinstance(cats, list):
        raise UsageError(f"{gt_json_path}: no 'categories' list")
    out: dict[int, dict] = {}
    for cat in cats:
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or "isthing" not in cat:
            raise UsageError(f"{gt_json_path}: every category needs an integer 'id' and 'isthing': {cat!r}")
        out[cat["id"]] = cat
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_segments(segments: Any, where: str, is_gt: bool) -> tuple[dict, ...]:
    if not isinstance(segments, list):
        raise UsageError(f"{where}: 'segments_info' must be a list")
    fields = ("id", "category_id", "area", "iscrowd") if is_gt else ("id", "category_id")
    for seg in segments:
        if not isinstance(seg, dict) or any(k not in seg for k in fields):
            raise UsageError(f"{where}: every segment needs {', '.join(fields)}; got {seg!r}")
        if not _is_int(seg["id"]) or not 0 <= seg["id"] <= MAX_PNG_ID:
            raise UsageError(f"{where}: segment id {seg['id']!r} is not an RGB PNG id (0..{MAX_PNG_ID})")
        if not _is_int(seg["category_id"]):
            raise UsageError(f"{where}: segment {seg['id']} has non-integer category_id {seg['category_id']!r}")
        if is_gt and (isinstance(seg["area"], bool) or not isinstance(seg["area"], (int, float))):
            raise UsageError(f"{where}: segment {seg['id']} has non-numeric area {seg['area']!r}")
    return tuple(segments)


def pair_images(
    gt_json: dict, gt_json_path: str, gt_folder: str, pred_json: dict, pred_json_path: str, pred_folder: str
) -> list[ImagePair]:
    """Match predictions to ground truth by ``image_id`` (the last prediction wins on duplicates,
    as in the reference), in the order of the gt JSON's annotations."""
    for folder, what in ((gt_folder, "ground-truth"), (pred_folder, "prediction")):
        if not os.path.isdir(folder):
            raise UsageError(f"{folder}: no such directory ({what} PNG folder)")
    for data, path in ((gt_json, gt_json_path), (pred_json, pred_json_path)):
        if not isinstance(data.get("annotations"), list):
            raise UsageError(f"{path}: no 'annotations' list")
    preds: dict[Any, dict] = {}
    for ann in pred_json["annotations"]:
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise UsageError(f"{pred_json_path}: an annotation has no 'image_id'")
        preds[_hashable(ann["image_id"])] = ann
    pairs = []
    for gt_ann in gt_json["annotations"]:
        if not isinstance(gt_ann, dict) or "image_id" not in gt_ann or "file_name" not in gt_ann:
            raise UsageError(f"{gt_json_path}: an annotation lacks 'image_id' or 'file_name'")
        image_id = gt_ann["image_id"]
        pred_ann = preds.get(_hashable(image_id))
        if pred_ann is None:
            raise UsageError(f"{pred_json_path}: no prediction for image_id {image_id!r}")
        if "file_name" not in pred_ann:
            raise UsageError(f"{pred_json_path}: the annotation of image_id {image_id!r} has no 'file_name'")
        pairs.append(
            ImagePair(
                image_id=image_id,
                gt_png=os.path.join(gt_folder, gt_ann["file_name"]),
                pred_png=os.path.join(pred_folder, pred_ann["file_name"]),
                gt_segments=_check_segments(
                    gt_ann.get("segments_info"), f"{gt_json_path} (image_id {image_id!r})", is_gt=True
                ),
                pred_segments=_check_segments(
                    pred_ann.get("segments_info"), f"{pred_json_path} (image_id {image_id!r})", is_gt=False
                ),
            )
        )
    return pairs


def _hashable(value: Any) -> Any:
    # JSON lists are not hashable; the reference would crash on them, we just compare them.
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


# ---------------------------------------------------------------------------------------------
# One image


#: Above this largest id, a binary search replaces the lookup table (which would be too big).
_MAX_LUT_SIZE = 1 << 22


def _index_of(ids: np.ndarray, keys: np.ndarray, scale: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """``scale * position in keys`` of every pixel's id (keys sorted, unique, in PNG range), and
    ``scale * len(keys)`` for any other id. This replaces the reference's sort of the image.
    """
    if keys[-1] < _MAX_LUT_SIZE:
        # mode="clip" sends ids above the largest key to the table's last entry, "other", so the
        # table spans only the JSON's ids and the image's maximum is never needed.
        lut = np.full(int(keys[-1]) + 2, scale * len(keys), dtype=np.int64)
        lut[keys] = scale * np.arange(len(keys), dtype=np.int64)
        return lut.take(ids, mode="clip", out=out)
    pos = np.searchsorted(keys, ids)
    np.minimum(pos, len(keys) - 1, out=pos)
    pos[keys[pos] != ids] = len(keys)
    pos *= scale
    return pos


def _segment_table(segments: Sequence[dict]) -> dict[int, dict]:
    # A dict keeps the reference's semantics for duplicate ids: last one wins, first position.
    return {seg["id"]: seg for seg in segments}


def _refuse_unlisted_ids(pair: ImagePair, pred: np.ndarray, pi: np.ndarray, n_keys: int) -> None:
    unknown = np.unique(pred[pi == n_keys])
    listed = ", ".join(str(int(v)) for v in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    raise UsageError(
        f"{pair.pred_png}: segment id(s) {listed} are in the PNG but not in the prediction "
        f"JSON's segments_info (image_id {pair.image_id!r})"
    )


def _check_prediction(
    pair: ImagePair, pred_keys: np.ndarray, pred_area: np.ndarray, pred_segms: dict[int, dict],
    categories: frozenset,
) -> None:
    index = {k: i for i, k in enumerate(pred_keys.tolist())}
    missing = [sid for sid in pred_segms if pred_area[index[sid]] == 0]
    if missing:
        raise UsageError(
            f"{pair.pred_png}: segment id(s) {missing[:5]} are in the prediction JSON but not in "
            f"the PNG (image_id {pair.image_id!r})"
        )
    for sid, seg in pred_segms.items():
        if seg["category_id"] not in categories:
            raise UsageError(
                f"{pair.pred_png}: segment {sid} has category_id {seg['category_id']}, which is not "
                f"in the ground truth's categories (image_id {pair.image_id!r})"
            )


def image_stats(pair: ImagePair, categories: frozenset) -> dict[int, CategoryStats]:
    """Per-category TP/FP/FN and summed IoU of one image, by the reference's rules."""
    gt_segms = _segment_table(pair.gt_segments)
    pred_segms = _segment_table(pair.pred_segments)
    # Sorted keys make row-major order over the pair matrix the reference's (gt id, pred id) order.
    gt_keys = np.array(sorted(set(gt_segms) | {VOID}), dtype=np.int64)
    pred_keys = np.array(sorted(set(pred_segms) | {VOID}), dtype=np.int64)
    inter = _pair_matrix_compiled(pair, gt_keys, pred_keys)
    if inter is None or inter[:, -1].any():  # the numpy pass also names ids the JSON lacks
        inter = _pair_matrix_numpy(pair, gt_keys, pred_keys)
    pred_area = inter.sum(axis=0)
    _check_prediction(pair, pred_keys, pred_area, pred_segms, categories)
    return _score_image(inter, pred_area, gt_keys, pred_keys, gt_segms, pred_segms)


def _pair_matrix_compiled(pair: ImagePair, gt_keys: np.ndarray, pred_keys: np.ndarray) -> np.ndarray | None:
    """The pair matrix from :mod:`panoptic_png`'s kernel; None where it does not apply (no llvmlite,
    ids too large for a lookup table, a PNG that is not plain 8-bit RGB(A))."""
    if not panoptic_png.available() or max(gt_keys[-1], pred_keys[-1]) >= _MAX_LUT_SIZE:
        return None
    gt = panoptic_png.read_pixels(pair.gt_png)
    pred = panoptic_png.read_pixels(pair.pred_png) if gt is not None else None
    if pred is None:
        return None
    if (gt.height, gt.width) != (pred.height, pred.width):
        raise UsageError(
            f"{pair.pred_png}: size {pred.width}x{pred.height} differs from the ground truth "
            f"{pair.gt_png} ({gt.width}x{gt.height})"
        )
    return panoptic_png.pair_histogram(
        gt, pred, panoptic_png.lookup_table(gt_keys), panoptic_png.lookup_table(pred_keys),
        len(gt_keys) + 1, len(pred_keys) + 1,
    )


def _pair_matrix_numpy(pair: ImagePair, gt_keys: np.ndarray, pred_keys: np.ndarray) -> np.ndarray:
    """The pair matrix with OpenCV decoding and numpy; raises for ids the prediction JSON lacks."""
    scratch = _THREAD.scratch
    gt = read_panoptic_png(pair.gt_png, scratch, "gt")
    pred = read_panoptic_png(pair.pred_png, scratch, "pred")
    if gt.shape != pred.shape:
        raise UsageError(
            f"{pair.pred_png}: size {pred.shape[1]}x{pred.shape[0]} differs from the ground truth "
            f"{pair.gt_png} ({gt.shape[1]}x{gt.shape[0]})"
        )
    n_pred = len(pred_keys) + 1  # + the "any other id" bucket
    # One int64 pair index per pixel, gt-major, then one histogram: the pair matrix.
    key = _index_of(gt, gt_keys, n_pred, out=scratch.array("key", gt.shape, np.int64))
    pi = _index_of(pred, pred_keys, out=scratch.array("pred_index", gt.shape, np.int64))
    key += pi
    inter = np.bincount(key.ravel(), minlength=(len(gt_keys) + 1) * n_pred).reshape(-1, n_pred)
    if inter[:, -1].any():
        _refuse_unlisted_ids(pair, pred, pi, len(pred_keys))
    return inter


def _score_image(
    inter: np.ndarray, pred_area: np.ndarray, gt_keys: np.ndarray, pred_keys: np.ndarray,
    gt_segms: dict[int, dict], pred_segms: dict[int, dict],
) -> dict[int, CategoryStats]:
    gt_list, pred_list = gt_keys.tolist(), pred_keys.tolist()
    inter = inter[: len(gt_list), : len(pred_list)]
    pred_area = pred_area[: len(pred_list)]
    gt_row = {k: i for i, k in enumerate(gt_list)}
    pred_col = {k: j for j, k in enumerate(pred_list)}

    g_seg = np.array([k in gt_segms for k in gt_list])
    g_cat = np.array([gt_segms[k]["category_id"] if k in gt_segms else 0 for k in gt_list], dtype=np.int64)
    g_crowd = np.array([k in gt_segms and gt_segms[k]["iscrowd"] == 1 for k in gt_list])
    g_area = np.array([gt_segms[k]["area"] if k in gt_segms else 0 for k in gt_list], dtype=np.float64)
    p_seg = np.array([k in pred_segms for k in pred_list])
    p_cat = np.array([pred_segms[k]["category_id"] if k in pred_segms else 0 for k in pred_list], dtype=np.int64)
    void_inter = inter[gt_row[VOID]]

    candidate = (
        (inter > 0)
        & (g_seg & ~g_crowd)[:, None]
        & p_seg[None, :]
        & (g_cat[:, None] == p_cat[None, :])
    )
    # Same operation order as the reference: pred area + gt area - intersection - void overlap.
    union = ((pred_area[None, :].astype(np.float64) + g_area[:, None]) - inter) - void_inter[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    matched = candidate & (iou > 0.5)

    stats: dict[int, CategoryStats] = {}

    def cat_stats(cat: int) -> CategoryStats:
        return stats.setdefault(cat, CategoryStats())

    gt_matched, pred_matched = set(), set()
    for r, c in zip(*np.nonzero(matched)):
        s = cat_stats(int(g_cat[r]))
        s.tp += 1
        s.iou += float(iou[r, c])
        gt_matched.add(gt_list[r])
        pred_matched.add(pred_list[c])

    crowd_of_cat: dict[int, int] = {}
    for gid, seg in gt_segms.items():
        if gid in gt_matched:
            continue
        if seg["iscrowd"] == 1:
            crowd_of_cat[seg["category_id"]] = gid
            continue
        cat_stats(seg["category_id"]).fn += 1

    for pid, seg in pred_segms.items():
        if pid in pred_matched:
            continue
        col = pred_col[pid]
        ignored = int(void_inter[col])
        crowd = crowd_of_cat.get(seg["category_id"])
        if crowd is not None:
            ignored += int(inter[gt_row[crowd], col])
        if ignored / int(pred_area[col]) > 0.5:
            continue
        cat_stats(seg["category_id"]).fp += 1
    return stats


# ---------------------------------------------------------------------------------------------
# Many images


def map_images(func: Callable, items: Sequence, workers: int | None, threads: bool = False) -> Iterable:
    """``func`` over ``items`` in order; in a pool when more than one worker helps: of threads
    when ``func`` spends its time outside the GIL (no process start-up, nothing pickled),
    else of processes."""
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    workers = min(workers, len(items))
    if workers <= 1:
        return map(func, items)
    if threads:
        return _thread_map(func, items, workers)
    return _pool_map(func, items, workers)


def _thread_map(func: Callable, items: Sequence, workers: int) -> Iterable:
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(func, items)


def _pool_map(func: Callable, items: Sequence, workers: int) -> Iterable:
    from pisr_ros.workers import process_pool  # imports OpenCV, which the threads do not need

    with process_pool(workers) as pool:
        yield from pool.imap(func, items, chunksize=max(1, len(items) // (8 * workers)))


def accumulate(per_image: Iterable[dict[int, CategoryStats]]) -> dict[int, CategoryStats]:
    total: dict[int, CategoryStats] = {}
    for stats in per_image:
        for cat, s in stats.items():
            acc = total.setdefault(cat, CategoryStats())
            acc += s
    return total


def pq_stats(pairs: Sequence[ImagePair], categories: dict[int, dict], workers: int | None = None) -> dict[int, CategoryStats]:
    """Per-category statistics over all image pairs."""
    func = functools.partial(image_stats, categories=frozenset(categories))
    # The compiled kernel and zlib-ng's inflate release the GIL: threads then do.
    return accumulate(map_images(func, pairs, workers, threads=panoptic_png.available()))


def pq_average(
    stats: dict[int, CategoryStats], categories: dict[int, dict], isthing: bool | None
) -> tuple[dict, dict]:
    """The reference's ``PQStat.pq_average``: mean PQ/SQ/RQ over categories with any TP/FP/FN."""
    pq = sq = rq = 0.0
    n = 0
    per_class: dict[int, dict] = {}
    for label, info in categories.items():
        if isthing is not None and (info["isthing"] == 1) != isthing:
            continue
        s = stats.get(label, CategoryStats())
        if s.tp + s.fp + s.fn == 0:
            per_class[label] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
            continue
        n += 1
        pq_class = s.iou / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
        sq_class = s.iou / s.tp if s.tp != 0 else 0.0
        rq_class = s.tp / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
        per_class[label] = {"pq": pq_class, "sq": sq_class, "rq": rq_class}
        pq += pq_class
        sq += sq_class
        rq += rq_class
    if n == 0:  # the reference raises ZeroDivisionError here
        return {"pq": math.nan, "sq": math.nan, "rq": math.nan, "n": 0}, per_class
    return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_class


def average_pq(stats: dict[int, CategoryStats], categories: dict[int, dict]) -> dict:
    """Results with the reference's keys: All/Things/Stuff {pq, sq, rq, n} and per_class."""
    results: dict = {}
    for name, isthing in GROUPS:
        results[name], per_class = pq_average(stats, categories, isthing)
        if name == "All":
            results["per_class"] = per_class
    return results


@dataclass
class PanopticEvaluation:
    results: dict  # the reference's results dict
    stats: dict[int, CategoryStats]
    categories: dict[int, dict]
    num_images: int


def evaluate(
    gt_json_file: str, gt_folder: str, pred_json_file: str, pred_folder: str, workers: int | None = None
) -> PanopticEvaluation:
    panoptic_png.compile_in_background()  # while the JSON files are read
    gt_json = load_json(gt_json_file, "ground-truth panoptic JSON")
    pred_json = load_json(pred_json_file, "prediction panoptic JSON")
    categories = categories_of(gt_json, gt_json_file)
    pairs = pair_images(gt_json, gt_json_file, gt_folder, pred_json, pred_json_file, pred_folder)
    stats = pq_stats(pairs, categories, workers)
    return PanopticEvaluation(average_pq(stats, categories), stats, categories, len(pairs))


def evaluate_panoptic(
    gt_json_file: str, gt_folder: str, pred_json_file: str, pred_folder: str,
    results_file: str | None = None, workers: int | None = None,
) -> dict:
    """Drop-in for the reference's ``evaluatePanoptic`` (same arguments, same result dict),
    without its printing; ``results_file`` is optional."""
    results = evaluate(gt_json_file, gt_folder, pred_json_file, pred_folder, workers).results
    if results_file:
        write_json(results, results_file)
    return results


# ---------------------------------------------------------------------------------------------
# Output


def json_safe(value: Any) -> Any:
    """``value`` with NaN replaced by None, so the file is strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_json(results: dict, path: str) -> None:
    """Write as the reference does (sorted keys, indent 4), NaN as null."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(json_safe(results), f, sort_keys=True, indent=4)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write results: {exc.strerror}") from None


def _pct(value: float) -> str:
    return "    -" if math.isnan(value) else f"{100 * value:5.1f}"


def format_table(ev: PanopticEvaluation) -> str:
    """Per-class and summary table, in percent like the reference's printout, plus counts."""
    lines = [f"{'Category':14s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s} | {'TP':>6s} {'FP':>6s} {'FN':>6s}"]
    per_class = ev.results["per_class"]
    for label in sorted(per_class):
        r = per_class[label]
        s = ev.stats.get(label, CategoryStats())
        name = str(ev.categories[label].get("name", label))[:14]
        lines.append(
            f"{name:14s}| {_pct(r['pq'])}  {_pct(r['sq'])}  {_pct(r['rq'])} | {s.tp:6d} {s.fp:6d} {s.fn:6d}"
        )
    lines.append("-" * 58)
    lines.append(f"{'':14s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s} | {'N':>6s}")
    for name, _ in GROUPS:
        r = ev.results[name]
        lines.append(f"{name:14s}| {_pct(r['pq'])}  {_pct(r['sq'])}  {_pct(r['rq'])} | {r['n']:6d}")
    return "\n".join(lines)
