"""`pisr-ros predict`: one image back at its own resolution, and files both evaluators score."""
from __future__ import annotations

import contextlib
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic
from PIL import Image

from pisr_ros import cli
from pisr_ros import cityscapes_layout as layout
from pisr_ros.data import synth
from pisr_ros.errors import UsageError
from pisr_ros.evaluation import panoptic_quality, semantic
from pisr_ros.data.dataset import read_rgb
from pisr_ros.image_files import find_images
from pisr_ros.inference.predictor import Predictor, normalize
from pisr_ros.panoptic import resize_nearest
from pisr_ros.models.spec import ModelSpec, build_model, save_checkpoint
from pisr_ros.panoptic import PanopticResult, rgb_to_id
from pisr_ros.taxonomy import NUM_CLASSES, by_name

SIZE = (64, 128)
ROAD, CAR = by_name("road"), by_name("car")


class _HandMadeHeads(torch.nn.Module):
    """Heads on a 16x32 grid for a 64x128 input: road everywhere, a car box with one center."""

    def __init__(self):
        super().__init__()
        self.spec = SimpleNamespace(name="hand-made", num_classes=NUM_CLASSES, input_size=(64, 128),
                                    pixel_mean=(0.0, 0.0, 0.0), pixel_std=(1.0, 1.0, 1.0), to_dict=dict)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.seen = None

    def forward(self, x):
        self.seen = tuple(x.shape)
        n, h, w = x.shape[0], x.shape[2] // 4, x.shape[3] // 4
        sem = torch.zeros(n, NUM_CLASSES, h, w)
        sem[:, ROAD.train_id] = 1.0
        sem[:, CAR.train_id, 4:8, 8:16] = 5.0
        center = torch.zeros(n, 1, h, w)
        center[:, 0, 6, 12] = 1.0
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        offset = torch.stack([(6 - yy) * 4.0, (12 - xx) * 4.0])[None].expand(n, -1, -1, -1)
        return {"semantic": sem, "center": center, "offset": offset}


def test_predictor_returns_the_image_resolution():
    model = _HandMadeHeads()
    image = np.zeros((128, 256, 3), np.uint8)  # twice the model's input size
    result = Predictor.from_module(model, model.spec)(image)
    assert isinstance(result, PanopticResult)
    assert model.seen == (1, 3, 64, 128)  # the network ran at its input size
    assert result.id_map.shape == (128, 256) and result.id_map.dtype == np.int32
    car = CAR.train_id * 1000 + 1
    # The car box covers grid rows 4..7, cols 8..15: input rows 16..31 -> image rows 32..63.
    assert (result.id_map[40:56, 72:120] == car).all()
    assert (result.id_map[:24] == ROAD.train_id * 1000).all()
    assert {s.id for s in result.segments} == {ROAD.train_id * 1000, car}


def test_resize_nearest_samples_pixel_centres():
    a = np.arange(16, dtype=np.int32).reshape(4, 4)
    assert resize_nearest(a, (2, 2)).tolist() == [[5, 7], [13, 15]]
    assert resize_nearest(a, (8, 8))[::2, ::2].tolist() == a.tolist()


@pytest.fixture(scope="module")
def val_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs")
    synth.generate(root, "val", 3, SIZE, seed=21, workers=1)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, val_root):
    spec = ModelSpec.from_dict(dict(
        name="tiny", input_size=[32, 64],
        backbone=dict(name="mobilenet", width=8, stages=[[1, 8, 1, 2], [2, 8, 1, 2], [2, 16, 1, 2], [2, 16, 1, 2]]),
        semantic_decoder=dict(aspp_channels=16, aspp_dilations=[1, 2, 3], project_channels=[8, 8], channels=16, kernel_size=3),
        instance_decoder=dict(aspp_channels=16, aspp_dilations=[1, 2, 3], project_channels=[8, 8], channels=16, kernel_size=3),
        heads=dict(semantic_channels=16, center_channels=8, offset_channels=8, kernel_size=3),
        pisr=dict(top_k=4, channels=16, key_channels=8, value_channels=16, out_channels=8, reweight_hidden=8)))
    torch.manual_seed(0)
    model = build_model(spec).eval()
    with torch.no_grad():
        # An untrained model predicts one arbitrary class everywhere. Lift road and car above
        # the rest and balance them on a val image, so that both stuff and things come out,
        # with centers above the 0.1 threshold.
        bias = model.final_semantic_head[-1].bias
        bias[[ROAD.train_id, CAR.train_id]] += 5.0
        image = torch.from_numpy(read_rgb(find_images(val_root)[0][1])).permute(2, 0, 1)[None]
        x = normalize(torch.nn.functional.interpolate(image.float(), size=(32, 64)), spec.pixel_mean, spec.pixel_std)
        logits = model(x)["semantic"][0]
        bias[CAR.train_id] += (logits[ROAD.train_id] - logits[CAR.train_id]).median()
        model.final_center_head[-1].bias.fill_(0.3)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, model, spec)
    return path


