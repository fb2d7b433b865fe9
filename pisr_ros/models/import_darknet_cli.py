"""``pisr-ros import-darknet``: pjreddie's YOLOv3 weights as a start for YOLO-Panoptic.

    pisr-ros import-darknet --weights yolov3.weights --out models/yolo_coco_init.pt
    pisr-ros train --config config/models/yolo_panoptic_full.yaml \\
        --init-from models/yolo_coco_init.pt --freeze backbone,detection

``--weights`` is ``yolov3.weights`` (the whole 80-class detector: its backbone, neck and heads,
the class rows mapped to the Cityscapes things, see ``pisr_ros.models.darknet_weights``) or
``darknet53.conv.74`` (the backbone only); which one is told by the file's size. The output is
a pisr_ros checkpoint of the spec's family holding only the Darknet tensors: ``train
--init-from`` copies them and builds the rest (semantic and mask heads) fresh. The spec must
build its Darknet at full width and depth, since those are the shapes the file holds.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_CONFIG = "config/models/yolo_panoptic_full.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, metavar="FILE",
                        help="Darknet weights: yolov3.weights (80-class YOLOv3) or darknet53.conv.74 (backbone)")
    parser.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.pt)")
    parser.add_argument("--config", default=DEFAULT_CONFIG, metavar="SPEC",
                        help=f"model spec whose network holds the Darknet YOLOv3 (default {DEFAULT_CONFIG})")


def find_yolov3(model):
    """The one ``YoloV3`` inside ``model`` and its attribute path (prefix of its state-dict keys)."""
    from pisr_ros.models.darknet import YoloV3

    found = [(name, m) for name, m in model.named_modules() if isinstance(m, YoloV3)]
    if len(found) != 1:
        return None, None
    name, module = found[0]
    return module, (name + "." if name else "")


def main(args) -> int:
    import torch

    from pisr_ros.errors import UsageError
    from pisr_ros.families import family_of
    from pisr_ros.models.darknet_weights import RIDER_SOURCE, read_yolov3, transfer_coco
    from pisr_ros.models.spec import CHECKPOINT_FORMAT, load_spec
    from pisr_ros.taxonomy import CLASSES, THING_TRAIN_IDS

    if not Path(args.config).is_file():
        raise UsageError(f"--config {args.config}: no such model spec; the specs are config/models/*.yaml")
    spec = load_spec(args.config)
    model = family_of(spec).build_model(spec)
    target, prefix = find_yolov3(model)
    if target is None:
        raise UsageError(f"--config {args.config}: the {spec.family} network holds no (or more than one) Darknet "
                         "YOLOv3 to load the weights into; use a yolo_panoptic spec")
    source, part, header = read_yolov3(args.weights)
    names = [CLASSES[t].name for t in THING_TRAIN_IDS]
    copied = transfer_coco(source, target, names, detection=part == "full")
    keep = (lambda k: True) if part == "full" else (lambda k: k.startswith("backbone."))
    state = {prefix + k: v for k, v in target.state_dict().items() if keep(k)}
    extra = {"darknet_import": {"weights": Path(args.weights).name, "part": part, "version": header.version,
                                "seen": header.seen, "classes": names, "rider_from": RIDER_SOURCE}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    torch.save({"format": CHECKPOINT_FORMAT, "spec": spec.to_dict(), "state_dict": state, "extra": extra}, str(tmp))
    os.replace(tmp, out)
    what = "backbone, neck and heads (COCO classes mapped)" if part == "full" else "backbone only"
    print(f"{args.weights}: Darknet {header.version}, seen {header.seen:,} images: {what}; "
          f"{copied} tensors written to {out} (spec {spec.name}); train with --init-from {out}")
    return 0
