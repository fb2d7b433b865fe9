"""``pisr-ros merge-ablation``: YOLO-Panoptic's heuristic merge against OANet's ranking merge on
the same instances, scored on a split with Cityscapes panoptic labels.

The network runs once per frame; every arm post-processes the same heads with the same
settings, so the arms differ only in who gets a pixel that two instances claim. Arms: the
heuristic (the higher objectness) and one ranking arm per --ranked checkpoint (outputs of
`pisr-ros train-ranking` on one YOLO-Panoptic checkpoint: they must hold the same network, only
their ranking modules differ; two trainings of the module give the spread).

Overlap frames: frames in which, on the semantic head's stride-4 grid, at least one cell is
covered by the masks of instances of two different thing classes (the conflicts the module is
trained on). PQ is reported on all frames and on the overlap frames alone.

Writes --out: one prediction folder per arm (the `pisr-ros predict` format), results.json and
results.md (the table the docs and the model card quote).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from pisr_ros.errors import UsageError

HEURISTIC = "heuristic"
GROUPS = ("All", "Things", "Stuff")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split("\n\n", 1)[1].rsplit("\n\nWrites", 1)[0]
    parser.epilog = ("Writes --out: one prediction folder per arm, results.json and results.md.\n\nexample:\n"
                     "  pisr-ros merge-ablation --ranked runs/ranked_s0.pt runs/ranked_s1.pt --data data/heldout "
                     "--out runs/merge_ablation")
    parser.add_argument("--ranked", nargs="+", required=True, metavar="PT",
                        help="train-ranking outputs of one YOLO-Panoptic checkpoint (the first one's network runs)")
    parser.add_argument("--data", required=True, metavar="ROOT",
                        help="Cityscapes layout with panoptic labels (gtFine/cityscapes_panoptic_<split>.json)")
    parser.add_argument("--split", default="val", help="split under ROOT (default: val)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--frames", type=int, default=None, metavar="N", help="only the first N frames (default: all)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (default: all cores)")


def check_same_network(paths: list[Path]) -> None:
    """UsageError unless every checkpoint holds the first one's network weights."""
    import torch

    from pisr_ros.models.spec import read_checkpoint

    first = read_checkpoint(paths[0])["state_dict"]
    for path in paths[1:]:
        other = read_checkpoint(path)["state_dict"]
        if other.keys() != first.keys() or any(not torch.equal(first[k], other[k]) for k in first):
            raise UsageError(f"{path} holds another network than {paths[0]}: the arms would not see the same "
                             "instances; train every ranking module on top of one checkpoint")


def ranking_modules(paths: list[Path], device) -> list:
    from pisr_ros.inference.model_files import read_model_info

    modules = []
    for path in paths:
        info = read_model_info(path)
        if info.family.name != "yolo_panoptic":
            raise UsageError(f"{path} is a {info.family.name} model; the merge ablation is YOLO-Panoptic's")
        post = info.family.postprocessor(info, device)
        if post.ranking is None:
            raise UsageError(f"{path} holds no spatial ranking module; make one with `pisr-ros train-ranking`")
        modules.append(post.ranking)
    return modules


def conflict_cells(frame, num_things: int) -> int:
    """Cells of the stride-4 grid covered by masks of two or more thing classes."""
    from pisr_ros.models.yolo_panoptic.spatial_ranking import conflicts, paint

    return int(conflicts(paint(frame.masks, frame.detections.classes, num_things)).sum())


def score(gt_json: Path, gt_folder: Path, pred_json: Path, keep: set[str] | None, scratch: Path) -> dict:
    """PQ/SQ/RQ of All, Things, Stuff (fractions) and the number of images: on every frame of
    ``pred_json``, or on the image ids in ``keep`` (both JSONs cut down to them in ``scratch``)."""
    from pisr_ros.evaluation import panoptic_quality

    pred_folder = pred_json.with_suffix("")
    if keep is not None:
        if not keep:
            return {"images": 0}
        scratch.mkdir(parents=True, exist_ok=True)
        for src, name in ((gt_json, "gt.json"), (pred_json, "pred.json")):
            doc = json.loads(src.read_text())
            doc["images"] = [i for i in doc["images"] if i["id"] in keep]
            doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in keep]
            (scratch / name).write_text(json.dumps(doc))
        gt_json, pred_json = scratch / "gt.json", scratch / "pred.json"
    ev = panoptic_quality.evaluate(str(gt_json), str(gt_folder), str(pred_json), str(pred_folder))
    out = {g: {k: ev.results[g][k] for k in ("pq", "sq", "rq")} for g in GROUPS}
    out["images"] = ev.num_images
    return out