def test_predictions_score_with_both_evaluators(val_root, checkpoint, tmp_path):
    out = tmp_path / "pred"
    assert cli.main(["predict", "--model", str(checkpoint), "--images", str(val_root / "leftImg8bit" / "val"),
                     "--out", str(out), "--threads", "1"]) == 0
    ids = layout.list_split(val_root, "val")
    pred = json.loads((out / "panoptic.json").read_text())
    assert [a["image_id"] for a in pred["annotations"]] == ids
    for ann in pred["annotations"]:
        png = np.array(Image.open(out / "panoptic" / ann["file_name"]))
        assert png.shape == (*SIZE, 3)  # back at the image's resolution
        in_png = set(np.unique(rgb_to_id(png)).tolist()) - {0}
        assert in_png == {s["id"] for s in ann["segments_info"]}
        sem = np.array(Image.open(out / "semantic" / f"{ann['image_id']}_labelIds.png"))
        assert sem.shape == SIZE and sem.dtype == np.uint8
    assert any(s["category_id"] >= 24 for a in pred["annotations"] for s in a["segments_info"])  # things

    gt_json = layout.panoptic_json(val_root, "val")
    gt_dir = layout.panoptic_dir(val_root, "val")
    ours = panoptic_quality.evaluate(str(gt_json), str(gt_dir), str(out / "panoptic.json"), str(out / "panoptic"),
                                     workers=1).results
    with contextlib.redirect_stdout(io.StringIO()):
        ref = evaluatePanoptic(str(gt_json), str(gt_dir), str(out / "panoptic.json"), str(out / "panoptic"),
                               str(tmp_path / "ref.json"))
    for group in ("All", "Things", "Stuff"):
        for m in ("pq", "sq", "rq"):
            assert ours[group][m] == pytest.approx(ref[group][m], abs=1e-9)
    sem = semantic.evaluate_semantic(str(val_root / "gtFine" / "val"), str(out / "semantic"), workers=1)
    assert sem["numImages"] == 3 and 0 <= sem["averageScoreClasses"] <= 1


def _predict_one(checkpoint, image, out, *options):
    assert cli.main(["predict", "--model", str(checkpoint), "--images", str(image), "--out", str(out),
                     "--threads", "1", *options]) == 0
    (ann,) = json.loads((out / "panoptic.json").read_text())["annotations"]
    png = np.array(Image.open(out / "panoptic" / ann["file_name"]))
    return ann, png


def test_predict_size_and_settings_options_change_the_prediction(val_root, checkpoint, tmp_path):
    image = sorted((val_root / "leftImg8bit" / "val").rglob("*.png"))[0]
    ann, default = _predict_one(checkpoint, image, tmp_path / "default")
    assert ann["image_id"] == image.name[: -len("_leftImg8bit.png")]
    assert any(s["category_id"] >= 24 for s in ann["segments_info"])  # the model finds things
    # A larger network input runs the network at another resolution: other segments, same image size.
    _, larger = _predict_one(checkpoint, image, tmp_path / "larger", "--size", "128x256")
    assert larger.shape == default.shape and (larger != default).any()
    # No center can pass a threshold of 1.0 on this model (its center bias is 0.3): no things.
    ann, _ = _predict_one(checkpoint, image, tmp_path / "strict", "--center-threshold", "1.0")
    assert not any(s["category_id"] >= 24 for s in ann["segments_info"])


def test_falsy_setting_values_are_given_values():
    """0 and false are values like any other (replay-eval once dropped them with `if value:`)."""
    import argparse

    from pisr_ros.families.flags import given_settings
    from pisr_ros.inference import predict_cli
    from pisr_ros.postprocess.panoptic_deeplab import PanopticDeepLabSettings

    parser = argparse.ArgumentParser()
    predict_cli.add_arguments(parser)
    args = parser.parse_args(["--images", "x", "--out", "y", "--center-threshold", "0", "--stuff-area", "0",
                              "--upsample", "false"])
    assert given_settings(args, PanopticDeepLabSettings) == {"center_threshold": 0.0, "stuff_area": 0,
                                                             "upsample": False}
    args = parser.parse_args(["--images", "x", "--out", "y"])
    assert given_settings(args, PanopticDeepLabSettings) == {}


def test_find_images_prefers_cityscapes_names(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a" / "x.jpg")
    assert [i for i, _ in find_images(tmp_path)] == ["x"]
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a" / "bonn_000001_000019_leftImg8bit.png")
    assert [i for i, _ in find_images(tmp_path)] == ["bonn_000001_000019"]
    with pytest.raises(UsageError, match="no such file"):
        find_images(tmp_path / "a" / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images"):
        find_images(tmp_path / "empty")


def test_missing_model_names_what_makes_it(tmp_path, capsys):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x.png")
    assert cli.main(["predict", "--model", str(tmp_path / "final.pt"), "--images", str(tmp_path),
                     "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "final.pt" in err and "pisr-ros train" in err and len(err.strip().splitlines()) == 1


def test_predict_without_a_model_serves_the_nodes_default_like_the_node(tmp_path):
    """No --model: the node's default model; --backend onnxruntime gives the id maps of the
    Predictor as panoptic_node builds it (auto backend on the CPU, its default settings)."""
    from pisr_ros.inference.model_files import DEFAULT_MODEL, find_model
    from pisr_ros.panoptic import to_cityscapes_panoptic
    from pisr_ros.ros.panoptic_params import PARAMS

    images = tmp_path / "images"
    images.mkdir()
    frames = [synth.render_scene(5, "val", i, (256, 512))[0] for i in range(2)]
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(images / f"f{i}.png")
    assert cli.main(["predict", "--images", str(images), "--out", str(tmp_path / "out"),
                     "--backend", "onnxruntime", "--device", "cpu"]) == 0
    assert PARAMS["model"].default == DEFAULT_MODEL
    node_predictor = Predictor.from_file(str(find_model(PARAMS["model"].default)), backend=PARAMS["backend"].default,
                                         device=PARAMS["device"].default, keep_confidence=False)
    assert node_predictor.backend.name == "onnxruntime"
    for i, rgb in enumerate(frames):
        png = np.array(Image.open(tmp_path / "out" / "panoptic" / f"f{i}_panoptic.png"))
        want, _ = to_cityscapes_panoptic(node_predictor(rgb).id_map)
        np.testing.assert_array_equal(png, want)
