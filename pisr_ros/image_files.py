"""Camera images on disk: which files under a folder are the images to process, their ids, and
reading one.

``image_id`` is the Cityscapes id (``frankfurt_000000_000294``) for ``*_leftImg8bit.png`` files,
else the file's name without extension, so predictions pair with Cityscapes ground truth by id.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pisr_ros.cityscapes_layout import LEFT_IMG_SUFFIX
from pisr_ros.errors import UsageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


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


def read_rgb(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB of an image file; UsageError when it cannot be read."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UsageError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
