"""File names and paths of the Cityscapes layout, shared by the synthetic generator and the reader.

An image is named by its *image id*, ``<city>_<seq:06d>_<frame:06d>`` (``frankfurt_000000_000294``);
every file of that image lives under ``<root>/<kind>/<split>/<city>/`` and is named
``<image id>_<suffix>``. The panoptic ground truth that cityscapesscripts' ``createPanopticImgs``
writes sits beside the split folders: ``gtFine/cityscapes_panoptic_<split>.json`` and
``gtFine/cityscapes_panoptic_<split>/<image id>_gtFine_panoptic.png``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")

LEFT_IMG_SUFFIX = "_leftImg8bit.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_IDS_SUFFIX = "_gtFine_instanceIds.png"
COLOR_SUFFIX = "_gtFine_color.png"
PANOPTIC_SUFFIX = "_gtFine_panoptic.png"

# Real Cityscapes city names are single lower-case words, so the id splits cleanly on "_".
_IMAGE_ID = re.compile(r"^(?P<city>[a-z][a-z0-9]*)_(?P<seq>\d{6})_(?P<frame>\d{6})$")


def image_id(city: str, seq: int, frame: int) -> str:
    """``city_SSSSSS_FFFFFF``; raises ValueError for names the layout cannot hold."""
    if not 0 <= seq < 1_000_000 or not 0 <= frame < 1_000_000:
        raise ValueError(f"sequence and frame numbers take 6 digits, got {seq} and {frame}")
    out = f"{city}_{seq:06d}_{frame:06d}"
    if not _IMAGE_ID.match(out):
        raise ValueError(f"city names are lower-case letters and digits, got {city!r}")
    return out


def parse_image_id(name: str) -> tuple[str, int, int]:
    """(city, seq, frame) of an image id, or of any Cityscapes file name that starts with one."""
    stem = Path(name).name
    parts = stem.split("_")
    candidate = "_".join(parts[:3])
    m = _IMAGE_ID.match(candidate)
    if not m:
        raise ValueError(f"{name!r} does not start with a Cityscapes image id (city_SSSSSS_FFFFFF)")
    return m["city"], int(m["seq"]), int(m["frame"])


@dataclass(frozen=True)
class ImagePaths:
    """Every file of one image. The panoptic PNG exists only after the panoptic conversion."""

    image_id: str
    left_img: Path
    label_ids: Path
    instance_ids: Path
    color: Path
    panoptic: Path


def image_paths(root: str | Path, split: str, image_id_: str) -> ImagePaths:
    root = Path(root)
    city, _, _ = parse_image_id(image_id_)
    gt = root / "gtFine" / split / city
    return ImagePaths(
        image_id=image_id_,
        left_img=root / "leftImg8bit" / split / city / (image_id_ + LEFT_IMG_SUFFIX),
        label_ids=gt / (image_id_ + LABEL_IDS_SUFFIX),
        instance_ids=gt / (image_id_ + INSTANCE_IDS_SUFFIX),
        color=gt / (image_id_ + COLOR_SUFFIX),
        panoptic=panoptic_dir(root, split) / (image_id_ + PANOPTIC_SUFFIX),
    )


def panoptic_json(root: str | Path, split: str) -> Path:
    return Path(root) / "gtFine" / f"cityscapes_panoptic_{split}.json"


def panoptic_dir(root: str | Path, split: str) -> Path:
    return Path(root) / "gtFine" / f"cityscapes_panoptic_{split}"


def list_split(root: str | Path, split: str) -> list[str]:
    """Sorted image ids of ``split``, found by their ``leftImg8bit`` files."""
    folder = Path(root) / "leftImg8bit" / split
    return sorted(p.name[: -len(LEFT_IMG_SUFFIX)] for p in folder.glob(f"*/*{LEFT_IMG_SUFFIX}"))


def split_dirs(root: str | Path, split: str) -> list[Path]:
    """The folders that hold one split's files (what a fresh write of the split replaces)."""
    root = Path(root)
    return [root / "leftImg8bit" / split, root / "gtFine" / split, panoptic_dir(root, split)]
