"""`make demo`, the README's main job (pisr_ros.ros.demo): it runs end to end, live scores what
offline scores, and its log holds no traceback."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pisr_ros.ros.demo import GridWatcher

ROOT = Path(__file__).resolve().parents[2]
# What the Makefile's demo target runs (MODEL there).
MODEL = ROOT / "models" / "pd_light_pisr_residual_synth.pt"


def test_make_demo_takes_another_model():
    def command(*args):
        # Under `make test` this make is nested and prints "Entering directory" lines too.
        done = subprocess.run(["make", "--no-print-directory", "-n", "demo", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        return next(line for line in done.stdout.splitlines() if "pisr_ros.ros.demo" in line)

    assert command().endswith("--model " + str(MODEL.relative_to(ROOT)))
    assert command("MODEL=models/yolo.pt").endswith("--model models/yolo.pt")


def test_demo_refuses_a_missing_model_before_making_scenes(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pisr_ros.ros.demo", "--out", str(tmp_path / "demo"),
                           "--model", "no_such_model.pt"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no_such_model.pt" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "demo").exists()


def test_grid_watcher_closes_without_a_traceback(monkeypatch):
    # An exception that ends a thread reaches threading.excepthook, which prints the traceback.
    escaped = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    for _ in range(3):  # the spin thread was inside spin_once at shutdown in most runs, not all
        watcher = GridWatcher(64, 32)
        watcher.close()
        assert not watcher.thread.is_alive()
    assert [e.exc_type.__name__ for e in escaped] == []


def yolo_checkpoint(path: Path) -> Path:
    """An untrained YOLO-Panoptic at a small input: the other family, through every stage."""
    import dataclasses

    import torch

    from pisr_ros.families import get_family
    from pisr_ros.models.spec import load_spec, save_checkpoint

    spec = dataclasses.replace(load_spec(ROOT / "config" / "models" / "yolo_panoptic_light.yaml"), input_size=(128, 256))
    torch.manual_seed(0)
    save_checkpoint(path, get_family("yolo_panoptic").build_model(spec), spec)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("family", ["panoptic_deeplab", "yolo_panoptic"])
def test_demo_on_a_few_small_frames(tmp_path, family):
    """The demo's code path as `make demo` runs it (its own DDS domain, the shipped model or an
    untrained YOLO-Panoptic), on 3 frames of 256x512 instead of 20 of 1024x2048."""
    out = tmp_path / "demo"
    model = MODEL if family == "panoptic_deeplab" else yolo_checkpoint(tmp_path / "yolo.pt")
    done = subprocess.run([sys.executable, "-m", "pisr_ros.ros.dds_domain", sys.executable, "-m", "pisr_ros.ros.demo",
                           "--out", str(out), "--frames", "3", "--size", "256x512", "--model", str(model)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "Traceback" not in log and "Exception" not in log, log[-3000:]

    live = json.loads((out / "live" / "metrics.json").read_text())
    offline = json.loads((out / "offline" / "metrics.json").read_text())
    for doc in (live, offline):
        assert (doc["counts"]["sent"], doc["counts"]["received"], doc["counts"]["dropped"]) == (3, 3, 0)
        assert doc["counts"]["scored"] == 3
    for group in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq"):
            assert live["panoptic"][group][key] == pytest.approx(offline["panoptic"][group][key], abs=1e-12)
    assert live["semantic"]["averageScoreClasses"] == pytest.approx(offline["semantic"]["averageScoreClasses"], abs=1e-12)

    # The live scores are cityscapesscripts' own on the files the live stage wrote.
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    gt = out / "data" / "gtFine"
    expected = evaluatePanoptic(str(gt / "cityscapes_panoptic_val.json"), str(gt / "cityscapes_panoptic_val"),
                                str(out / "live" / "predictions" / "panoptic.json"),
                                str(out / "live" / "predictions" / "panoptic"), str(tmp_path / "reference.json"))
    for group in ("All", "Things", "Stuff"):
        assert live["panoptic"][group]["pq"] == pytest.approx(expected[group]["pq"], abs=1e-9), group

    summary = (out / "summary.md").read_text()
    assert "Live and offline scores are **identical**" in summary
    # The bag plays only once both nodes have matched each other: the grid sees the frames.
    assert (out / "grid.png").is_file() and "grid.png" in summary, log[-3000:]
    # Overlays are drawn only for a subscriber the node has discovered: the first frame's may come
    # before that on a busy machine (replay-eval says so in a note); the demo still shows some.
    assert 1 <= len(list((out / "live" / "overlays").glob("overlay_*.png"))) <= 3, log[-3000:]
