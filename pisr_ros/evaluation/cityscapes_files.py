"""The one writer of predictions in the Cityscapes/COCO panoptic format, which ``pisr-ros
evaluate`` and cityscapesscripts' ``evaluatePanoptic`` / ``evaluateImgLists`` read:

  panoptic.json                          COCO panoptic: annotations (image_id, file_name,
                                         segments_info), images, categories (labelIds)
  panoptic/<image_id>_panoptic.png       PNG id = R + 256 G + 256^2 B, 0 = void
  semantic/<image_id>_labelIds.png       semantic trainIds written as Cityscapes labelIds (uint8)

    writer = CityscapesWriter(out)
    writer.add(image_id, "x_leftImg8bit.png", result.id_map, result.semantic_head)
    json_path = writer.close()

``pisr-ros predict`` (the semantic head's argmax), replay-eval (the class of each pixel's panoptic
segment, the only semantics a node's labels carry) and the int8 check (no semantics) all write
through it, so their files pair and score alike.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from pisr_ros.errors import UsageError
from pisr_ros.panoptic import to_cityscapes_panoptic
from pisr_ros.taxonomy import CLASSES, TRAIN_TO_LABEL

PANOPTIC_JSON = "panoptic.json"
PANOPTIC_DIR = "panoptic"  # --pred-json without .json: the evaluators' default folder
SEMANTIC_DIR = "semantic"
PANOPTIC_SUFFIX = "_panoptic.png"
SEMANTIC_SUFFIX = "_labelIds.png"


def categories() -> list[dict]:
    """COCO panoptic categories of the 19 training classes, by Cityscapes labelId."""
    return [{"id": c.label_id, "name": c.name, "isthing": int(c.is_thing), "color": list(c.color),
             "supercategory": "thing" if c.is_thing else "stuff"} for c in CLASSES]


def check_id_map(image_id: str, id_map) -> None:
    """ValueError unless ``id_map`` is an HxW int32 array, what every writer here expects."""
    if not isinstance(id_map, np.ndarray) or id_map.ndim != 2 or id_map.dtype != np.int32:
        got = f"{getattr(id_map, 'shape', '?')} {getattr(id_map, 'dtype', type(id_map).__name__)}"
        raise ValueError(f"id map of {image_id} must be HxW int32, got {got}")


def write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise UsageError(f"cannot write {path}")


class CityscapesWriter:
    """Prediction files under ``out``, one image at a time; ``close`` writes panoptic.json.

    Files already under ``out`` stay (a caller that wants a clean folder empties it first);
    an image id may be added once."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.panoptic_dir, self.semantic_dir = self.out / PANOPTIC_DIR, self.out / SEMANTIC_DIR
        self.json_path = self.out / PANOPTIC_JSON
        try:
            self.panoptic_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {self.panoptic_dir}: {exc.strerror}") from exc
        self.annotations: list[dict] = []
        self.images: list[dict] = []
        self.ids: list[str] = []  # in the order added
        self._seen: set[str] = set()

    def panoptic_png(self, image_id: str) -> Path:
        return self.panoptic_dir / (image_id + PANOPTIC_SUFFIX)

    def semantic_png(self, image_id: str) -> Path:
        return self.semantic_dir / (image_id + SEMANTIC_SUFFIX)

    def add(self, image_id: str, file_name: str, id_map: np.ndarray, semantic: np.ndarray | None,
            height: int | None = None, width: int | None = None, scores: Mapping[int, float] | None = None) -> None:
        """``id_map``: HxW int32 panoptic ids (trainId*1000+k, -1 void); ``semantic``: HxW
        trainIds (255 void) or None to write no labelIds file; ``file_name``: the camera image's,
        for the json's images list. ``height``/``width`` of the camera image default to the id
        map's. ``scores``: id map id -> confidence, written as the segments' ``score``."""
        check_id_map(image_id, id_map)
        if semantic is not None and np.shape(semantic) != id_map.shape:
            raise ValueError(f"semantic map of {image_id} is {np.shape(semantic)}, its id map {id_map.shape}")
        if image_id in self._seen:
            raise ValueError(f"two predictions for image {image_id}")
        png, segments = to_cityscapes_panoptic(id_map, scores)
        write_png(self.panoptic_png(image_id), cv2.cvtColor(png, cv2.COLOR_RGB2BGR))
        if semantic is not None:
            if not self.semantic_dir.is_dir():  # made on first use: no empty folder where none is written
                self.semantic_dir.mkdir(parents=True, exist_ok=True)
            write_png(self.semantic_png(image_id), TRAIN_TO_LABEL[semantic])
        self.annotations.append({"image_id": image_id, "file_name": self.panoptic_png(image_id).name,
                                 "segments_info": segments})
        self.images.append({"id": image_id, "file_name": file_name,
                            "height": int(height if height is not None else id_map.shape[0]),
                            "width": int(width if width is not None else id_map.shape[1])})
        self.ids.append(image_id)
        self._seen.add(image_id)

    def document(self) -> dict:
        """The panoptic.json document of what was added so far."""
        return {"annotations": self.annotations, "images": self.images, "categories": categories()}

    def close(self) -> Path:
        """Write panoptic.json (atomically: a reader never sees half of it) and return its path."""
        tmp = self.json_path.with_name(f".{PANOPTIC_JSON}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.document(), f)
            os.replace(tmp, self.json_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise UsageError(f"cannot write {self.json_path}: {exc.strerror}") from exc
        return self.json_path
