"""``pisr-ros predict``: panoptic predictions for a folder of images, in the Cityscapes/COCO
panoptic format that ``pisr-ros evaluate`` and cityscapesscripts' ``evaluatePanoptic`` read.

Writes, under --out:
  panoptic.json                          COCO panoptic: annotations (image_id, file_name,
                                         segments_info), images, categories (labelIds)
  panoptic/<image_id>_panoptic.png       PNG id = R + 256 G + 256^2 B, 0 = void
  semantic/<image_id>_labelIds.png       the semantic head's argmax as labelIds (uint8)
``image_id`` is the Cityscapes id (``frankfurt_000000_000294``) for ``*_leftImg8bit.png`` files,
else the file's name without extension, so predictions pair with Cityscapes ground truth by id.

Images go through the same ``Predictor`` as panoptic_node's, with the same post-processing for
the same model and device, so a model scores the same here, in replay-eval and live. An image
that cannot be read is skipped, counted and named at the end; panoptic.json lists the others.
"""
from __future__ import annotations

import argparse
import os
import sys

from pisr_ros.errors import UsageError
from pisr_ros.arguments import parse_size, resolve_device
from pisr_ros.image_files import find_images
from pisr_ros.inference.model_files import DEFAULT_MODEL

_EPILOG = f"""\
Unreadable images are skipped and counted (listed at the end, exit status 0 while at least one
image was predicted); panoptic.json lists the images that were predicted.

examples:
  pisr-ros predict --images data/cityscapes/leftImg8bit/val --out preds/val     # {DEFAULT_MODEL}
  pisr-ros predict --model runs/light/final.pt --backend onnxruntime --images DIR --out preds
  pisr-ros evaluate --gt-json data/cityscapes/gtFine/cityscapes_panoptic_val.json \\
      --pred-json preds/val/panoptic.json \\
      --gt-semantic data/cityscapes/gtFine/val --pred-semantic preds/val/semantic
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pisr_ros.families.flags import add_setting_flags
    from pisr_ros.inference.backends import BACKENDS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (__doc__ or "").split("\n\n")[0].replace("``", "")
    parser.epilog = _EPILOG
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="M",
                        help="checkpoint (.pt) or exported ONNX (.onnx); a bare name is also looked up in the "
                             f"package's models/ (default: the node's default, {DEFAULT_MODEL})")
    parser.add_argument("--images", required=True, metavar="DIR",
                        help="folder searched recursively for *_leftImg8bit.png (else any png/jpg), or one image")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--backend", default="auto", choices=("auto", *BACKENDS),
                        help="inference backend (default: auto, the fastest available on the device, as the node)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N (default: auto)")
    parser.add_argument("--size", metavar="HxW", default=None,
                        help="network input size (default: the model's input_size, e.g. 512x1024)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help=f"CPU threads for the network (default: all cores, here {os.cpu_count()})")
    add_setting_flags(parser)


def main(args: argparse.Namespace) -> int:
    from pisr_ros.families.flags import given_settings
    from pisr_ros.inference.model_files import find_model, read_model_info
    from pisr_ros.inference.predict_files import write_predictions
    from pisr_ros.inference.predictor import Predictor, model_settings

    size = parse_size(args.size, "--size") if args.size else None
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    images = find_images(args.images)
    device = resolve_device(args.device)
    info = read_model_info(find_model(args.model))
    postprocess = model_settings(info, device, **given_settings(args, info.family.settings_class))
    predictor = Predictor.from_file(str(info.path), backend=args.backend, device=device, threads=args.threads,
                                    input_size=size, postprocess=postprocess, keep_confidence=False)
    written = write_predictions(predictor, images, args.out)
    print(f"{written.images} images -> {written.json} (panoptic/, semantic/); {predictor.describe()}; "
          f"{1000 * written.seconds_per_image:.0f} ms per image (network + post-processing)")
    if written.skipped:
        print(f"skipped {len(written.skipped)} unreadable image(s):", file=sys.stderr)
        for _, reason in written.skipped[:10]:
            print(f"  {reason}", file=sys.stderr)
        if len(written.skipped) > 10:
            print(f"  ... and {len(written.skipped) - 10} more", file=sys.stderr)
    return 0
