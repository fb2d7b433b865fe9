"""``pisr-ros predict``: panoptic predictions for a folder of images, in the Cityscapes/COCO
panoptic format that ``pisr-ros evaluate`` and cityscapesscripts' ``evaluatePanoptic`` read.

Writes, under --out:
  panoptic.json                          COCO panoptic: annotations (image_id, file_name,
                                         segments_info), images, categories (labelIds)
  panoptic/<image_id>_panoptic.png       PNG id = R + 256 G + 256^2 B, 0 = void
  semantic/<image_id>_labelIds.png       the semantic head's argmax as labelIds (uint8)
``image_id`` is the Cityscapes id (``frankfurt_000000_000294``) for ``*_leftImg8bit.png`` files,
else the file's name without extension, so predictions pair with Cityscapes ground truth by id.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from pisr_ros.data.cityscapes_layout import LEFT_IMG_SUFFIX
from pisr_ros.errors import UsageError
from pisr_ros.postprocess.panoptic_deeplab import PostprocessConfig
from pisr_ros.taxonomy import CLASSES, TRAIN_TO_LABEL

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
PANOPTIC_JSON = "panoptic.json"
PANOPTIC_DIR = "panoptic"  # --pred-json without .json: the evaluators' default folder
SEMANTIC_DIR = "semantic"
PANOPTIC_SUFFIX = "_panoptic.png"
SEMANTIC_SUFFIX = "_labelIds.png"

_EPILOG = """\
examples:
  pisr-ros predict --model runs/light/final.pt --images data/cityscapes/leftImg8bit/val --out preds/val
  pisr-ros evaluate --gt-json data/cityscapes/gtFine/cityscapes_panoptic_val.json \\
      --pred-json preds/val/panoptic.json \\
      --gt-semantic data/cityscapes/gtFine/val --pred-semantic preds/val/semantic
