"""A replay's predictions on disk: ``<out>/predictions/`` in the Cityscapes format
(pisr_ros.evaluation.cityscapes_files), the files ``pisr-ros evaluate`` reads."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from pisr_ros.cityscapes_layout import LEFT_IMG_SUFFIX
from pisr_ros.evaluation.cityscapes_files import CityscapesWriter, check_id_map
from pisr_ros.panoptic import semantic_of

PREDICTIONS_DIR = "predictions"


def open_predictions(out_dir: str | Path) -> CityscapesWriter:
    """The writer of ``<out_dir>/predictions/``, its files of an earlier run removed first (a
    replay's scores cover exactly the frames it wrote)."""
    writer = CityscapesWriter(Path(out_dir) / PREDICTIONS_DIR)
    for d in (writer.panoptic_dir, writer.semantic_dir):
        if d.is_dir():
            shutil.rmtree(d)
    writer.panoptic_dir.mkdir(parents=True)
    return writer


def add_frame(writer: CityscapesWriter, image_id: str, id_map: np.ndarray) -> None:
    """One frame's id map; its labelIds are the class of each pixel's panoptic segment (the only
    semantics a node's labels carry)."""
    check_id_map(image_id, id_map)
    writer.add(image_id, image_id + LEFT_IMG_SUFFIX, id_map, semantic_of(id_map))
