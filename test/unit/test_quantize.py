"""`pisr-ros quantize`: static int8 quantization (ONNX Runtime QDQ) of a small export of the
shipped PISR model, calibrated and checked on a few tiny synthetic frames."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from pisr_ros import cli
from pisr_ros.data import synth
from pisr_ros.data.dataset import read_rgb
from pisr_ros.inference.export import export_checkpoint
from pisr_ros.inference.model_files import read_model_info
from pisr_ros.inference.predictor import Predictor
from pisr_ros.inference.quantize import (META_PRECISION, META_QUANTIZATION, QuantizeSettings, compare,
                                         float_nodes, int8_path_for, quantize_onnx, split_images)
from pisr_ros.inference.quantize_cli import DEFAULT_KEEP_FLOAT

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "pd_light_pisr_residual_synth.pt"
SIZE = (128, 256)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(dataset root with 4 train and 3 val frames, fp32 export at 128x256, its int8 file)."""
    root = tmp_path_factory.mktemp("quantize")
    data = root / "data"
    synth.generate(out=data, split="train", num=4, size=SIZE, seed=1, workers=1)
    synth.generate(out=data, split="val", num=3, size=SIZE, seed=7, workers=1)
    fp32 = root / "m.onnx"
    export_checkpoint(SHIPPED, fp32, SIZE)
    int8 = quantize_onnx(fp32, int8_path_for(fp32), [p for _, p in split_images(data, "train")],
                         QuantizeSettings(keep_float=DEFAULT_KEEP_FLOAT), log=lambda *_: None)
    return data, fp32, int8


def test_int8_path_sits_beside_the_model():
    assert int8_path_for("models/m.pt") == Path("models/m.int8.onnx")
    assert int8_path_for("models/m.onnx") == Path("models/m.int8.onnx")
    assert int8_path_for("models/m.int8.onnx") == Path("models/m.int8.onnx")


def test_the_int8_file_is_quantized_and_loads_as_a_model_file(tiny):
    data, fp32, int8 = tiny
    proto = onnx.load(str(int8))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 20
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) > 40  # the convolutions' weights, per output channel
    assert int8.stat().st_size < 0.6 * fp32.stat().st_size
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[META_PRECISION] == "int8"
    assert json.loads(meta[META_QUANTIZATION])["calibration_frames"] == 4
    info, source = read_model_info(int8), read_model_info(fp32)
    assert info.kind == "onnx" and info.input_size == SIZE and info.spec == source.spec
    predictor = Predictor.from_file(str(int8), backend="onnxruntime")
    frame = read_rgb(split_images(data, "val")[0][1])
    result = predictor(frame)
    assert result.id_map.shape == frame.shape[:2]
    # The convolutions the default keeps in float still have float weights; the others int8.
    kept = set(float_nodes(fp32, DEFAULT_KEEP_FLOAT))
    assert any(name.startswith("/pisr/") for name in kept)
    float_weights = {t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert {n.name for n in convs if n.input[1] in float_weights} == {n.name for n in convs if n.name in kept}


def test_int8_agrees_with_fp32(tiny):
    data, fp32, int8 = tiny
    val = split_images(data, "val")
    same = compare(fp32, fp32, val, progress=False)
    assert same.identical_ids == 1.0 and same.same_class == 1.0
    got = compare(fp32, int8, val, progress=False)
    assert got.frames == 3
    assert got.same_class > 0.85, got
    assert got.identical_ids < 1.0  # it is a different network, not the same file
    # The heads themselves: int8 follows fp32 closely (signal-to-noise over 15 dB).
    x = Predictor.from_file(str(fp32), backend="onnxruntime").preprocess([read_rgb(val[0][1])], "rgb")
    a = Predictor.from_file(str(fp32), backend="onnxruntime").backend.run(x)
    b = Predictor.from_file(str(int8), backend="onnxruntime").backend.run(x)
    for name in ("semantic", "offset"):
        noise = float(((a[name] - b[name]) ** 2).mean())
        assert 10 * np.log10(float((a[name] ** 2).mean()) / noise) > 15, name


def test_quantize_command_checks_pq_and_writes_a_report(tiny, tmp_path, capsys):
    data, fp32, _ = tiny
    out, report = tmp_path / "q.int8.onnx", tmp_path / "q.json"
    assert cli.main(["quantize", "--model", str(fp32), "--data", str(data), "--out", str(out),
                     "--calibration-frames", "2", "--val-frames", "2", "--json-out", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "| fp32 `m.onnx` |" in printed and "| int8 `q.int8.onnx` |" in printed
    r = json.loads(report.read_text())
    assert r["check"]["frames"] == 2 and r["settings"]["calibration_frames"] == 2
    pq = r["check"]["pq"]
    assert 0 <= pq["int8"]["All"]["pq"] <= 100 and 0 <= pq["fp32"]["All"]["pq"] <= 100
    assert r["pq_loss"] == pytest.approx(pq["fp32"]["All"]["pq"] - pq["int8"]["All"]["pq"])
    assert len(r["network_pairs_ms"]["fp32"]) == len(r["network_pairs_ms"]["int8"]) == 20
    assert read_model_info(out).kind == "onnx"


def test_quantize_refuses_bad_input_in_one_line(tiny, tmp_path, capsys):
    data, fp32, int8 = tiny
    cases = [
        (["--model", str(fp32), "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "n.int8.onnx")],
         "no train frames"),
        (["--model", str(int8), "--data", str(data)], "already quantized"),
        (["--model", str(fp32), "--data", str(data), "--out", str(int8)], "exists; pass --force"),
        (["--model", str(fp32), "--data", str(data), "--out", str(fp32)], "the float model itself"),
        (["--model", str(fp32), "--data", str(data), "--calibration-frames", "0"], "--calibration-frames"),
        (["--model", str(fp32), "--data", str(data), "--out", str(tmp_path / "x.int8.onnx"),
          "--keep-float", "(", "--no-check"], "keep-float pattern"),
    ]
    for argv, says in cases:
        assert cli.main(["quantize", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], (argv, err)


SHIPPED_INT8 = SHIPPED.with_name("pd_light_pisr_residual_synth.int8.onnx")


@pytest.mark.skipif(not SHIPPED_INT8.is_file(), reason="no int8 file shipped")
def test_the_shipped_int8_file_is_made_from_the_shipped_onnx():
    """Re-made whenever the export changes (`pisr-ros quantize`, the model card's command)."""
    from pisr_ros.inference.model_files import sha256_of

    meta = {p.key: p.value for p in onnx.load(str(SHIPPED_INT8), load_external_data=False).metadata_props}
    made = json.loads(meta[META_QUANTIZATION])
    assert meta[META_PRECISION] == "int8"
    assert made["source_onnx_sha256"] == sha256_of(SHIPPED.with_suffix(".onnx"))
    assert made["kept_float"] == list(DEFAULT_KEEP_FLOAT) and made["calibration_frames"] == 64
    assert read_model_info(SHIPPED_INT8).spec == read_model_info(SHIPPED.with_suffix(".onnx")).spec
