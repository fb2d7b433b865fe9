"""``pisr-ros bench-evaluator``: our panoptic evaluator, cityscapesscripts' and hotcoco's, whole
process each, side by side on the same generated files.

    pisr-ros bench-evaluator --num 100 --size 1024x2048 --pairs 5 --json-out out/bench_evaluator.json

Ground truth comes from ``pisr-ros synth`` (the Cityscapes layout, panoptic files written by
cityscapesscripts' converter); if that command is missing or fails, a simple built-in scene
generator writes the panoptic files instead, and the report says so. Predictions are derived from
the ground truth of the same images (segments dropped, merged, relabelled, moved and split,
boundaries eroded, spurious blobs added) so that there is a realistic mix of TP, FP and FN.

Each evaluator runs as its own process, start-up and imports included, as a user would run it:
``pisr-ros evaluate``; cityscapesscripts' ``evaluatePanoptic`` (which always uses
``multiprocessing.cpu_count()`` processes); hotcoco's ``pq_compute`` (a Rust evaluator, if it is
installed; its JSON reader wants integer ``image_id``s, so it gets a copy of the two JSON files
with the ids numbered, made before the timing). One warm-up round, then ``--pairs`` rounds in
which every evaluator runs once, in an order that rotates from round to round; reported are the
median wall time, the median CPU time (user + system, the process and its children) and, for
each pair of evaluators, the median of the per-round ratios. The results of all three are
compared number by number.
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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pisr_ros.errors import UsageError
from pisr_ros.evaluation import panoptic_quality as pq
from pisr_ros.panoptic import LABEL_DIVISOR, encode, to_cityscapes_panoptic
from pisr_ros.taxonomy import STUFF_TRAIN_IDS, THING_TRAIN_IDS, by_name

SPLIT = "val"
TOOLS = ("ours", "cityscapesscripts", "hotcoco")


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
# The evaluators, each a command line


@dataclass(frozen=True)
class Inputs:
    gt_json: str
    gt_folder: str
    pred_json: str
    pred_folder: str


_REFERENCE = (
    "import sys\n"
    "from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic\n"
    "evaluatePanoptic(*sys.argv[1:6])\n"
)
_HOTCOCO = (
    "import json, sys\n"
    "from hotcoco.panoptic import pq_compute\n"
    "r = pq_compute(*sys.argv[1:5])\n"
    "json.dump({k: r[k] for k in ('All', 'Things', 'Stuff', 'per_class')}, open(sys.argv[5], 'w'))\n"
)


DESCRIPTIONS = {
    "ours": "pisr-ros evaluate --gt-json GT --pred-json PRED --workers N --json-out FILE",
    "cityscapesscripts": "python -c: evaluatePanoptic(GT, GT_FOLDER, PRED, PRED_FOLDER, FILE) "
                         "(cityscapesscripts.evaluation.evalPanopticSemanticLabeling)",
    "hotcoco": "python -c: hotcoco.panoptic.pq_compute(GT, PRED, GT_FOLDER, PRED_FOLDER), on copies "
               "of the JSON files with integer image ids",
}


def hotcoco_installed() -> bool:
    try:
        import hotcoco.panoptic  # noqa: F401
    except ImportError:
        return False
    return True


def hotcoco_inputs(inputs: Inputs, root: Path) -> Inputs:
    """Copies of the two JSON files with ``image_id`` numbered 0, 1, ... (the gt's order)."""
    with open(inputs.gt_json) as f:
        gt = json.load(f)
    with open(inputs.pred_json) as f:
        pred = json.load(f)
    number = {ann["image_id"]: i for i, ann in enumerate(gt["annotations"])}
    for image in gt.get("images", []):
        image["id"] = number[image["id"]]
    for ann in gt["annotations"] + pred["annotations"]:
        ann["image_id"] = number[ann["image_id"]]
    gt_json, pred_json = root / "hotcoco_gt.json", root / "hotcoco_pred.json"
    gt_json.write_text(json.dumps(gt))
    pred_json.write_text(json.dumps({"annotations": pred["annotations"]}))
    return Inputs(str(gt_json), inputs.gt_folder, str(pred_json), inputs.pred_folder)


def commands(inputs: Inputs, hotcoco: Inputs | None, workers: int, out: Path) -> dict[str, tuple[list[str], Path]]:
    """Each evaluator's command line and the results file it writes."""
    py = sys.executable
    i = inputs
    cmds = {
        "ours": ([py, "-m", "pisr_ros.cli", "evaluate", "--gt-json", i.gt_json, "--gt-folder", i.gt_folder,
                  "--pred-json", i.pred_json, "--pred-folder", i.pred_folder, "--workers", str(workers),
                  "--json-out", str(out / "ours.json")], out / "ours.json"),
        "cityscapesscripts": ([py, "-c", _REFERENCE, i.gt_json, i.gt_folder, i.pred_json, i.pred_folder,
                               str(out / "cityscapesscripts.json")], out / "cityscapesscripts.json"),
    }
    if hotcoco is not None:
        h = hotcoco
        cmds["hotcoco"] = ([py, "-c", _HOTCOCO, h.gt_json, h.pred_json, h.gt_folder, h.pred_folder,
                            str(out / "hotcoco.json")], out / "hotcoco.json")
    return cmds


def run_timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the process and the children it waited for)."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child cannot block
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{' '.join(cmd[:4])} failed (exit {proc.returncode}): {tail[0]}")
    return wall, usage.ru_utime + usage.ru_stime


