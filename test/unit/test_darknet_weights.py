"""The Darknet weights reader and `pisr-ros import-darknet`. Real files cannot be downloaded
here, so the files are written below from the format's description (header; per convolution
in cfg order: BN beta, gamma, mean, variance -- or the bias -- then OIHW weights), with values
that are regenerated at check time, and read back. One test holds the reader to a published
fact: yolov3.weights is 248,007,048 bytes."""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from pisr_ros import cli
from pisr_ros.families import register, unregister
from pisr_ros.models.darknet import YoloV3
from pisr_ros.models.darknet_weights import read_yolov3
from pisr_ros.models.spec import SpecBase, read_checkpoint
from pisr_ros.models.warm_start import warm_start
from test_darknet import _executed_convs, yolov3_cfg_convolutions

YOLOV3_WEIGHTS_BYTES = 248_007_048  # pjreddie.com/media/files/yolov3.weights
DARKNET53_CONV74_BYTES = 162_482_580  # pjreddie.com/media/files/darknet53.conv.74
COCO_NAMES = ["person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck"]  # coco.names, first 8
CITYSCAPES_THINGS = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]  # trainIds 11-18


def layer_values(i, row):
    cin, cout, k, _, bn = row
    rng = np.random.default_rng(1000 + i)
    w = rng.standard_normal((cout, cin, k, k), dtype=np.float32)
    if not bn:
        return {"bias": rng.standard_normal(cout, dtype=np.float32), "weight": w}
    return {"beta": rng.standard_normal(cout, dtype=np.float32), "gamma": rng.standard_normal(cout, dtype=np.float32),
            "mean": rng.standard_normal(cout, dtype=np.float32), "var": rng.uniform(0.5, 2, cout).astype(np.float32),
            "weight": w}


def write_darknet(path, rows, version=(0, 2, 0), seen=32_013_312):
    major, minor, revision = version
    with open(path, "wb") as f:
        f.write(struct.pack("<iii", major, minor, revision))
        wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
        f.write(struct.pack("<q" if wide else "<i", seen))
        for i, row in enumerate(rows):
            for array in layer_values(i, row).values():  # dict order: the file's order
                f.write(array.astype("<f4").tobytes())
    return path


def check_loaded(model, rows):
    """Each convolution, in the order forward runs them, holds the values written for it."""
    executed = _executed_convs(model.eval(), torch.zeros(1, 3, 32, 32))
    bns = {id(m.conv): m.bn for m in model.modules() if hasattr(m, "bn")}
    for i, (conv, row) in enumerate(zip(executed, rows)):
        want = {k: torch.from_numpy(v) for k, v in layer_values(i, row).items()}
        assert torch.equal(conv.weight, want["weight"]), i
        if "bias" in want:
            assert torch.equal(conv.bias, want["bias"]), i
        else:
            bn = bns[id(conv)]
            for name, t in (("beta", bn.bias), ("gamma", bn.weight), ("mean", bn.running_mean), ("var", bn.running_var)):
                assert torch.equal(t, want[name]), (i, name)


def test_the_80_class_yolov3_consumes_exactly_the_published_file_size(tmp_path):
    model = YoloV3(num_classes=80)
    floats = sum(c.out_channels * (4 if bn is not None else 1) + c.weight.numel() for c, bn in model.convolutions())
    assert floats == (YOLOV3_WEIGHTS_BYTES - 20) / 4 == 62_001_757
    backbone = sum(c.out_channels * 4 + c.weight.numel() for c, _ in model.convolutions("backbone"))
    assert backbone == (DARKNET53_CONV74_BYTES - 20) / 4
    # And the reader accepts a file of exactly that size (sparse zeros behind a 0.2.0 header).
    path = tmp_path / "yolov3.weights"
    with open(path, "wb") as f:
        f.write(struct.pack("<iiiq", 0, 2, 0, 32_013_312))
        f.truncate(YOLOV3_WEIGHTS_BYTES)
    _, part, header = read_yolov3(path)
    assert (part, header.seen, header.nbytes) == ("full", 32_013_312, 20)


def test_full_file_round_trip_into_every_layer(tmp_path):
    rows = yolov3_cfg_convolutions(80)
    path = write_darknet(tmp_path / "yolov3.weights", rows)
    assert path.stat().st_size == YOLOV3_WEIGHTS_BYTES
    model, part, header = read_yolov3(path)
    assert (part, header.version, header.seen) == ("full", "0.2.0", 32_013_312)
    check_loaded(model, rows)


