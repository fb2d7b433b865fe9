"""Benchmark: our panoptic evaluator against cityscapesscripts' ``evaluatePanoptic``.

    python -m pisr_ros.evaluation.bench_evaluator --num 100 --size 1024x2048 --repeats 3

Ground truth comes from ``pisr-ros synth`` (the Cityscapes layout, panoptic files written by
cityscapesscripts' converter); if that command is missing or fails, a simple built-in scene
generator writes the panoptic files instead, and the report says so. Predictions are derived from
the ground truth of the same images (segments dropped, merged, relabelled, moved and split,
boundaries eroded, spurious blobs added) so that there is a realistic mix of TP, FP and FN. Both
evaluators run on the same files with the same number of processes (the reference always uses
``multiprocessing.cpu_count()``); runs alternate and the median of each is reported.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

from pisr_ros.evaluation import panoptic_quality as pq
from pisr_ros.panoptic import LABEL_DIVISOR, encode, to_cityscapes_panoptic
from pisr_ros.taxonomy import STUFF_TRAIN_IDS, THING_TRAIN_IDS, by_name

SPLIT = "val"


# ---------------------------------------------------------------------------------------------
# Ground truth


def synth_ground_truth(root: Path, num: int, size: tuple[int, int], seed: int) -> str | None:
    """Run ``pisr-ros synth``; None (and why on stderr) if it is not available or fails."""
    cmd = [sys.executable, "-m", "pisr_ros.cli", "synth", "--out", str(root), "--split", SPLIT,
           "--num", str(num), "--size", f"{size[0]}x{size[1]}", "--seed", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    gt_json = root / "gtFine" / f"cityscapes_panoptic_{SPLIT}.json"
    if proc.returncode != 0 or not gt_json.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        print(f"pisr-ros synth unavailable (rc {proc.returncode}: {tail[0]}); using the built-in scenes",
              file=sys.stderr)
        return None
    return " ".join(["pisr-ros"] + cmd[3:])


def _simple_scene(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A crude street: stuff bands with ragged edges, boxes and ellipses for things, a void hood."""
    h, w = size
    rows = np.arange(h)[:, None]
    bands = [by_name(n).train_id for n in ("sky", "building", "vegetation", "sidewalk", "road")]
    edges = np.sort(rng.uniform(0.1, 0.9, len(bands) - 1)) * h
    wobble = np.cumsum(rng.normal(0, 2, (len(edges), w)), axis=1)
    band_of = (rows[None] > (edges[:, None, None] + wobble[:, None, :])).sum(0)
    ids = encode(np.asarray(bands)[band_of])
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(3, 12))):  # poles, signs, fences, ...
        cls = int(rng.choice(STUFF_TRAIN_IDS))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        ids[y : y + int(rng.integers(10, h // 4)), x : x + int(rng.integers(5, w // 8))] = encode(cls)
    k = {c: 0 for c in THING_TRAIN_IDS}
    for _ in range(int(rng.integers(5, 40))):
        cls = int(rng.choice(THING_TRAIN_IDS))
        k[cls] += 1
        cy, cx = rng.uniform(0.3 * h, h), rng.uniform(0, w)
        ry, rx = rng.uniform(5, h / 8), rng.uniform(5, w / 12)
        shape = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1 if rng.random() < 0.5 else (
            (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx))
        ids[shape] = encode(cls, k[cls])
    ids[int(h * rng.uniform(0.85, 0.95)) :] = -1  # ego vehicle: void
    return ids.astype(np.int32)


def builtin_ground_truth(root: Path, num: int, size: tuple[int, int], seed: int) -> None:
    folder = root / "gtFine" / f"cityscapes_panoptic_{SPLIT}"
    folder.mkdir(parents=True, exist_ok=True)
    categories = _cityscapes_categories()
    annotations = []
    for i in range(num):
        image_id = f"builtin_{i:06d}_000019"
        rgb, info = to_cityscapes_panoptic(_simple_scene(np.random.default_rng([seed, i]), size))
        cv2.imwrite(str(folder / f"{image_id}_gtFine_panoptic.png"), rgb[..., ::-1])
        annotations.append({"image_id": image_id, "file_name": f"{image_id}_gtFine_panoptic.png",
                            "segments_info": info})
    with open(root / "gtFine" / f"cityscapes_panoptic_{SPLIT}.json", "w") as f:
        json.dump({"annotations": annotations, "categories": categories, "images": []}, f)


def _cityscapes_categories() -> list[dict]:
    """The categories cityscapesscripts' converter writes, taken from a one-pixel conversion."""
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        city = Path(tmp, "gt", SPLIT, "c")
        city.mkdir(parents=True)
        Image.fromarray(np.full((1, 1), 7, np.uint16)).save(city / "c_000000_000000_gtFine_instanceIds.png")
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            convert2panoptic(str(Path(tmp, "gt")), tmp, setNames=[SPLIT])
        with open(Path(tmp, f"cityscapes_panoptic_{SPLIT}.json")) as f:
            return json.load(f)["categories"]


# ---------------------------------------------------------------------------------------------
# Predictions


def _perturb(job: tuple) -> dict:
    """Write a prediction PNG for one gt annotation; returns the prediction's annotation."""
    gt_png, ann, out_dir, seed, thing_cats = job
    rng = np.random.default_rng([seed, zlib.crc32(str(ann["image_id"]).encode())])
    gt = pq.read_panoptic_png(gt_png).astype(np.int64)
    segs = {s["id"]: s for s in ann["segments_info"]}
    cat_of: dict[int, int] = {}
    next_k: dict[int, int] = {}

    def new_id(cat: int) -> int:
        next_k[cat] = next_k.get(cat, 0) + 1
        if next_k[cat] >= LABEL_DIVISOR:
            raise RuntimeError(f"more than {LABEL_DIVISOR - 1} predicted segments of category {cat}")
        sid = cat * LABEL_DIVISOR + next_k[cat]
        cat_of[sid] = cat
        return sid

    # 1. Relabel whole segments through a lookup table: keep, drop to void, merge, relabel.
    lut = np.zeros(int(gt.max()) + 1, np.int64)
    last_of_cat: dict[int, int] = {}
    for sid, seg in segs.items():
        if sid >= len(lut):
            continue
        cat, op = seg["category_id"], rng.choice(["keep"] * 6 + ["drop", "merge", "relabel"])
        if op == "drop":
            continue
        if op == "merge" and cat in last_of_cat:
            lut[sid] = last_of_cat[cat]
            continue
        if op == "relabel" and seg["iscrowd"] == 0 and cat in thing_cats:
            cat = int(rng.choice(thing_cats))
        lut[sid] = new_id(cat)
        last_of_cat[cat] = int(lut[sid])
    pred = lut[gt]
    # 2. Move or split some things, working on their bounding boxes only.
    for sid, seg in segs.items():
        x, y, w, h = seg.get("bbox") or (0, 0, 0, 0)
        pid = int(lut[sid]) if sid < len(lut) else 0
        if pid == 0 or w * h == 0 or seg["category_id"] not in thing_cats:
            continue
        u = rng.random()
        if u < 0.3:
            _move(pred, pid, (y, x, h, w), rng)
        elif u < 0.4:
            crop = pred[y : y + h, x : x + w]
            crop[(crop == pid) & (np.arange(w)[None, :] >= w // 2)] = new_id(cat_of[pid])
    # 3. Ragged boundaries: pixels next to another segment become void.
    edge = np.zeros(pred.shape, bool)
    edge[:, 2:] |= pred[:, 2:] != pred[:, :-2]
    edge[2:] |= pred[2:] != pred[:-2]
    pred[edge & (rng.random(pred.shape) < 0.5)] = 0
    # 4. Spurious blobs.
    hh, ww = pred.shape
    for _ in range(int(rng.integers(0, 6))):
        cy, cx, r = int(rng.integers(0, hh)), int(rng.integers(0, ww)), int(rng.integers(3, 40))
        pred[max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r] = new_id(int(rng.choice(thing_cats)))
    values, counts = np.unique(pred, return_counts=True)
    info = [{"id": int(v), "category_id": cat_of[int(v)], "area": int(c), "iscrowd": 0}
            for v, c in zip(values, counts) if v != 0]
    name = f"{ann['image_id']}_pred.png"
    rgb = np.stack([pred % 256, pred // 256 % 256, pred // 65536], axis=-1).astype(np.uint8)
    cv2.imwrite(os.path.join(out_dir, name), rgb[..., ::-1])
    return {"image_id": ann["image_id"], "file_name": name, "segments_info": info}


def _move(pred: np.ndarray, pid: int, box: tuple[int, int, int, int], rng) -> None:
    """Shift segment ``pid`` by up to a quarter of its size; uncovered pixels become void."""
    y, x, h, w = box
    dy, dx = int(rng.integers(-h // 4 - 1, h // 4 + 2)), int(rng.integers(-w // 4 - 1, w // 4 + 2))
    ys, xs = np.nonzero(pred[y : y + h, x : x + w] == pid)
    pred[ys + y, xs + x] = 0
    ys, xs = ys + y + dy, xs + x + dx
    ok = (ys >= 0) & (ys < pred.shape[0]) & (xs >= 0) & (xs < pred.shape[1])
    pred[ys[ok], xs[ok]] = pid


def write_predictions(gt_json: Path, gt_folder: Path, out: Path, seed: int, workers: int) -> Path:
    with open(gt_json) as f:
        gt = json.load(f)
    thing_cats = [c["id"] for c in gt["categories"] if c["isthing"] == 1]
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(gt_folder / a["file_name"]), a, str(out), seed, thing_cats) for a in gt["annotations"]]
    with multiprocessing.Pool(workers) as pool:
        anns = pool.map(_perturb, jobs)
    pred_json = out.with_suffix(".json")
    with open(pred_json, "w") as f:
        json.dump({"annotations": anns}, f)
    return pred_json


# ---------------------------------------------------------------------------------------------
# Timing


def time_ours(paths: tuple[str, str, str, str], workers: int) -> tuple[float, dict]:
    t = time.perf_counter()
    results = pq.evaluate(*paths, workers=workers).results
    return time.perf_counter() - t, results


def time_reference(paths: tuple[str, str, str, str], results_file: str) -> tuple[float, dict]:
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        t = time.perf_counter()
        results = evaluatePanoptic(*paths, results_file)
        return time.perf_counter() - t, results


def cpu_per_image(paths: tuple[str, str, str, str]) -> tuple[float, float]:
    """CPU seconds per image of each evaluator's per-image work, in this one process.

    Wall-clock runs on a shared machine swing with other load; CPU time of the same work done
    serially barely does, so it is the steadier comparison.
    """
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import pq_compute_single_core

    gt_json_file, gt_folder, pred_json_file, pred_folder = paths
    gt_json = pq.load_json(gt_json_file, "gt")
    pred_json = pq.load_json(pred_json_file, "pred")
    categories = pq.categories_of(gt_json, gt_json_file)
    pairs = pq.pair_images(gt_json, gt_json_file, gt_folder, pred_json, pred_json_file, pred_folder)
    t = time.process_time()
    for pair in pairs:
        pq.image_stats(pair, frozenset(categories))
    ours = (time.process_time() - t) / len(pairs)
    preds = {a["image_id"]: a for a in pred_json["annotations"]}
    matched = [(a, preds[a["image_id"]]) for a in gt_json["annotations"]]
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        t = time.process_time()
        pq_compute_single_core(0, matched, gt_folder, pred_folder, categories)
        ref = (time.process_time() - t) / len(matched)
    return ours, ref


def max_abs_diff(a: dict, b: dict) -> float:
    diffs = [abs(a[g][k] - b[g][k]) for g, _ in pq.GROUPS for k in ("pq", "sq", "rq")]
    diffs += [abs(a["per_class"][c][k] - b["per_class"][c][k]) for c in b["per_class"] for k in ("pq", "sq", "rq")]
    if any(a[g]["n"] != b[g]["n"] for g, _ in pq.GROUPS):
        return float("inf")
    return max(diffs)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pisr_ros.evaluation.bench_evaluator", description=__doc__.split("\n\n")[0])
    p.add_argument("--num", type=int, default=100, help="images (default 100)")
    p.add_argument("--size", default="1024x2048", help="HxW (default 1024x2048)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each evaluator after one warm-up (median reported)")
    p.add_argument("--data", help="reuse this folder (made by an earlier run with --keep) instead of generating")
    p.add_argument("--keep", action="store_true", help="keep the generated data (path printed)")
    p.add_argument("--json-out", default="out/bench_evaluator.json", help="where to write the report")
    return p.parse_args(argv)


def prepare(args: argparse.Namespace, root: Path, size: tuple[int, int], workers: int) -> tuple[tuple, str]:
    gt_json = root / "gtFine" / f"cityscapes_panoptic_{SPLIT}.json"
    source_file = root / "source.txt"
    if not gt_json.is_file():
        source = synth_ground_truth(root, args.num, size, args.seed)
        if source is None:
            shutil.rmtree(root / "gtFine", ignore_errors=True)
            builtin_ground_truth(root, args.num, size, args.seed)
            source = "built-in simple scenes (bench_evaluator._simple_scene)"
        source_file.write_text(source)
    gt_folder = gt_json.with_suffix("")
    pred_json = root / "pred" / "panoptic.json"
    if not pred_json.is_file():
        pred_json = write_predictions(gt_json, gt_folder, root / "pred" / "panoptic", args.seed, workers)
    source = source_file.read_text() if source_file.is_file() else "unknown"
    return (str(gt_json), str(gt_folder), str(pred_json), str(pred_json.with_suffix(""))), source


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    size = tuple(int(v) for v in args.size.lower().split("x"))
    workers = multiprocessing.cpu_count()  # what the reference always uses
    root = Path(args.data or tempfile.mkdtemp(prefix="bench_evaluator_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        paths, source = prepare(args, root, size, workers)
        print(f"data ready in {time.perf_counter() - t:.0f} s: {root} (ground truth: {source})")
        ours_t, ref_t, diff = [], [], 0.0
        load_before = os.getloadavg()
        for r in range(args.repeats + 1):  # run 0 warms the page cache and is not counted
            # Alternate which evaluator goes first, so neither always meets a warmer machine.
            if r % 2:
                t_ref, theirs = time_reference(paths, str(root / "ref_results.json"))
                t_ours, ours = time_ours(paths, workers)
            else:
                t_ours, ours = time_ours(paths, workers)
                t_ref, theirs = time_reference(paths, str(root / "ref_results.json"))
            diff = max(diff, max_abs_diff(ours, theirs))
            if r:
                ours_t.append(t_ours)
                ref_t.append(t_ref)
            print(f"run {r}{' (warm-up)' if r == 0 else ''}: ours {t_ours:.2f} s, reference {t_ref:.2f} s")
        cpu_ours, cpu_ref = cpu_per_image(paths)
        print(f"CPU per image, one process: ours {1000 * cpu_ours:.1f} ms, reference {1000 * cpu_ref:.1f} ms "
              f"({cpu_ref / cpu_ours:.2f}x)")
        pair_ratios = [r / o for r, o in zip(ref_t, ours_t)]
        report = {
            "command": "python -m pisr_ros.evaluation.bench_evaluator " + " ".join(argv if argv is not None else sys.argv[1:]),
            "images": args.num, "size": list(size), "processes": workers, "ground_truth": source,
            "ours_s": ours_t, "reference_s": ref_t,
            "ours_median_s": statistics.median(ours_t), "reference_median_s": statistics.median(ref_t),
            "speedup": statistics.median(ref_t) / statistics.median(ours_t),
            "speedup_per_run": pair_ratios,
            "cpu_ms_per_image": {"ours": 1000 * cpu_ours, "reference": 1000 * cpu_ref,
                                 "ratio": cpu_ref / cpu_ours},
            "max_abs_diff": diff, "result_all": ours["All"],
            "load_average_before_after": [load_before, os.getloadavg()],
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "numpy": np.__version__, "opencv": cv2.__version__},
        }
        print(f"median: ours {report['ours_median_s']:.2f} s, reference {report['reference_median_s']:.2f} s, "
              f"speedup {report['speedup']:.2f}x; max |difference| {diff:.2e}; All {ours['All']}")
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
        print(f"report written to {args.json_out}")
    finally:
        if args.data is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif args.data is None:
            print(f"data kept in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
