"""``pisr-ros train``: train a model spec on data in the Cityscapes layout."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from pisr_ros.errors import UsageError

_EPILOG = """\
Data: a Cityscapes root (leftImg8bit/ and gtFine/; real Cityscapes or `pisr-ros synth` output).
Images are resized to the spec's input_size (512x1024 for the light models), then scaled by a
random factor in 0.5-2.0, cropped to --crop and flipped. PQ at the end needs
gtFine/cityscapes_panoptic_val.json (cityscapesscripts' csCreatePanopticImgs; synth writes it).

Writes under --out: last.pt (resumable), final.pt (weights + spec, for `pisr-ros predict`),
log.csv (iteration, lr, loss parts, seconds), val/ (predictions), val_metrics.json, val_log.csv.

CPU: torch uses all cores (--threads) and --workers DataLoader processes prepare batches
alongside (default: cores - 1, at least 1, at most 8; 1 on a 2-core machine).
Several GPUs: the same command under torchrun, e.g.
  torchrun --nproc_per_node 4 -m pisr_ros.cli train --config ... (--batch-size is per GPU)

example:
  pisr-ros train --config config/models/pd_light_pisr.yaml --data data/cityscapes \\
      --out runs/light --iters 60000 --batch-size 8 --crop 256x512
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pisr_ros.training.train import TrainOptions, default_workers

    d = TrainOptions(config="", data="", out="")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--config", required=True, metavar="YAML", help="model spec, e.g. config/models/pd_light_pisr.yaml")
    parser.add_argument("--data", required=True, metavar="ROOT", help="dataset root in the Cityscapes layout")
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder (created if missing)")
    parser.add_argument("--iters", type=int, default=d.iters, metavar="N", help=f"iterations (default: {d.iters})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, metavar="B",
                        help=f"images per iteration and process (default: {d.batch_size})")
    parser.add_argument("--crop", default=None, metavar="HxW",
                        help="training crop (default: half the spec's input_size, 256x512 for 512x1024)")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate, poly decay 0.9 (default: {d.lr})")
    parser.add_argument("--warmup", type=int, default=None, metavar="N",
                        help="linear warm-up iterations (default: min(1000, iters/20))")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"(default: {d.weight_decay})")
    parser.add_argument("--seed", type=int, default=d.seed, metavar="S",
                        help=f"seed of the weights, data order and augmentation (default: {d.seed})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--init-from", default=None, metavar="CKPT",
                        help="start from a trained checkpoint instead of random weights; a base model "
                             "(PISR off) may start a PISR spec: PISR's final heads begin as copies of its "
                             "heads, so step 0 predicts what the base predicts")
    parser.add_argument("--freeze", type=_parts, default=(), metavar="PARTS",
                        help="comma-separated parts of the network that do not train, e.g. backbone,detection "
                             "(YOLO-Panoptic on imported Darknet weights, as the thesis did)")
    parser.add_argument("--workers", type=int, default=None, metavar="W",
                        help=f"DataLoader worker processes; 0 loads in the training process (default: {default_workers()})")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help=f"torch CPU threads (default: all cores, here {os.cpu_count()}, shared among torchrun's processes)")
    parser.add_argument("--val-every", type=int, default=d.val_every, metavar="N",
                        help="also validate every N iterations (default: 0, only at the end)")
    parser.add_argument("--stop-at", type=int, default=None, metavar="N",
                        help="pause after iteration N (writes last.pt; continue with --resume); "
                             "the learning-rate schedule still runs to --iters")
    parser.add_argument("--save-every", type=int, default=d.save_every, metavar="N",
                        help=f"write last.pt every N iterations (default: {d.save_every})")
    parser.add_argument("--val-data", default=None, metavar="ROOT",
                        help="root whose val split is validated on (default: --data); keep the held-out "
                             "test set out of it, validation results steer tuning")
    parser.add_argument("--save-minutes", type=float, default=d.save_minutes, metavar="M",
                        help="also write last.pt when M minutes have passed since the last one "
                             "(default: 0, off); long CPU runs lose at most M minutes to a stop")
    parser.add_argument("--thing-crops", type=float, default=d.thing_crops, metavar="P",
                        help="share of crops placed on a thing instance, one drawn uniformly among the "
                             f"image's instances (like class-balanced crops; default: {d.thing_crops:g})")
    parser.add_argument("--signal-frames", type=int, default=d.signal_frames, metavar="N",
                        help="val frames the instance signals are measured on at each validation "
                             f"(heat at ground-truth centers, peaks per frame; default: {d.signal_frames})")
    parser.add_argument("--log", choices=["csv", "tensorboard"], default=d.log,
                        help="csv (always written) or csv + tensorboard (needs the tensorboard package)")
    parser.add_argument("--device", default=d.device, help="auto (cuda if available), cpu, cuda, cuda:N (default: auto)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="keep NCHW tensors (channels-last, the default, trains about 1.25x faster on CPU)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA (ignored on CPU)")


def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    if not parts:
        raise argparse.ArgumentTypeError("expected part names, e.g. backbone,detection")
    return parts


def main(args: argparse.Namespace) -> int:
    from pisr_ros.arguments import parse_size
    from pisr_ros.training.train import TrainOptions, train

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    opts = TrainOptions(
        config=args.config, data=args.data, out=args.out, iters=args.iters, batch_size=args.batch_size,
        crop_size=parse_size(args.crop, "--crop") if args.crop else None, lr=args.lr, warmup=args.warmup,
        weight_decay=args.weight_decay, seed=args.seed, resume=args.resume, init_from=args.init_from, freeze=args.freeze, workers=args.workers,
        threads=args.threads, val_every=args.val_every, stop_at=args.stop_at, save_every=args.save_every,
        save_minutes=args.save_minutes, val_data=args.val_data, thing_crops=args.thing_crops, signal_frames=args.signal_frames, log=args.log,
        device=args.device, amp=args.amp, channels_last=args.channels_last,
    )
    check_data(opts)
    train(opts)
    return 0


def check_data(opts) -> None:
    """The data root, before anything is built or written: without this, a root with images but no
    gtFine fails inside a DataLoader worker (a worker traceback) after the run folder is made, and
    a val split without labels fails at the end of the training."""
    from pisr_ros import cityscapes_layout as layout

    val_data = getattr(opts, "val_data", None)  # --val-data, where this version of training has it
    roots = [("--data", opts.data, opts.train_split, True),
             ("--val-data" if val_data else "--data", val_data or opts.data, opts.val_split, False)]
    for flag, root, split, required in roots:
        if not Path(root).is_dir():
            raise UsageError(f"{flag} {root}: no such folder (a dataset root in the Cityscapes layout)")
        ids = layout.list_split(root, split)
        if not ids and required:
            raise UsageError(f"{flag} {root}: no {split} images (leftImg8bit/{split}/<city>/*{layout.LEFT_IMG_SUFFIX}); "
                             f"`pisr-ros synth --out {root} --split {split} ...` writes a dataset")
        # Training and the instance signals of validation read each image's instanceIds.
        missing = [p for p in (layout.image_paths(root, split, i).instance_ids for i in ids) if not p.is_file()]
        if missing:
            raise UsageError(f"{flag} {root}: {len(missing)} of {len(ids)} {split} images have no labels "
                             f"(first: {missing[0]}); the labels come with Cityscapes' gtFine (or `pisr-ros synth`)")
