"""The training loop on tiny synthetic data: it learns, it resumes exactly, the command's outputs."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pisr_ros import cli
from pisr_ros.data import synth
from pisr_ros.models.spec import load_checkpoint
from pisr_ros.training.train import TrainOptions, poly_lr, train

SIZE = (64, 128)
TINY_SPEC = """\
name: tiny
input_size: [64, 128]
backbone: {name: mobilenet, width: 8, stages: [[1, 8, 1, 2], [2, 8, 1, 2], [2, 16, 1, 2], [2, 16, 1, 2]]}
semantic_decoder: {aspp_channels: 16, aspp_dilations: [1, 2, 3], project_channels: [8, 8], channels: 16, kernel_size: 3}
instance_decoder: {aspp_channels: 16, aspp_dilations: [1, 2, 3], project_channels: [8, 8], channels: 16, kernel_size: 3}
heads: {semantic_channels: 16, center_channels: 8, offset_channels: 8, kernel_size: 3}
pisr: {top_k: 4, channels: 16, key_channels: 8, value_channels: 16, out_channels: 8, reweight_hidden: 8}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cs")
    synth.generate(root, "train", 2, SIZE, seed=11, workers=1)
    return root


@pytest.fixture(scope="module")
def data_with_val(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("csv")
    synth.generate(root, "train", 2, SIZE, seed=12, workers=1)
    synth.generate(root, "val", 2, SIZE, seed=12, workers=1)
    return root


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


def _opts(spec_file, data, out, **kw) -> TrainOptions:
    base = dict(config=str(spec_file), data=str(data), out=str(out), iters=6, batch_size=2, crop_size=(48, 96),
                workers=0, threads=1, progress=False, seed=4)
    base.update(kw)
    return TrainOptions(**base)


def test_poly_schedule():
    assert poly_lr(0, 100, 1.0, warmup=10) == pytest.approx(0.01)
    assert poly_lr(5, 100, 1.0, warmup=10) == pytest.approx(0.01 + 0.99 * 0.5)
    assert poly_lr(10, 100, 1.0, warmup=10) == pytest.approx(0.9 ** 0.9)
    assert poly_lr(100, 100, 1.0, warmup=10) == 0.0
    assert poly_lr(50, 100, 1.0, warmup=0) == pytest.approx(0.5 ** 0.9)


def test_overfitting_two_images_lowers_the_loss(spec_file, data, tmp_path):
    # No random scaling and the whole image as the crop: the same two samples every time
    # (up to flips), so the loss can only go down if the loop learns.
    result = train(_opts(spec_file, data, tmp_path / "run", iters=20, crop_size=SIZE, scale_range=(1.0, 1.0),
                         lr=3e-3, warmup=0))
    losses = result["losses"]
    assert len(losses) == 20
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, losses


def test_resume_gives_the_uninterrupted_run(spec_file, data, tmp_path):
    whole = train(_opts(spec_file, data, tmp_path / "whole"))
    paused = train(_opts(spec_file, data, tmp_path / "parts", stop_at=3))
    assert paused["iteration"] == 3
    assert not (tmp_path / "parts" / "final.pt").exists()
    resumed = train(_opts(spec_file, data, tmp_path / "parts", resume=True))
    assert resumed["iteration"] == 6
    assert paused["losses"] + resumed["losses"] == pytest.approx(whole["losses"], rel=1e-5)

    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "parts" / "last.pt", weights_only=True)
    assert a["extra"]["iteration"] == b["extra"]["iteration"] == 6
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    sa, sb = a["extra"]["optimizer"]["state"], b["extra"]["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert int(sa[i]["step"]) == int(sb[i]["step"]) == 6
        torch.testing.assert_close(sb[i]["exp_avg_sq"], sa[i]["exp_avg_sq"], rtol=1e-4, atol=1e-10)
    with open(tmp_path / "parts" / "log.csv") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == list(range(1, 7))


def test_train_command_end_to_end(spec_file, data_with_val, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--config", str(spec_file), "--data", str(data_with_val), "--out", str(out),
            "--iters", "3", "--batch-size", "2", "--crop", "48x96", "--workers", "1", "--threads", "1"]
    assert cli.main(argv) == 0
    for name in ("last.pt", "final.pt", "log.csv", "val_metrics.json"):
        assert (out / name).is_file(), name
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["iteration"] for r in rows] == ["1", "2", "3"]
    assert {"lr", "loss", "semantic", "center", "offset", "semantic_aux", "seconds"} <= set(rows[0])
    metrics = json.loads((out / "val_metrics.json").read_text())
    assert metrics["iteration"] == 3
    assert {"All", "Things", "Stuff", "per_class", "semantic"} <= set(metrics)
    assert 0 <= metrics["semantic"]["averageScoreClasses"] <= 1
    # PQ is cityscapesscripts' own on the val predictions the run wrote.
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    gt = data_with_val / "gtFine"
    expected = evaluatePanoptic(str(gt / "cityscapes_panoptic_val.json"), str(gt / "cityscapes_panoptic_val"),
                                str(out / "val" / "panoptic.json"), str(out / "val" / "panoptic"),
                                str(tmp_path / "reference.json"))
    for group in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq"):
            assert metrics[group][key] == pytest.approx(expected[group][key], abs=1e-9), (group, key)
    model, spec = load_checkpoint(out / "final.pt")  # weights_only=True inside
    assert spec.name == "tiny" and not model.training
    assert "mIoU" in capsys.readouterr().out

    # An existing run is not overwritten by accident, and --resume needs a run.
    assert cli.main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    argv_new = [a if a != str(out) else str(tmp_path / "fresh") for a in argv] + ["--resume"]
    assert cli.main(argv_new) == 2


