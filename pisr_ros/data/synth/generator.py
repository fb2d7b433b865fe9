"""A whole split: its scenes rendered in worker processes, the panoptic conversion, the contact
sheet, and the checks of what ``pisr-ros synth`` was asked for."""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import cv2

from pisr_ros import cityscapes_layout as layout
from pisr_ros.data.synth.files import make_contact_sheet, write_png, write_scene
from pisr_ros.data.synth.panoptic_gt import convert_panoptic
from pisr_ros.data.synth.split import CITIES, DEFAULT_SIZE, image_id_of
from pisr_ros.errors import UsageError
from pisr_ros.workers import process_pool

CONTACT_SHEET_SCENES = 16


def _write_job(job):
    root, split, index, seed, size, thumb_width = job
    return index, write_scene(root, split, index, seed, size, thumb_width)


def generate(
    out: str | Path,
    split: str,
    num: int,
    size=DEFAULT_SIZE,
    seed: int = 0,
    workers: int | None = None,
    contact_sheet: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Writes ``num`` scenes of ``split`` under ``out`` in the Cityscapes layout, then the panoptic
    ground truth. Returns a summary: image ids and seconds spent rendering and converting."""
    from tqdm import tqdm

    _check(out, split, num, size, seed, workers, overwrite, contact_sheet)
    out = Path(out)
    workers = max(1, min(workers or os.cpu_count() or 1, num))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {out}: {exc.strerror}") from exc
    for d in layout.split_dirs(out, split):
        shutil.rmtree(d, ignore_errors=True)
    layout.panoptic_json(out, split).unlink(missing_ok=True)
    thumb_width = 256 if contact_sheet else 0
    jobs = [(str(out), split, i, seed, tuple(size), thumb_width if i < CONTACT_SHEET_SCENES else 0)
            for i in range(num)]
    thumbs = {}
    t0 = time.perf_counter()
    with tqdm(total=num, desc=f"synth {split}", unit="img", disable=not progress) as bar:
        with contextlib.ExitStack() as stack:
            if workers == 1:
                results = map(_write_job, jobs)
            else:
                results = stack.enter_context(process_pool(workers)).imap_unordered(_write_job, jobs)
            for index, thumb in results:
                thumbs[index] = thumb
                bar.update()
    t1 = time.perf_counter()
    with tqdm(total=num, desc="panoptic (cityscapesscripts)", unit="img", disable=not progress) as bar:
        convert_panoptic(out, split, workers, progress=bar.update)
    t2 = time.perf_counter()
    if contact_sheet:
        pairs = [(image_id_of(split, i), *thumbs[i]) for i in sorted(thumbs) if thumbs[i] is not None]
        Path(contact_sheet).parent.mkdir(parents=True, exist_ok=True)
        write_png(Path(contact_sheet), cv2.cvtColor(make_contact_sheet(pairs), cv2.COLOR_RGB2BGR))
    return {"image_ids": [image_id_of(split, i) for i in range(num)], "render_s": t1 - t0, "panoptic_s": t2 - t1}


def parse_size(text: str) -> tuple[int, int]:
    """``"1024x2048"`` -> (1024, 2048): height x width, as Cityscapes quotes it."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"--size must be HEIGHTxWIDTH in pixels, like 1024x2048; got {text!r}")
    h, w = int(parts[0]), int(parts[1])
    if h < 32 or w < 32 or h > 8192 or w > 8192:
        raise UsageError(f"--size {text}: height and width must be between 32 and 8192 pixels")
    return h, w


def _check(out, split, num, size, seed, workers, overwrite, contact_sheet=None):
    if split not in CITIES:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(CITIES)}")
    if num < 1:
        raise UsageError(f"--num must be at least 1, got {num}")
    limit = 1_000_000 * len(CITIES[split])
    if num > limit:
        raise UsageError(f"--num {num} is more than the file names can hold ({limit})")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    h, w = size
    if h < 32 or w < 32:
        raise UsageError(f"size {h}x{w} is too small; use at least 32x32")
    if contact_sheet is not None and not str(contact_sheet).lower().endswith(".png"):
        raise UsageError(f"--contact-sheet must name a .png file, got {contact_sheet}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if not overwrite:
        taken = [d for d in layout.split_dirs(out, split) if d.is_dir() and any(d.iterdir())]
        if taken or layout.panoptic_json(out, split).exists():
            raise UsageError(
                f"{out} already holds a {split!r} split; pass --overwrite to replace it or choose another --out"
            )
