"""The panoptic ground truth of a split, made by cityscapesscripts' own converter (in parallel
shards, joined into exactly what one call would write)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

from pisr_ros import cityscapes_layout as layout
from pisr_ros.errors import UsageError
from pisr_ros.workers import process_pool


def convert_panoptic(root: str | Path, split: str, workers: int = 1, progress=None) -> Path:
    """Panoptic PNGs and json of ``split`` made by cityscapesscripts' ``convert2panoptic``.

    The converter walks the images one by one in a single process, which at 1024x2048 costs more
    than rendering them. So each worker runs the converter itself on a shard of the images (a
    folder of links to their instanceIds files), and the shards' json files are joined in the
    converter's own sorted order and format: the result is byte-identical to one call on the
    whole split.
    """
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    root = Path(root)
    gt = root / "gtFine"
    files = sorted(str(p) for p in gt.glob(f"{split}/*/*_instanceIds.png"))
    if not files:
        raise UsageError(f"no *_instanceIds.png under {gt / split}; nothing to convert")
    out_dir = layout.panoptic_dir(root, split)
    out_json = layout.panoptic_json(root, split)
    workers = max(1, min(workers, len(files)))
    if workers == 1:
        with contextlib.redirect_stdout(io.StringIO()):
            convert2panoptic(cityscapesPath=str(gt), outputFolder=str(gt), useTrainId=False, setNames=[split])
        if progress is not None:
            progress(len(files))
        return out_json
    scratch = gt / f".panoptic_{split}_shards"
    shutil.rmtree(scratch, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = [files[i::workers] for i in range(workers)]
    jobs = []
    for i, shard in enumerate(shards):
        shard_root = scratch / str(i)
        for f in shard:
            link = shard_root / split / Path(f).parent.name / Path(f).name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(f), link)
        jobs.append((str(shard_root), str(out_dir), split))
    try:
        with process_pool(workers) as pool:
            for n in pool.imap_unordered(_convert_shard, jobs):
                if progress is not None:
                    progress(n)
        merged = None
        for shard_root, _, _ in jobs:
            with open(Path(shard_root) / f"cityscapes_panoptic_{split}.json") as f:
                part = json.load(f)
            if merged is None:
                merged = part
            else:
                merged["images"] += part["images"]
                merged["annotations"] += part["annotations"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # The converter lists images in the sorted order of their files; restore it across shards.
    rank = {Path(f).name.replace("_gtFine_instanceIds.png", ""): i for i, f in enumerate(files)}
    merged["images"].sort(key=lambda im: rank[im["id"]])
    merged["annotations"].sort(key=lambda a: rank[a["image_id"]])
    with open(out_json, "w") as f:
        json.dump(merged, f, sort_keys=True, indent=4)
    return out_json


def _convert_shard(job) -> int:
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    shard_root, out_dir, split = job
    # The converter writes its json and PNG folder inside the shard; the PNGs then join the others.
    with contextlib.redirect_stdout(io.StringIO()):
        convert2panoptic(cityscapesPath=shard_root, outputFolder=shard_root, useTrainId=False, setNames=[split])
    produced = Path(shard_root) / f"cityscapes_panoptic_{split}"
    n = 0
    for png in sorted(produced.iterdir()):
        shutil.move(str(png), os.path.join(out_dir, png.name))
        n += 1
    return n