def max_abs_diff(a: dict, b: dict) -> float:
    """Largest difference of any PQ/SQ/RQ (groups and classes) of ``a`` from the reference's
    ``b``; inf if the counts n differ. A class without TP, FP or FN is left out where ``a``
    says so with counts (hotcoco writes -1 for it, the reference 0)."""
    if any(a[g]["n"] != b[g]["n"] for g, _ in pq.GROUPS):
        return float("inf")
    diffs = [abs(a[g][k] - b[g][k]) for g, _ in pq.GROUPS for k in ("pq", "sq", "rq")]
    for c, ref in b["per_class"].items():
        row = a["per_class"][c]
        if "tp" in row and row["tp"] + row["fp"] + row["fn"] == 0:
            continue
        diffs += [abs(row[k] - ref[k]) for k in ("pq", "sq", "rq")]
    return max(diffs)


def _load_results(path: Path) -> dict:
    with open(path) as f:
        results = json.load(f)
    results["per_class"] = {str(k): v for k, v in results["per_class"].items()}
    return results


def time_tools(
    cmds: dict, pairs: int, timed: list[str] | None = None, log=print
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, float]]:
    """A warm-up round of every evaluator in ``cmds``, then ``pairs`` rounds of those in
    ``timed`` (default: all), in an order that rotates from round to round; returns the timings
    of the counted rounds per timed evaluator, and each evaluator's largest difference from
    cityscapesscripts' results."""
    names = list(cmds)
    timed = list(timed or names)
    runs: dict[str, list[tuple[float, float]]] = {n: [] for n in timed}
    diff = {n: 0.0 for n in names}
    for r in range(pairs + 1):  # round 0 warms the page cache and is not counted
        this_round = names if r == 0 else timed
        shift = r % len(this_round)
        line = []
        for name in this_round[shift:] + this_round[:shift]:
            wall, cpu = run_timed(cmds[name][0])
            if r:
                runs[name].append((wall, cpu))
            line.append(f"{name} {wall:.2f} s (CPU {cpu:.2f} s)")
        reference = _load_results(cmds["cityscapesscripts"][1])
        for name in this_round:
            diff[name] = max(diff[name], max_abs_diff(_load_results(cmds[name][1]), reference))
        log(f"round {r}{' (warm-up)' if r == 0 else ''}: " + ", ".join(line))
    return runs, diff


def summarize(runs: dict[str, list[tuple[float, float]]]) -> dict:
    names = list(runs)
    out: dict = {"median_wall_s": {}, "median_cpu_s": {}, "ratios": {}}
    for n in names:
        out["median_wall_s"][n] = statistics.median(w for w, _ in runs[n])
        out["median_cpu_s"][n] = statistics.median(c for _, c in runs[n])
    for slow in names:
        for fast in names:
            if slow != fast:
                per_round = [s[0] / f[0] for s, f in zip(runs[slow], runs[fast])]
                out["ratios"][f"{slow}/{fast}"] = {"median_of_rounds": statistics.median(per_round),
                                                   "per_round": per_round}
    return out