@pytest.mark.slow
def test_two_processes_under_torchrun(spec_file, data, tmp_path):
    """DDP on CPU (gloo): same command, two processes, one log and one set of checkpoints."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pisr_ros.cli", "train", "--config", str(spec_file), "--data", str(data), "--out", str(out),
           "--iters", "2", "--batch-size", "1", "--crop", "48x96", "--workers", "0", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "log.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (out / "final.pt").is_file()
    assert proc.stdout.count("training tiny") == 1  # only rank 0 speaks


class _CentersAt(torch.nn.Module):
    """A "model" whose center head is 1 exactly at the cells of the ground-truth centers of the
    frames it is shown, in order, and 0 elsewhere (plus ``extra`` spurious peaks per frame)."""

    def __init__(self, heats):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.heats = list(heats)

    def forward(self, x):
        return {"center": self.heats.pop(0)[None, None] + 0 * self.w}


def test_instance_signals_of_a_perfect_and_a_noisy_center_head(data_with_val):
    from pisr_ros import cityscapes_layout as layout
    from pisr_ros.data.augment import resize_sample
    from pisr_ros.data.dataset import read_sample
    from pisr_ros.data.targets import instance_centers
    from pisr_ros.training.instance_signals import instance_signals

    ids = layout.list_split(data_with_val, "val")

    class Spec:
        input_size, pixel_mean, pixel_std = SIZE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def heats(extra: bool):
        out, n = [], 0
        for image_id in ids:
            s = resize_sample(read_sample(layout.image_paths(data_with_val, "val", image_id)), SIZE)
            centers, _, _ = instance_centers(s.instance_ids)
            heat = torch.zeros(SIZE[0] // 4, SIZE[1] // 4)
            for y, x in (centers // 4).astype(int):
                heat[y, x] = 1.0
            if extra:  # a peak in a corner cell far from any center, when there is one
                heat[0, 0] = max(heat[0, 0].item(), 0.5)
            out.append(heat)
            n += len(centers)
        return out, n

    perfect, n = heats(False)
    assert n > 0
    got = instance_signals(_CentersAt(perfect), Spec, data_with_val, "val", frames=len(ids))
    assert got["heat_at_centers"] == 1.0 and got["centers_found"] == 1.0 and got["peak_precision"] <= 1.0
    assert got["instances_per_frame"] == n / len(ids)
    # Adjacent centers can share a 3x3 NMS window, so peaks can be fewer than instances, never more.
    assert got["peaks_per_frame"] <= got["instances_per_frame"]
    noisy, _ = heats(True)
    got2 = instance_signals(_CentersAt(noisy), Spec, data_with_val, "val", frames=len(ids))
    assert got2["peaks_per_frame"] >= got["peaks_per_frame"]
    assert got2["heat_elsewhere"] >= got["heat_elsewhere"]


def test_validation_logs_the_instance_signals_and_uses_val_data(spec_file, data, data_with_val, tmp_path):
    out = tmp_path / "run"
    train(_opts(spec_file, data, out, iters=4, val_every=2, val_data=str(data_with_val), thing_crops=1.0,
                save_minutes=1e-6))
    with open(out / "val_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["iteration"] for r in rows] == ["2", "4"]  # every val_every, and at the end
    for key in ("pq_things", "heat_at_centers", "peaks_per_frame", "instances_per_frame", "centers_found"):
        assert all(r[key] != "" for r in rows), key
    assert float(rows[0]["instances_per_frame"]) > 0  # the val split of --val-data, not --data (no val)
    assert torch.load(out / "last.pt", weights_only=True)["extra"]["iteration"] == 4
