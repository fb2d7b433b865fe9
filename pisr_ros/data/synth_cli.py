"""``pisr-ros synth``: write procedural street scenes in the Cityscapes layout."""
from __future__ import annotations

import argparse
import os
import time

from pisr_ros.data import synth

_EPILOG = """\
Writes, under --out, exactly what Cityscapes ships for a split:
  leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png     RGB image
  gtFine/<split>/<city>/<...>_gtFine_labelIds.png                     labelIds (uint8)
  gtFine/<split>/<city>/<...>_gtFine_instanceIds.png                  labelId*1000+k for things (uint16)
  gtFine/<split>/<city>/<...>_gtFine_color.png                        label colours (RGBA)
  gtFine/cityscapes_panoptic_<split>.json and gtFine/cityscapes_panoptic_<split>/
                                    panoptic ground truth from cityscapesscripts' createPanopticImgs
Every scene depends only on (--seed, --split, index): the same command writes the same bytes,
with any number of workers.

example:
  pisr-ros synth --out data/synth --split val --num 20 --size 1024x2048 --seed 0
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset root to write (created if missing)")
    parser.add_argument("--split", required=True, choices=["train", "val"], help="which split to write")
    parser.add_argument("--num", required=True, type=int, metavar="N", help="number of scenes (>= 1)")
    parser.add_argument("--size", default="1024x2048", metavar="HxW",
                        help="image height x width in pixels (default: 1024x2048, Cityscapes' own)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="random seed; different seeds give different scenes (default: 0)")
    parser.add_argument("--workers", type=int, default=None, metavar="W",
                        help=f"worker processes (default: all CPU cores, here {os.cpu_count()})")
    parser.add_argument("--contact-sheet", default=None, metavar="PNG",
                        help=f"also write a grid of the first {synth.CONTACT_SHEET_SCENES} scenes and their "
                             "panoptic ground truth to PNG")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace this split's files if --out already holds them (other splits are kept)")


def main(args: argparse.Namespace) -> int:
    size = synth.parse_size(args.size)
    t0 = time.perf_counter()
    summary = synth.generate(
        out=args.out, split=args.split, num=args.num, size=size, seed=args.seed, workers=args.workers,
        contact_sheet=args.contact_sheet, overwrite=args.overwrite, progress=True,
    )
    elapsed = time.perf_counter() - t0
    print(f"wrote {len(summary['image_ids'])} {args.split} scenes to {args.out} in {elapsed:.1f} s "
          f"(render {summary['render_s']:.1f} s, panoptic conversion {summary['panoptic_s']:.1f} s)")
    if args.contact_sheet:
        print(f"contact sheet: {args.contact_sheet}")
    return 0