def test_backbone_file_with_int32_seen_fills_the_backbone_alone(tmp_path):
    rows = yolov3_cfg_convolutions(80)[:52]  # darknet53.conv.74: layers 0-73
    path = write_darknet(tmp_path / "darknet53.conv.74", rows, version=(0, 1, 0), seen=64_000)
    assert path.stat().st_size == DARKNET53_CONV74_BYTES - 4  # 16-byte header: seen is an int32 in 0.1
    model, part, header = read_yolov3(path)
    assert (part, header.nbytes, header.seen) == ("backbone", 16, 64_000)
    check_loaded(model, rows)
    for conv, bn in model.convolutions("detection"):  # as built: BN statistics untouched
        assert bn is None or (torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean)))


# ------------------------------------------------- import-darknet through a family holding YoloV3
@dataclass(frozen=True)
class DarknetToySpec(SpecBase):
    family: str = "darknet_toy"
    name: str = "darknet_toy"
    input_size: tuple[int, int] = (64, 64)
    pixel_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pixel_std: tuple[float, float, float] = (255.0, 255.0, 255.0)


class ToyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.detector = YoloV3(num_classes=8)
        self.semantic = nn.Conv2d(128, 19, 1)


class ToyFamily:
    name = "darknet_toy"
    spec_class = DarknetToySpec

    def build_model(self, spec):
        return ToyNet()


@pytest.fixture
def toy_spec(tmp_path):
    register(ToyFamily())
    path = tmp_path / "toy.yaml"
    path.write_text("family: darknet_toy\nname: darknet_toy\n")
    yield path
    unregister("darknet_toy")


def test_import_maps_coco_classes_and_train_init_from_takes_it(tmp_path, toy_spec, capsys):
    rows = yolov3_cfg_convolutions(80)
    weights = write_darknet(tmp_path / "yolov3.weights", rows)
    out = tmp_path / "init.pt"
    assert cli.main(["import-darknet", "--weights", str(weights), "--out", str(out), "--config", str(toy_spec)]) == 0
    state = read_checkpoint(out)["state_dict"]
    assert all(k.startswith("detector.") for k in state)
    outputs = [i for i, row in enumerate(rows) if not row[4]]  # the three linear output layers
    heads = [k[:-len(".weight")] for k in state if k.endswith(".out.weight")]
    assert len(outputs) == len(heads) == 3
    for i, head in zip(outputs, heads):
        written = layer_values(i, rows[i])
        for a in range(3):
            for field in range(5):  # box and objectness: as written
                assert torch.equal(state[f"{head}.bias"][a * 13 + field], torch.tensor(written["bias"][a * 85 + field]))
            for k, name in enumerate(CITYSCAPES_THINGS):
                coco = COCO_NAMES.index({"motorcycle": "motorbike", "rider": "person"}.get(name, name))
                src, dst = a * 85 + 5 + coco, a * 13 + 5 + k
                assert torch.equal(state[f"{head}.weight"][dst], torch.from_numpy(written["weight"][src])), name
                shift = -math.log(99) if name == "rider" else 0.0
                assert state[f"{head}.bias"][dst].item() == pytest.approx(written["bias"][src] + shift, abs=1e-5)
    # What `train --init-from` does with it: every Darknet tensor copied, the rest fresh.
    model = ToyNet()
    report = warm_start(model, state)
    assert len(report.copied) == len(state) and report.fresh == ["semantic.weight", "semantic.bias"]
    backbone = model.detector.backbone.stem
    assert torch.equal(backbone.conv.weight, torch.from_numpy(layer_values(0, rows[0])["weight"]))
    assert "backbone, neck and heads (COCO classes mapped)" in capsys.readouterr().out


def _one_error_line(capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_files_give_one_line_naming_file_and_sizes(tmp_path, toy_spec, capsys):
    base = ["import-darknet", "--out", str(tmp_path / "x.pt"), "--config", str(toy_spec), "--weights"]
    short = tmp_path / "short.weights"  # a full-size header, a backbone-sized body less one float
    write_darknet(short, yolov3_cfg_convolutions(80)[:52])
    with open(short, "r+b") as f:
        f.truncate(DARKNET53_CONV74_BYTES - 4)
    err = _one_error_line(capsys, base + [str(short)])
    assert str(short) in err and "248,007,048" in err and "162,482,580" in err and "162,482,576" in err
    version = tmp_path / "version.weights"
    version.write_bytes(struct.pack("<iiii", 7, 3, 1, 0) + b"\0" * 64)
    err = _one_error_line(capsys, base + [str(version)])
    assert str(version) in err and "7.3.1" in err
    tiny = tmp_path / "tiny.weights"
    tiny.write_bytes(b"\0" * 5)
    assert str(tiny) in _one_error_line(capsys, base + [str(tiny)])
    missing = tmp_path / "absent.weights"
    assert str(missing) in _one_error_line(capsys, base + [str(missing)])
    assert not (tmp_path / "x.pt").exists()