"""


def find_images(folder: str | Path) -> list[tuple[str, Path]]:
    """(image_id, path) of the images under ``folder`` (or of one image file), sorted by id.

    Where ``*_leftImg8bit.png`` files exist only they count, so pointing at a Cityscapes root
    does not also pick up its label PNGs.
    """
    folder = Path(folder)
    if folder.is_file():
        files = [folder]
    elif folder.is_dir():
        files = sorted(folder.rglob(f"*{LEFT_IMG_SUFFIX}"))
        if not files:
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    else:
        raise UsageError(f"--images {folder}: no such file or directory")
    if not files:
        raise UsageError(f"no images (*{LEFT_IMG_SUFFIX}, or any {'/'.join(IMAGE_EXTENSIONS)}) under {folder}")
    seen: dict[str, Path] = {}
    for p in files:
        image_id = p.name[: -len(LEFT_IMG_SUFFIX)] if p.name.endswith(LEFT_IMG_SUFFIX) else p.stem
        if image_id in seen:
            raise UsageError(f"two images have the id {image_id!r}: {seen[image_id]} and {p}; "
                             "image ids name the output files and must be unique")
        seen[image_id] = p
    return sorted(seen.items())


def categories() -> list[dict]:
    """COCO panoptic categories of the 19 training classes, by Cityscapes labelId."""
    return [{"id": c.label_id, "name": c.name, "isthing": int(c.is_thing), "color": list(c.color),
             "supercategory": "thing" if c.is_thing else "stuff"} for c in CLASSES]


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise UsageError(f"cannot write {path}")


def write_predictions(model, images: list[tuple[str, Path]], out: str | Path,
                      input_size: tuple[int, int] | None = None,
                      cfg: PostprocessConfig = PostprocessConfig(), progress: bool = True) -> dict:
    """Predict ``images`` (from ``find_images``) with a torch model in eval mode and write the
    files listed in the module docstring. Returns paths and seconds per image."""
    from tqdm import tqdm

    from pisr_ros.data.dataset import read_rgb
    from pisr_ros.inference.torch_predict import predict_image_and_semantic
    from pisr_ros.panoptic import to_cityscapes_panoptic

    out = Path(out)
    pan_dir, sem_dir = out / PANOPTIC_DIR, out / SEMANTIC_DIR
    pan_dir.mkdir(parents=True, exist_ok=True)
    sem_dir.mkdir(parents=True, exist_ok=True)
    annotations, image_entries = [], []
    model_seconds = 0.0
    for image_id, path in tqdm(images, desc="predict", unit="img", disable=not progress):
        rgb = read_rgb(path)
        t0 = time.perf_counter()
        result, semantic = predict_image_and_semantic(model, rgb, input_size, cfg)
        model_seconds += time.perf_counter() - t0
        png, segments = to_cityscapes_panoptic(result.id_map)
        file_name = image_id + PANOPTIC_SUFFIX
        _write_png(pan_dir / file_name, cv2.cvtColor(png, cv2.COLOR_RGB2BGR))
        _write_png(sem_dir / (image_id + SEMANTIC_SUFFIX), TRAIN_TO_LABEL[semantic])
        annotations.append({"image_id": image_id, "file_name": file_name, "segments_info": segments})
        image_entries.append({"id": image_id, "file_name": path.name,
                              "height": int(rgb.shape[0]), "width": int(rgb.shape[1])})
    json_path = out / PANOPTIC_JSON
    with open(json_path, "w") as f:
        json.dump({"annotations": annotations, "images": image_entries, "categories": categories()}, f)
    return {"json": json_path, "panoptic": pan_dir, "semantic": sem_dir, "images": len(images),
            "seconds_per_image": model_seconds / max(1, len(images))}


def parse_size(text: str, option: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"{option} must be HEIGHTxWIDTH in pixels, like 512x1024; got {text!r}")
    h, w = int(parts[0]), int(parts[1])
    if h < 32 or w < 32:
        raise UsageError(f"{option} {text}: height and width must be at least 32 pixels")
    return h, w


def load_model(path: str | Path, device: str = "auto"):
    """(model in eval mode on ``device``, spec) of a ``pisr-ros train`` checkpoint."""
    import torch

    from pisr_ros.models.spec import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no model at {path}: `pisr-ros train --config config/models/<model>.yaml "
                         "--data <cityscapes root> --out DIR` writes DIR/final.pt (and DIR/last.pt)")
    if path.suffix != ".pt":
        raise UsageError(f"--model {path}: expected a PyTorch checkpoint (.pt) written by `pisr-ros train`")
    model, spec = load_checkpoint(path)
    # NHWC weights make oneDNN pick its faster depthwise kernels (the input follows the weights).
    return model.to(resolve_device(device), memory_format=torch.channels_last), spec


def resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available here; use --device cpu")
    return torch.device(device)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (__doc__ or "").split("\n\n")[0].replace("``", "")
    parser.epilog = _EPILOG
    parser.add_argument("--model", required=True, metavar="M", help="checkpoint (.pt) written by `pisr-ros train`")
    parser.add_argument("--images", required=True, metavar="DIR",
                        help="folder searched recursively for *_leftImg8bit.png (else any png/jpg), or one image")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--size", metavar="HxW", default=None,
                        help="network input size (default: the model's input_size, e.g. 512x1024)")
    d = PostprocessConfig()
    parser.add_argument("--center-threshold", type=float, default=d.center_threshold,
                        help=f"minimum center heatmap value (default: {d.center_threshold})")
    parser.add_argument("--nms-kernel", type=int, default=d.nms_kernel,
                        help=f"center NMS window in input pixels, odd (default: {d.nms_kernel})")
    parser.add_argument("--top-k", type=int, default=d.top_k, help=f"most centers per image (default: {d.top_k})")
    parser.add_argument("--stuff-area", type=int, default=d.stuff_area,
                        help=f"smallest stuff region kept, in pixels of a 1024x2048 frame (default: {d.stuff_area})")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N (default: auto)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help=f"torch CPU threads (default: all cores, here {os.cpu_count()})")


def postprocess_config(args: argparse.Namespace) -> PostprocessConfig:
    if args.nms_kernel < 1 or args.nms_kernel % 2 == 0:
        raise UsageError(f"--nms-kernel must be an odd number >= 1, got {args.nms_kernel}")
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    return PostprocessConfig(center_threshold=args.center_threshold, nms_kernel=args.nms_kernel,
                             top_k=args.top_k, stuff_area=args.stuff_area)


def main(args: argparse.Namespace) -> int:
    import torch

    cfg = postprocess_config(args)
    size = parse_size(args.size, "--size") if args.size else None
    images = find_images(args.images)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    model, spec = load_model(args.model, args.device)
    written = write_predictions(model, images, args.out, size or tuple(spec.input_size), cfg)
    print(f"{written['images']} images -> {written['json']} ({written['panoptic']}/, {written['semantic']}/); "
          f"model {spec.name} at {'x'.join(map(str, size or spec.input_size))}, "
          f"{1000 * written['seconds_per_image']:.0f} ms per image (network + post-processing)")
    return 0
