"""``pisr-ros evaluate``: panoptic quality and/or semantic mIoU of predictions on disk."""
from __future__ import annotations

import argparse
import os

from pisr_ros.allocator import keep_freed_memory
from pisr_ros.errors import UsageError
from pisr_ros.evaluation import panoptic_quality


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Score predictions against Cityscapes-style ground truth. Panoptic: PQ, SQ, RQ for All, "
        "Things, Stuff and per class, equal to cityscapesscripts' evaluatePanoptic. Semantic: IoU "
        "per class and mIoU over the 19 training classes, equal to cityscapesscripts' "
        "evalPixelLevelSemanticLabeling. Give the panoptic options, the semantic options, or both."
    )
    pan = parser.add_argument_group(
        "panoptic",
        "COCO/Cityscapes panoptic format: PNG id = R + 256 G + 256^2 B, 0 = void, category_id = "
        "Cityscapes labelId; predictions are matched to ground truth by image_id.",
    )
    pan.add_argument("--gt-json", metavar="JSON", help="ground truth, e.g. gtFine/cityscapes_panoptic_val.json")
    pan.add_argument("--gt-folder", metavar="DIR", help="ground-truth PNGs (default: --gt-json without .json)")
    pan.add_argument("--pred-json", metavar="JSON", help="predictions' JSON (annotations with segments_info)")
    pan.add_argument("--pred-folder", metavar="DIR", help="predicted PNGs (default: --pred-json without .json)")
    sem = parser.add_argument_group(
        "semantic",
        "labelIds PNGs (values 0..33). Every <image_id>_gtFine_labelIds.png found recursively "
        "under --gt-semantic needs exactly one <image_id>*.png anywhere under --pred-semantic, "
        "as in cityscapesscripts.",
    )
    sem.add_argument("--gt-semantic", metavar="DIR", help="ground truth, e.g. gtFine/val")
    sem.add_argument("--pred-semantic", metavar="DIR", help="predicted labelIds PNGs")
    parser.add_argument(
        "--json-out", metavar="FILE",
        help="write results: the reference's keys (All, Things, Stuff, per_class; fractions in 0..1, "
        "not percent) and, with the semantic options, a 'semantic' entry; NaN is written as null",
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="threads (panoptic) or processes (semantic) reading images (default: number of CPUs)",
    )


def _panoptic_paths(args: argparse.Namespace) -> tuple[str, str, str, str] | None:
    given = [args.gt_json, args.gt_folder, args.pred_json, args.pred_folder]
    if not any(given):
        return None
    if not args.gt_json or not args.pred_json:
        raise UsageError("panoptic evaluation needs both --gt-json and --pred-json")
    gt_folder = args.gt_folder or os.path.splitext(args.gt_json)[0]
    pred_folder = args.pred_folder or os.path.splitext(args.pred_json)[0]
    return args.gt_json, gt_folder, args.pred_json, pred_folder


def _semantic_paths(args: argparse.Namespace) -> tuple[str, str] | None:
    if not args.gt_semantic and not args.pred_semantic:
        return None
    if not args.gt_semantic or not args.pred_semantic:
        raise UsageError("semantic evaluation needs both --gt-semantic and --pred-semantic")
    return args.gt_semantic, args.pred_semantic


def _box_ap50(gt_json: str, pred_json: str) -> dict | None:
    """Box AP50 of the things when the predictions carry scores (`pisr-ros predict` writes them;
    replay-eval's do not), printed; its JSON entry."""
    import json

    from pisr_ros.evaluation.box_ap import box_ap50

    with open(gt_json) as f:
        gt = json.load(f)
    with open(pred_json) as f:
        pred = json.load(f)
    things = {c["id"]: c["name"] for c in gt["categories"] if c.get("isthing")}
    scored = any("score" in s for a in pred["annotations"] for s in a["segments_info"] if s["category_id"] in things)
    if not scored:
        print("\nBox AP50: not computed, the predictions' thing segments carry no scores")
        return None
    ap = box_ap50(gt, pred)
    print(f"\nBox AP50 of the things over {ap.num_images} images (percent; COCO's bbox AP at IoU 0.5):")
    for c, v in sorted(ap.per_class.items()):
        print(f"  {things[c]:<14} {100 * v:5.1f}")
    print(f"  {'mean':<14} {100 * ap.mean:5.1f}")
    return ap.as_dict(things)


def main(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    pan_paths = _panoptic_paths(args)
    sem_paths = _semantic_paths(args)
    if pan_paths is None and sem_paths is None:
        raise UsageError("nothing to evaluate: give --gt-json/--pred-json and/or --gt-semantic/--pred-semantic")

    # Each image inflates into fresh multi-megabyte buffers: without this, glibc maps and unmaps
    # them every time, and page faults cost the kernel about 10 ms per frame.
    keep_freed_memory()
    out: dict = {}
    if pan_paths is not None:
        ev = panoptic_quality.evaluate(*pan_paths, workers=args.workers)
        print(f"Panoptic quality over {ev.num_images} images (percent):")
        print(panoptic_quality.format_table(ev))
        out.update(ev.results)
        box = _box_ap50(pan_paths[0], pan_paths[2])
        if box is not None:
            out["box_ap50"] = box
    if sem_paths is not None:
        from pisr_ros.evaluation import semantic  # OpenCV and its start-up only when needed

        sem = semantic.evaluate_semantic(*sem_paths, workers=args.workers)
        if pan_paths is not None:
            print()
        print(f"Semantic IoU over {sem['numImages']} images (percent):")
        print(semantic.format_table(sem))
        out["semantic"] = sem
    if args.json_out:
        panoptic_quality.write_json(out, args.json_out)
        print(f"results written to {args.json_out}")
    return 0