def table(results: dict) -> str:
    def pct(d, group):
        return f"{100 * d[group]['pq']:.1f}" if d.get("images") else "-"

    n_all, n_over = results["frames"], len(results["overlap_frames"])
    lines = [f"| merge | PQ | things PQ | stuff PQ | PQ, overlap frames ({n_over} of {n_all}) | "
             "things PQ, overlap frames | pixels changed vs heuristic |", "|---|---|---|---|---|---|---|"]
    for arm in results["arms"]:
        a, o = arm["all"], arm["overlap"]
        changed = f"{100 * arm['pixels_changed'] / results['pixels']:.3f} %" if arm["name"] != HEURISTIC else "-"
        lines.append(f"| {arm['name']} | {pct(a, 'All')} | {pct(a, 'Things')} | {pct(a, 'Stuff')} | "
                     f"{pct(o, 'All')} | {pct(o, 'Things')} | {changed} |")
    ranked = [arm for arm in results["arms"] if arm["name"] != HEURISTIC]
    if len(ranked) > 1:
        def spread(part, group):
            values = [100 * arm[part][group]["pq"] for arm in ranked if arm[part].get("images")]
            return f"{np.mean(values):.1f} ({min(values):.1f}-{max(values):.1f})" if values else "-"

        lines.append(f"| ranking, mean (range) of {len(ranked)} | {spread('all', 'All')} | {spread('all', 'Things')} | "
                     f"{spread('all', 'Stuff')} | {spread('overlap', 'All')} | {spread('overlap', 'Things')} | |")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pisr_ros.evaluation.cityscapes_files import CityscapesWriter
    from pisr_ros.image_files import find_images, read_rgb
    from pisr_ros.inference.model_files import find_model
    from pisr_ros.inference.predictor import Predictor

    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames must be at least 1, got {args.frames}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    root = Path(args.data)
    gt_json = root / "gtFine" / f"cityscapes_panoptic_{args.split}.json"
    if not gt_json.is_file():
        raise UsageError(f"{gt_json}: missing; --data needs Cityscapes panoptic labels (pisr-ros synth writes them; "
                         "for Cityscapes, cityscapesscripts' createPanopticImgs)")
    paths = [find_model(p) for p in args.ranked]
    check_same_network(paths)
    images = find_images(root / "leftImg8bit" / args.split)[: args.frames]
    predictor = Predictor.from_file(str(paths[0]), backend="torch", device="cpu", threads=args.threads,
                                    keep_confidence=False, keep_semantic_head=True)
    post = predictor.postprocessor
    modules = ranking_modules(paths, predictor.device)
    base = dataclasses.replace(predictor.postprocess, merge=HEURISTIC)
    # Arm 0 the heuristic; ranking arms named after their files.
    arms = [(HEURISTIC, None)] + [(f"ranking ({p.stem})", m) for p, m in zip(paths, modules)]
    out = Path(args.out)
    writers = [CityscapesWriter(out / f"arm{i}") for i in range(len(arms))]
    overlap: dict[str, int] = {}
    changed = [0] * len(arms)
    pixels = 0
    t0 = time.perf_counter()
    for image_id, path in tqdm(images, desc="merge ablation", unit="img"):
        rgb = read_rgb(path)
        net = predictor.run_network([rgb])
        cells = conflict_cells(post.instances(net.heads, base)[0], len(post.spec.thing_ids))
        if cells:
            overlap[image_id] = cells
        first = None
        for i, (_, module) in enumerate(arms):
            post.ranking = module
            predictor.postprocess = base if module is None else dataclasses.replace(base, merge="ranking")
            result = predictor.finish(net)[0]
            first = result.id_map if first is None else first
            changed[i] = changed[i] + int((result.id_map != first).sum())
            writers[i].add(image_id, path.name, result.id_map, result.semantic_head,
                           scores={s.id: s.score for s in result.segments if s.is_thing})
        pixels += rgb.shape[0] * rgb.shape[1]
    seconds = time.perf_counter() - t0
    gt_folder = gt_json.with_suffix("")
    keep = set(overlap)
    results = {"data": str(root), "split": args.split, "frames": len(images), "pixels": pixels,
               "settings": dataclasses.asdict(base), "overlap_frames": overlap, "seconds": seconds, "arms": []}
    for i, ((name, _), writer) in enumerate(zip(arms, writers)):
        pred_json = writer.close()
        results["arms"].append({"name": name, "predictions": str(pred_json), "pixels_changed": changed[i],
                                "all": score(gt_json, gt_folder, pred_json, None, out / "scratch"),
                                "overlap": score(gt_json, gt_folder, pred_json, keep, out / "scratch")})
    (out / "results.json").write_text(json.dumps(results, indent=1))
    text = table(results)
    (out / "results.md").write_text(text)
    print(text + f"\n{len(images)} frames, {len(keep)} with overlapping masks of two thing classes; "
          f"{seconds:.0f} s; {out / 'results.json'}")
    return 0
