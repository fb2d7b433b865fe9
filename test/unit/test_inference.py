"""ONNX export and the Predictor: parity between backends, model files, bad input."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pisr_ros import cli
from pisr_ros.data.synth import render_scene
from pisr_ros.errors import UsageError
from pisr_ros.inference import backends
from pisr_ros.inference.export import check_onnx, export_checkpoint, parity
from pisr_ros.inference.model_files import read_model_info
from pisr_ros.inference.predictor import Predictor
from pisr_ros.postprocess.panoptic_deeplab import panoptic_deeplab_postprocess
from pisr_ros.models.spec import build_model, load_spec, save_checkpoint
from pisr_ros.panoptic import segments_of

SHIPPED = Path("models/pd_light_base_synth.pt")
# float32 ONNX Runtime vs PyTorch: the same convolutions summed in another order (and BN folded
# into them by the exporter) differ in the last bits, relative to each output's magnitude.
PARITY_RTOL = 1e-4


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PISR_ROS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def pisr_checkpoint(tmp_path_factory):
    """An untrained PD+PISR checkpoint (random weights exercise every path of the graph)."""
    torch.manual_seed(0)
    spec = load_spec("config/models/pd_light_pisr.yaml")
    model = build_model(spec)
    # Non-trivial BN statistics, which the exporter folds into the convolutions.
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 128, 256))
    path = tmp_path_factory.mktemp("ckpt") / "pisr.pt"
    save_checkpoint(path, model.eval(), spec)
    return path


@pytest.fixture(scope="module")
def frames():
    """Three synthetic street scenes (RGB) at two camera sizes, never seen in training."""
    return [render_scene(11, "val", i, (256, 512))[0] for i in range(2)] + [render_scene(11, "val", 2, (300, 700))[0]]


def test_export_checks_parity_and_metadata_for_pisr(pisr_checkpoint, tmp_path):
    out = tmp_path / "pisr.onnx"
    model, spec = export_checkpoint(pisr_checkpoint, out, (128, 256))
    ops = check_onnx(out)
    assert {"TopK", "MatMul", "Softmax"} <= ops  # PISR's center selection and attention are in the graph
    # TensorRT takes Range with float bounds only from initializers: ours must be integer.
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(out))).graph
    types = {v.name: v.type.tensor_type.elem_type for v in graph.value_info}
    ranges = [n.output[0] for n in graph.node if n.op_type == "Range"]
    assert ranges and all(types[r] in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) for r in ranges)
    for name, (abs_err, rel_err) in parity(out, model, (128, 256), batch=2).items():
        assert rel_err < PARITY_RTOL, (name, abs_err, rel_err)
    info = read_model_info(out)
    assert info.kind == "onnx" and info.input_size == (128, 256) and info.name == spec.name
    assert info.source_sha256 == read_model_info(pisr_checkpoint).source_sha256
    assert info.pixel_mean == tuple(spec.pixel_mean)


def test_export_cli_refuses_to_overwrite_a_different_file(pisr_checkpoint, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    args = ["export", "--model", str(pisr_checkpoint), "--out", str(out), "--size", "64x128"]
    assert cli.main(args) == 0 and out.is_file()
    assert cli.main(args) == 0 and "unchanged" in capsys.readouterr().out  # the export is deterministic
    assert cli.main(args[:-1] + ["64x160"]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(args[:-1] + ["64x160", "--force"]) == 0
    assert read_model_info(out).input_size == (64, 160)
    assert cli.main(["export", "--model", str(tmp_path / "none.pt"), "--out", str(out)]) == 2


def _plain_torch_prediction(model, spec, rgb, cfg):
    """The steps written out once, with nothing of the Predictor: resize, normalise, network,
    post-processing, nearest resize of the ids back to the image."""
    h, w = rgb.shape[:2]
    ih, iw = spec.input_size
    resized = cv2.resize(rgb, (iw, ih), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(resized).permute(2, 0, 1)[None].float()
    x = (x - torch.tensor(spec.pixel_mean).view(1, 3, 1, 1)) * (1.0 / torch.tensor(spec.pixel_std).view(1, 3, 1, 1))
    with torch.no_grad():
        heads = model(x)
    batch = panoptic_deeplab_postprocess(heads["semantic"], heads["center"], heads["offset"], (ih, iw), cfg)
    ids = batch.id_map[0].numpy()
    rows = np.minimum(((np.arange(h) + 0.5) * ids.shape[0] / h).astype(int), ids.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * ids.shape[1] / w).astype(int), ids.shape[1] - 1)
    return ids[rows][:, cols]


def test_predictor_equals_the_plain_torch_path(frames):
    """The Predictor on the torch backend gives what the steps written out in this test give with
    the same post-processing: id maps equal pixel for pixel, at each image's own size."""
    predictor = Predictor.from_file(str(SHIPPED), backend="torch")
    model, spec = predictor.backend.model, predictor.info.model_spec
    for rgb in frames:
        want = _plain_torch_prediction(model, spec, rgb, predictor.postprocess)
        got = predictor(rgb)
        assert got.id_map.shape == rgb.shape[:2]
        np.testing.assert_array_equal(got.id_map, want)


