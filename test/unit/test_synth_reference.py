"""`pisr-ros synth` writes what it wrote before: a small fixed run against the files of the same
run kept in test/data/synth_reference (written by the generator as it was before it was split
into the pisr_ros/data/synth package, synth.py as of commit 03c60c1).

The labels (labelIds, instanceIds, gtFine_color, the panoptic PNGs and json) must be equal,
pixel for pixel and entry for entry: they are painted from float64 coordinates rounded to a
1/16-pixel grid, the same with and without numpy's and OpenCV's SIMD paths (checked on this
machine with NPY_DISABLE_CPU_FEATURES / OPENCV_CPU_DISABLE). The camera image also goes
through float32 blur, resize and gamma, whose last bit OpenCV's SIMD kernels may round
differently on another CPU (seen: 1 pixel of a 256x512 image off by 1 with OpenCV's SIMD
off), so it may differ by 1 in a few pixels and nowhere by more. Files are compared decoded,
so a different PNG compressor (another libpng or zlib) does not matter.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from pisr_ros import cli

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "synth_reference"
ARGS = ["--split", "val", "--num", "3", "--size", "64x128", "--seed", "7"]


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_synth_output_equals_the_reference_run(tmp_path):
    out = tmp_path / "synth"
    assert cli.main(["synth", "--out", str(out), *ARGS, "--workers", "2"]) == 0
    ours = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    theirs = sorted(str(p.relative_to(REFERENCE)) for p in REFERENCE.rglob("*") if p.is_file())
    assert ours == theirs
    images = [name for name in ours if name.endswith("_leftImg8bit.png")]
    assert len(images) == 3
    for name in ours:
        if name.endswith(".json"):
            assert json.loads((out / name).read_text()) == json.loads((REFERENCE / name).read_text()), name
        elif name in images:
            a, b = _pixels(out / name).astype(np.int16), _pixels(REFERENCE / name).astype(np.int16)
            assert a.shape == b.shape == (64, 128, 3), name
            diff = np.abs(a - b)
            assert diff.max() <= 1 and (diff > 0).mean() <= 0.002, (name, int(diff.max()), float((diff > 0).mean()))
        else:
            np.testing.assert_array_equal(_pixels(out / name), _pixels(REFERENCE / name), err_msg=name)
