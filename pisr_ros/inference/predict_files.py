"""Predictions for images on disk, written in the Cityscapes format
(``pisr_ros.evaluation.cityscapes_files``) through a ``Predictor``: what `pisr-ros predict`
and training's validation both run, so that a model scores the same in both."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from pisr_ros.errors import UsageError


@dataclass
class Written:
    json: Path
    panoptic: Path
    semantic: Path
    images: int  # predicted and written
    seconds_per_image: float  # Predictor calls alone
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # unreadable images and why


def write_predictions(predictor, images: list[tuple[str, Path]], out: str | Path, progress: bool = True) -> Written:
    """Predict ``images`` (``pisr_ros.image_files.find_images``) and write them under ``out``.
    An image that cannot be read is skipped and listed in ``skipped``; UsageError when none can."""
    from tqdm import tqdm

    from pisr_ros.image_files import read_rgb
    from pisr_ros.evaluation.cityscapes_files import CityscapesWriter

    keep = predictor.keep_semantic_head
    predictor.keep_semantic_head = True  # the labelIds files are the semantic head's argmax
    try:
        writer = CityscapesWriter(out)
        skipped: list[tuple[Path, str]] = []
        seconds = 0.0
        for image_id, path in tqdm(images, desc="predict", unit="img", disable=not progress):
            try:
                rgb = read_rgb(path)
            except UsageError as exc:
                skipped.append((path, str(exc)))
                continue
            t0 = time.perf_counter()
            result = predictor(rgb)
            seconds += time.perf_counter() - t0
            writer.add(image_id, path.name, result.id_map, result.semantic_head,
                       scores={seg.id: seg.score for seg in result.segments if seg.is_thing})
    finally:
        predictor.keep_semantic_head = keep
    done = len(images) - len(skipped)
    if not done:
        raise UsageError(f"none of the {len(images)} images could be read (first: {skipped[0][1]}); "
                         "nothing written")
    return Written(writer.close(), writer.panoptic_dir, writer.semantic_dir, done, seconds / done, skipped)