def test_backends_agree_on_the_shipped_model(frames):
    """torch and ONNX Runtime, CPU, same frames: the id maps agree on all but a sliver of pixels
    (float32 differences can flip an argmax between two near-equal logits)."""
    torch_p = Predictor.from_file(str(SHIPPED), backend="torch")
    ort_p = Predictor.from_file(str(SHIPPED), backend="onnxruntime")
    for rgb in frames:
        a, b = torch_p(rgb), ort_p(rgb)
        assert (a.id_map != b.id_map).mean() < 1e-3
        assert np.abs(a.confidence - b.confidence).max() < 1e-3
        assert {s.id for s in a.segments} == {s.id for s in b.segments}


def test_predictor_results_are_consistent_and_batches_equal_single_images(frames):
    predictor = Predictor.from_file(str(SHIPPED), backend="onnxruntime")
    batch = predictor.predict(frames)  # sizes differ: each comes back at its own
    for rgb, result in zip(frames, batch):
        single = predictor(rgb)
        np.testing.assert_array_equal(result.id_map, single.id_map)
        # Segments are computed on the network's grid; they must be those of the full id map.
        assert result.segments == segments_of(result.id_map, result.confidence)
        np.testing.assert_array_equal(result.semantic, np.where(result.id_map < 0, 255, result.id_map // 1000))
    # bgr in, told so, is the same as rgb in.
    bgr = np.ascontiguousarray(frames[0][..., ::-1])
    np.testing.assert_array_equal(predictor(bgr, "bgr").id_map, batch[0].id_map)
    assert set(predictor.last_timings) == {"preprocess", "network", "postprocess", "resize"}


def test_network_and_finish_halves_equal_predict_with_the_settings_of_finish(frames):
    """The node's pipeline runs the two halves on two threads; together they are ``predict``.
    Post-processing settings are read by ``finish``: a change made while a frame is in the
    network applies to that frame."""
    predictor = Predictor.from_file(str(SHIPPED), backend="onnxruntime")
    whole = predictor.predict(frames)
    out = predictor.run_network(frames)
    assert set(out.timings) == {"preprocess", "network"} and out.sizes == [f.shape[:2] for f in frames]
    halves = predictor.finish(out)
    assert set(out.timings) == {"preprocess", "network", "postprocess", "resize"}
    for a, b in zip(whole, halves):
        np.testing.assert_array_equal(a.id_map, b.id_map)
        assert a.segments == b.segments
    out = predictor.run_network(frames[:1])
    # No instance is as large as a whole frame: every thing pixel goes void.
    predictor.postprocess = replace(predictor.postprocess, thing_area=1024 * 2048)
    assert not any(s.is_thing for s in predictor.finish(out)[0].segments)
    assert any(s.is_thing for s in whole[0].segments)
    with pytest.raises(ValueError, match="at least one image"):
        predictor.run_network([])


def test_onnx_file_serves_without_its_checkpoint(tmp_path, frames):
    onnx_path = tmp_path / "shipped.onnx"
    assert cli.main(["export", "--model", str(SHIPPED), "--out", str(onnx_path)]) == 0
    from_onnx = Predictor.from_file(str(onnx_path), backend="onnxruntime")
    from_ckpt = Predictor.from_file(str(SHIPPED), backend="onnxruntime")
    np.testing.assert_array_equal(from_onnx(frames[0]).id_map, from_ckpt(frames[0]).id_map)
    with pytest.raises(UsageError, match="checkpoint"):
        Predictor.from_file(str(onnx_path), backend="torch")


@pytest.mark.parametrize("bad", [
    np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32),
    np.zeros((0, 8, 3), np.uint8), [[1, 2, 3]],
])
def test_predictor_refuses_bad_images_with_the_expected_form(bad):
    predictor = Predictor.from_file(str(SHIPPED), backend="onnxruntime")
    with pytest.raises(ValueError, match="HxWx3 uint8|at least 1x1"):
        predictor(bad)
    with pytest.raises(ValueError, match="encoding"):
        predictor(np.zeros((8, 8, 3), np.uint8), "yuv")


def test_missing_model_files_name_the_command_that_makes_them(tmp_path):
    with pytest.raises(UsageError, match="pisr-ros export"):
        Predictor.from_file(str(tmp_path / "missing.onnx"), backend="onnxruntime")
    with pytest.raises(UsageError, match="pisr-ros train"):
        Predictor.from_file(str(tmp_path / "missing.pt"))
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"not a model")
    with pytest.raises(UsageError, match="not a readable ONNX"):
        read_model_info(foreign)


