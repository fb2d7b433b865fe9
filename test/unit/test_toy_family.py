"""Adding a model family is new code plus one registration, no change to the library: a toy
family, defined in the few lines below, goes through the Predictor on torch, ONNX export, ONNX
Runtime and `pisr-ros predict` to Cityscapes files."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from pisr_ros import cli
from pisr_ros.families import HeadOutput, register, unregister
from pisr_ros.models.spec import SpecBase, save_checkpoint
from pisr_ros.panoptic import LABEL_DIVISOR, rgb_to_id
from pisr_ros.settings import setting
from pisr_ros.taxonomy import IS_THING, NUM_CLASSES, TRAIN_TO_LABEL


@dataclass(frozen=True)
class ToySpec(SpecBase):
    family: str = "toy"
    name: str = "toy"
    input_size: tuple[int, int] = (32, 64)
    pixel_mean: tuple[float, float, float] = (128.0, 128.0, 128.0)
    pixel_std: tuple[float, float, float] = (64.0, 64.0, 64.0)


@dataclass(frozen=True)
class ToySettings:
    min_score: float = setting(0.0, "Pixels less sure than this become void.", range=(0.0, 1.0))


class ToyNet(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.conv = torch.nn.Conv2d(3, NUM_CLASSES, 8, stride=8)

    def forward(self, x):
        return {"logits": self.conv(x)}


@dataclass
class ToyBatch:
    id_map: torch.Tensor
    confidence: torch.Tensor
    semantic: torch.Tensor


class ToyFamily:
    """Semantic logits at stride 8; all pixels of a thing class are one instance."""

    name = "toy"
    spec_class = ToySpec
    settings_class = ToySettings

    def outputs(self, spec):
        return (HeadOutput("logits", NUM_CLASSES, 8),)

    def build_model(self, spec):
        return ToyNet(spec)

    def postprocess(self, heads, input_size, settings):
        prob, sem = heads["logits"].softmax(1).max(1)
        ids = sem.int() * LABEL_DIVISOR + torch.as_tensor(IS_THING, device=sem.device)[sem].int()
        return ToyBatch(torch.where(prob >= settings.min_score, ids, -1).int(), prob, sem)

    def fake_heads(self, spec, input_size, device):
        return {"logits": torch.zeros(HeadOutput("logits", NUM_CLASSES, 8).shape(1, input_size), device=device)}


@pytest.fixture
def toy(tmp_path, monkeypatch):
    monkeypatch.setenv("PISR_ROS_CACHE", str(tmp_path / "cache"))
    register(ToyFamily())
    torch.manual_seed(0)
    spec = ToySpec()
    path = tmp_path / "toy.pt"
    save_checkpoint(path, ToyNet(spec).eval(), spec)
    yield path
    unregister("toy")


def _images(folder, n=2):
    folder.mkdir()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 96, 3), dtype=np.uint8) for _ in range(n)]
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame{i}.png")
    return frames


def _reference(model, rgb):
    """The toy's steps written out with nothing of the library."""
    import cv2

    x = torch.from_numpy(cv2.resize(rgb, (64, 32), interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        sem = model((x - 128.0) * (1.0 / 64.0))["logits"].argmax(1)[0].numpy()
    ids = sem * LABEL_DIVISOR + IS_THING[sem]
    rows = np.minimum(((np.arange(48) + 0.5) * 4 / 48).astype(int), 3)
    cols = np.minimum(((np.arange(96) + 0.5) * 8 / 96).astype(int), 7)
    return ids[rows][:, cols]


def test_a_toy_family_runs_everywhere_without_library_changes(toy, tmp_path):
    from pisr_ros.inference.export import check_onnx, export_checkpoint, parity
    from pisr_ros.inference.predictor import Predictor
    from pisr_ros.inference.tensorrt_backend import expected_outputs

    frames = _images(tmp_path / "images")
    on_torch = Predictor.from_file(str(toy), backend="torch")
    for rgb in frames:
        np.testing.assert_array_equal(on_torch(rgb).id_map, _reference(on_torch.backend.model, rgb))

    onnx_path = tmp_path / "toy.onnx"
    model, spec = export_checkpoint(toy, onnx_path)
    assert check_onnx(onnx_path) == {"Conv"}
    assert expected_outputs(onnx_path) == ("logits",)  # what a TensorRT engine of it must output
    assert parity(onnx_path, model, spec.input_size)["logits"][1] < 1e-5
    for source in (toy, onnx_path):  # the checkpoint (exported once into the cache) and the .onnx itself
        on_ort = Predictor.from_file(str(source), backend="onnxruntime")
        for rgb in frames:
            agree = (on_ort(rgb).id_map == on_torch(rgb).id_map).mean()
            assert agree > 0.99

    out = tmp_path / "pred"
    assert cli.main(["predict", "--model", str(onnx_path), "--images", str(tmp_path / "images"), "--out", str(out),
                     "--backend", "onnxruntime", "--min-score", "0.0"]) == 0
    annotations = json.loads((out / "panoptic.json").read_text())["annotations"]
    assert [a["image_id"] for a in annotations] == ["frame0", "frame1"]
    for ann, rgb in zip(annotations, frames):
        png_ids = rgb_to_id(np.array(Image.open(out / "panoptic" / ann["file_name"])))
        want = on_torch(rgb).id_map
        label = TRAIN_TO_LABEL[want // LABEL_DIVISOR].astype(np.int64)
        want_png = np.where(want % LABEL_DIVISOR > 0, label * LABEL_DIVISOR + 1, label)
        assert (png_ids == want_png).mean() > 0.99
        assert set(np.unique(png_ids).tolist()) == {s["id"] for s in ann["segments_info"]}

    # A setting of the family works through the command line like Panoptic-DeepLab's.
    assert cli.main(["predict", "--model", str(onnx_path), "--images", str(tmp_path / "images"),
                     "--out", str(tmp_path / "strict"), "--min-score", "1.0"]) == 0
    png = np.array(Image.open(tmp_path / "strict" / "panoptic" / "frame0_panoptic.png"))
    assert (rgb_to_id(png) == 0).all()  # nothing is that sure: all void
    assert cli.main(["predict", "--model", str(onnx_path), "--images", str(tmp_path / "images"),
                     "--out", str(tmp_path / "x"), "--center-threshold", "0.3"]) == 2  # not a toy setting