def format_table(summary: dict, diff: dict[str, float]) -> str:
    names = list(summary["median_wall_s"]) + [n for n in diff if n not in summary["median_wall_s"]]
    lines = [f"{'evaluator':18s} {'wall (median)':>14s} {'CPU (median)':>13s} {'ours faster by':>15s} {'max |diff| vs cityscapesscripts':>32s}"]
    for n in names:
        if n not in summary["median_wall_s"]:
            lines.append(f"{n:18s} {'(warm-up only)':>14s} {'':>13s} {'':>15s} {diff[n]:32.1e}")
            continue
        ratio = "" if n == "ours" else f"{summary['ratios'][f'{n}/ours']['median_of_rounds']:.2f}x"
        lines.append(f"{n:18s} {summary['median_wall_s'][n]:12.2f} s {summary['median_cpu_s'][n]:11.2f} s "
                     f"{ratio:>15s} {diff[n]:32.1e}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[0].replace("``", "")
    p.add_argument("--num", type=int, default=100, help="images (default 100)")
    p.add_argument("--size", default="1024x2048", help="HxW (default 1024x2048)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pairs", type=int, default=5,
                   help="timed rounds after one warm-up; each runs every evaluator once (default 5)")
    p.add_argument("--timed", default=",".join(TOOLS), metavar="LIST",
                   help=f"evaluators timed after the warm-up (default: {','.join(TOOLS)}); all of them "
                        "still run in the warm-up round, whose results are compared")
    p.add_argument("--workers", type=int, default=None,
                   help="workers for ours (default: the number of CPUs, which the reference always uses)")
    p.add_argument("--data", help="keep the generated data in this folder, and reuse it if it is there")
    p.add_argument("--json-out", default="out/bench_evaluator.json", help="where to write the report")


def prepare(args: argparse.Namespace, root: Path, size: tuple[int, int], workers: int) -> tuple[Inputs, str]:
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
    return Inputs(str(gt_json), str(gt_folder), str(pred_json), str(pred_json.with_suffix(""))), source


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size must be HxW, e.g. 1024x2048; got {text!r}") from None
    if h < 1 or w < 1:
        raise UsageError(f"--size must be positive; got {text!r}")
    return h, w


def main(args: argparse.Namespace) -> int:
    if args.pairs < 1 or args.num < 1:
        raise UsageError("--pairs and --num must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    size = _size(args.size)
    timed = [t for t in args.timed.split(",") if t]
    unknown = sorted(set(timed) - set(TOOLS))
    if unknown or "ours" not in timed or len(timed) < 2:
        raise UsageError(f"--timed: a comma-separated list of {', '.join(TOOLS)} with ours and at least "
                         f"one other; got {args.timed!r}")
    cpus = multiprocessing.cpu_count()  # what the reference always uses
    workers = args.workers or cpus
    root = Path(args.data or tempfile.mkdtemp(prefix="bench_evaluator_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        inputs, source = prepare(args, root, size, cpus)
        print(f"data ready in {time.perf_counter() - t:.0f} s (ground truth: {source})")
        hotcoco = hotcoco_inputs(inputs, root) if hotcoco_installed() else None
        if hotcoco is None:
            print("hotcoco is not installed (pip install hotcoco): timing ours and cityscapesscripts only")
        out = root / "results"
        out.mkdir(exist_ok=True)
        cmds = commands(inputs, hotcoco, workers, out)
        load_before = os.getloadavg()
        timed = [t for t in cmds if t in timed]  # in TOOLS' order; hotcoco may be missing
        if len(timed) < 2:
            raise UsageError("--timed: nothing to compare ours with (hotcoco is not installed)")
        try:
            runs, diff = time_tools(cmds, args.pairs, timed)
        except RuntimeError as exc:  # an evaluator failed: its last line says why
            raise UsageError(str(exc)) from None
        summary = summarize(runs)
        print(format_table(summary, diff))
        ours = _load_results(cmds["ours"][1])
        report = {
            "command": without_paths(_command(args), root),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "images": args.num, "size": list(size), "ground_truth": without_paths(source, root),
            "workers_ours": workers,
            "evaluators": {n: DESCRIPTIONS[n] for n in cmds},
            "runs": {n: [{"wall_s": w, "cpu_s": c} for w, c in r] for n, r in runs.items()},
            **summary,
            "max_abs_diff_vs_cityscapesscripts": diff,
            "result_all": ours["All"],
            "load_average_before_after": [load_before, os.getloadavg()],
            "machine": _machine(cpus),
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
        print(f"report written to {args.json_out}")
    finally:
        if args.data is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that repeats this run (every option spelled out)."""
    words = ["pisr-ros bench-evaluator", "--num", str(args.num), "--size", args.size, "--seed", str(args.seed),
             "--pairs", str(args.pairs), "--timed", args.timed]
    if args.workers is not None:
        words += ["--workers", str(args.workers)]
    if args.data:
        words += ["--data", args.data]
    return " ".join(words + ["--json-out", args.json_out])


def without_paths(text: str, root: Path) -> str:
    """``text`` with the data folder written DATA, paths below the working directory relative and
    other absolute paths cut to their file name: reports are kept in the repository."""
    text = text.replace(str(root.resolve()), "DATA").replace(str(root), "DATA")
    text = text.replace(os.getcwd() + os.sep, "")
    return " ".join(os.path.basename(w) if os.path.isabs(w) else w for w in text.split(" "))


def _machine(cpus: int) -> dict:
    from importlib import metadata

    versions = {}
    for dist in ("numpy", "opencv-python-headless", "llvmlite", "zlib-ng", "hotcoco", "cityscapesscripts"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"cpus": cpus, "platform": platform.platform(), "python": platform.python_version(), **versions}


if __name__ == "__main__":
    from pisr_ros import cli

    sys.exit(cli.main(["bench-evaluator", *sys.argv[1:]]))