def test_backend_choice():
    assert backends.resolve("auto", "cpu") == "onnxruntime"  # measured 2-3x faster than eager torch
    with pytest.raises(UsageError, match="unknown backend"):
        backends.resolve("tflite")
    if not backends.tensorrt_available():
        with pytest.raises(UsageError, match="TensorRT"):
            backends.resolve("tensorrt", "cpu")


def test_bench_writes_every_stage_for_every_backend(tmp_path):
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--model", str(SHIPPED), "--size", "128x256", "--frames", "2", "--warmup", "1",
                     "--input", "jpeg", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"torch", "onnxruntime"}
    for stages in results.values():
        assert {"decode", "preprocess", "network", "postprocess", "resize", "total"} <= set(stages)
        assert stages["total"]["median_ms"] >= stages["network"]["median_ms"] > 0
    assert cli.main(["bench", "--model", str(SHIPPED), "--backends", "tflite"]) == 2


@pytest.mark.parametrize("encoding", ["rgb", "bgr"])
def test_cpu_preprocessing_equals_the_torch_expression(frames, encoding):
    """The CPU path (numpy per channel) gives the float32 numbers of ``(x - mean) * (1 / std)``."""
    import cv2

    predictor = Predictor.from_file(str(SHIPPED), backend="onnxruntime")
    ih, iw = predictor.input_size
    images = [frames[0], frames[2]]  # two sizes, both resized
    got = predictor.preprocess(images, encoding)
    for i, img in enumerate(images):
        x = torch.from_numpy(cv2.resize(img, (iw, ih), interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1).float()
        if encoding == "bgr":
            x = x.flip(0)
        mean = torch.tensor(predictor.info.pixel_mean).view(3, 1, 1)
        inv_std = 1.0 / torch.tensor(predictor.info.pixel_std).view(3, 1, 1)
        torch.testing.assert_close(got[i], (x - mean) * inv_std, rtol=0, atol=0)
