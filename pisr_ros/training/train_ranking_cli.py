"""``pisr-ros train-ranking``: OANet's spatial ranking module on top of a trained YOLO-Panoptic,
written with it into one checkpoint that serves ``--merge ranking`` (pisr_ros.training.ranking)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from pisr_ros.errors import UsageError

_EPILOG = """\
The YOLO-Panoptic network stays frozen (the module reads its thresholded masks, through which no
gradient passes): it runs once over --frames frames of --split (the model's own post-processing
settings), the frames where masks of two thing classes overlap on a ground-truth thing of one
of them are kept, and the module trains on those for --iters steps. The loss (OANet's equation
2) is the cross-entropy of the ranking score map on those overlap cells only; every other cell
is ignored. docs/yolo_panoptic.md, "Ranking merge".

Writes --out: the input checkpoint with the module's weights (entry "spatial_ranking") and the
spec's ranking.kernel set to --kernel. It serves both merges:
  pisr-ros predict --model OUT --images DIR --out preds --merge ranking
  pisr-ros export --model OUT --out OUT.onnx   (the weights go into the ONNX metadata)

example:
  pisr-ros train-ranking --model runs/yolo/final.pt --data data/synth --out runs/yolo/ranked.pt --iters 2000
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--model", required=True, metavar="CKPT", help="trained YOLO-Panoptic checkpoint (.pt)")
    parser.add_argument("--data", required=True, metavar="ROOT", help="dataset root in the Cityscapes layout")
    parser.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.pt; not --model itself)")
    parser.add_argument("--split", default="train", help="split the module learns from (default: train)")
    parser.add_argument("--frames", type=int, default=None, metavar="N",
                        help="read at most the first N frames of --split (default: all)")
    parser.add_argument("--iters", type=int, default=1000, metavar="N", help="optimizer steps (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="B", help="frames per step (default: 8)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default: 0.01)")
    parser.add_argument("--kernel", type=int, default=None, metavar="K",
                        help="the k x 1 + 1 x k kernel, odd (default: the spec's ranking.kernel)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the module's weights and batches (default: 0)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help=f"torch CPU threads (default: all cores, here {os.cpu_count()})")


def main(args: argparse.Namespace) -> int:
    import torch

    from pisr_ros import settings
    from pisr_ros.inference.model_files import CHECKPOINT_POSTPROCESS
    from pisr_ros.models.spec import load_checkpoint, read_checkpoint
    from pisr_ros.models.yolo_panoptic.spatial_ranking import CHECKPOINT_KEY
    from pisr_ros.postprocess.yolo_panoptic import YoloPanopticSettings
    from pisr_ros.training.ranking import collect, fit, write_ranked_checkpoint

    model_path, out = Path(args.model), Path(args.out)
    if out.resolve() == model_path.resolve():
        raise UsageError(f"--out {out} is --model itself; write the ranked checkpoint to another file")
    for name in ("iters", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames must be at least 1, got {args.frames}")
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = read_checkpoint(model_path)
    model, spec = load_checkpoint(model_path)
    if getattr(spec, "family", None) != "yolo_panoptic":
        raise UsageError(f"{model_path} is a {spec.family} model; the spatial ranking module is YOLO-Panoptic's merge")
    kernel = spec.ranking.kernel if args.kernel is None else args.kernel
    if kernel < 1 or kernel % 2 == 0:
        raise UsageError(f"--kernel must be odd and positive (it is centred on the cell), got {kernel}")
    if CHECKPOINT_KEY in ckpt:
        print(f"{model_path} already holds spatial ranking weights; {out} gets the new ones")
    try:
        cfg = settings.resolve(YoloPanopticSettings, args.device, ckpt.get(CHECKPOINT_POSTPROCESS))
    except ValueError as exc:
        raise UsageError(f"{model_path}: {exc}") from exc

    examples = collect(model, spec, cfg, args.data, args.split, args.frames, args.device)
    print(f"{examples.frames_read} frames read, {len(examples.codes)} with supervised cells "
          f"({examples.supervised_cells} cells; {examples.conflict_cells} cells where two classes' masks overlap)")
    result = fit(examples, kernel, args.iters, args.batch_size, args.lr, args.seed)
    first, last = result.losses[:10], result.losses[-10:]
    print(f"{args.iters} steps in {result.seconds:.1f} s: loss {sum(first) / len(first):.4f} -> "
          f"{sum(last) / len(last):.4f} (means of the first and last ten); supervised cells whose score map "
          f"argmax is the truth: {100 * result.accuracy_before:.1f} % -> {100 * result.accuracy_after:.1f} %")
    trained = {"data": Path(args.data).name, "split": args.split, "frames_read": examples.frames_read,
               "frames_used": len(examples.codes), "supervised_cells": examples.supervised_cells,
               "iterations": args.iters, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
               "kernel": kernel, "loss_first": sum(first) / len(first), "loss_last": sum(last) / len(last),
               "accuracy_before": result.accuracy_before, "accuracy_after": result.accuracy_after}
    write_ranked_checkpoint(ckpt, spec, result, out, trained)
    print(f"wrote {out}: serve it with --merge ranking (node parameter merge:=ranking)")
    return 0
