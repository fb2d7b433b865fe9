"""The TensorRT backend on a real GPU: build from a small ONNX, parity with ONNX Runtime, engine
cache reuse and invalidation, input checks, and `pisr-ros build-engine`.

Skips cleanly without TensorRT (>= 10) or CUDA. Tolerances, |TensorRT - ONNX Runtime| <=
atol + rtol * |ONNX Runtime|: FP32 engines 5e-3 + 5e-3 (TensorRT enables TF32 by default,
BuilderFlag.TF32, which rounds conv inputs to 10-bit mantissas), FP16 engines 3e-2 + 3e-2.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

trt = pytest.importorskip("tensorrt")
if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)

import cv2  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from pisr_ros import cli  # noqa: E402
from pisr_ros.errors import UsageError  # noqa: E402
from pisr_ros.inference import tensorrt_backend  # noqa: E402
from pisr_ros.inference.engine_cache import EngineCache, environment  # noqa: E402
from pisr_ros.inference.tensorrt_backend import TensorRTBackend  # noqa: E402

pytestmark = pytest.mark.gpu

SIZE = (64, 128)
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
FP32_TOL, FP16_TOL = 5e-3, 3e-2


def tiny_onnx(path, size=SIZE, seed=0):
    """Three stride-4 convolutions named like our export: images (batch,3,H,W) -> semantic
    (batch,19,H/4,W/4), center (sigmoid, 1 channel), offset (2 channels)."""
    rng = np.random.default_rng(seed)
    h, w = size
    inits, nodes = [], []
    for name, channels in (("semantic", 19), ("center_logits", 1), ("offset", 2)):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.1, (channels, 3, 4, 4)).astype(np.float32), f"{name}_w"))
        inits.append(numpy_helper.from_array(rng.normal(0, 0.1, (channels,)).astype(np.float32), f"{name}_b"))
        nodes.append(helper.make_node("Conv", ["images", f"{name}_w", f"{name}_b"], [name], strides=[4, 4]))
    nodes.append(helper.make_node("Sigmoid", ["center_logits"], ["center"]))
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", c, h // 4, w // 4])
               for name, c in (("semantic", 19), ("center", 1), ("offset", 2))]
    graph = helper.make_graph(nodes, "tiny_heads",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, h, w])],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # old enough for every ONNX Runtime and TensorRT parser in use
    helper.set_model_props(model, {"pisr_ros.spec": json.dumps(
        {"name": "tiny", "input_size": list(size), "pixel_mean": list(MEAN), "pixel_std": list(STD)})})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def model(tmp_path):
    return tiny_onnx(tmp_path / "tiny.onnx")


def onnxruntime_heads(path, images: torch.Tensor) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    values = session.run(["semantic", "center", "offset"], {"images": images.cpu().numpy()})
    return dict(zip(["semantic", "center", "offset"], values))


def assert_close(outputs: dict[str, torch.Tensor], reference: dict[str, np.ndarray], tol: float) -> None:
    for name, ref in reference.items():
        got = outputs[name]
        assert got.is_cuda and got.dtype == torch.float32 and tuple(got.shape) == ref.shape, name
        np.testing.assert_allclose(got.cpu().numpy(), ref, atol=tol, rtol=tol, err_msg=name)


def run_cli(argv: list[str]) -> int:
    """`pisr-ros build-engine ARGS`, as the command line runs it (UsageError -> exit 2)."""
    return cli.main(["build-engine", *argv])


def test_fp32_engine_matches_onnxruntime(model, tmp_path):
    backend = TensorRTBackend(model, cache_dir=tmp_path / "c", progress=False, max_batch=2)
    assert backend.name == "tensorrt" and backend.input_size == SIZE and backend.max_batch == 2
    assert backend.device.type == "cuda" and backend.built
    images = torch.randn(2, 3, *SIZE)
    for batch in (images[:1], images):  # both ends of the optimisation profile
        assert_close(backend.run(batch.to(backend.device)), onnxruntime_heads(model, batch), FP32_TOL)


@pytest.mark.skipif(not hasattr(trt.BuilderFlag, "FP16"), reason="TensorRT 11 removed BuilderFlag.FP16")
def test_fp16_engine_matches_onnxruntime(model, tmp_path):
    backend = TensorRTBackend(model, cache_dir=tmp_path / "c", progress=False, fp16=True)
    images = torch.randn(1, 3, *SIZE)
    assert_close(backend.run(images.to(backend.device)), onnxruntime_heads(model, images), FP16_TOL)


def test_cached_engine_is_reused_without_rebuilding(model, tmp_path, monkeypatch):
    first = TensorRTBackend(model, cache_dir=tmp_path / "c", progress=False)
    mtime = first.engine_path.stat().st_mtime_ns
    images = torch.randn(1, 3, *SIZE, device=first.device)
    expected = first.run(images)

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt although the cache holds this engine")

    monkeypatch.setattr(tensorrt_backend, "build_engine", no_build)
    second = TensorRTBackend(model, cache_dir=tmp_path / "c", progress=False)
    assert not second.built and second.engine_path == first.engine_path
    assert second.engine_path.stat().st_mtime_ns == mtime
    for name, tensor in second.run(images).items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0)


def test_key_change_builds_a_new_engine(model, tmp_path):
    cache = EngineCache(tmp_path / "c")
    one = TensorRTBackend(model, cache_dir=cache.root, progress=False, max_batch=1)
    two = TensorRTBackend(model, cache_dir=cache.root, progress=False, max_batch=2)
    three = TensorRTBackend(model, cache_dir=cache.root, progress=False, max_batch=2, workspace_mb=256)
    assert one.built and two.built and three.built
    assert len({one.engine_path, two.engine_path, three.engine_path}) == 3
    assert len(cache.entries()) == 3
    # Other ONNX bytes: a new key too.
    other = tiny_onnx(tmp_path / "other.onnx", seed=1)
    assert TensorRTBackend(other, cache_dir=cache.root, progress=False).built


def test_stale_and_damaged_engines_are_never_loaded(model, tmp_path):
    cache = EngineCache(tmp_path / "c")
    here = environment("cuda:0")
    backend = TensorRTBackend(model, cache_dir=cache.root, progress=False)
    # An entry for the same ONNX from another TensorRT: listed as stale, never loaded.
    foreign = dataclasses.replace(backend.key, tensorrt_version="9.0.0")
    cache.store(foreign, b"not an engine for this TensorRT")
    assert foreign.digest() in {e.digest for e in cache.stale(*here)}
    # The current entry damaged on disk: a miss, so it is rebuilt rather than deserialized.
    backend.engine_path.write_bytes(b"garbage")
    again = TensorRTBackend(model, cache_dir=cache.root, progress=False)
    assert again.built and again.engine_path == backend.engine_path
    images = torch.randn(1, 3, *SIZE)
    assert_close(again.run(images.to(again.device)), onnxruntime_heads(model, images), FP32_TOL)


def test_build_false_refuses_with_the_command(model, tmp_path):
    with pytest.raises(UsageError, match=f"pisr-ros build-engine --onnx {model}"):
        TensorRTBackend(model, cache_dir=tmp_path / "empty", build=False)


def test_missing_onnx_names_the_export_command(tmp_path):
    with pytest.raises(UsageError, match="pisr-ros export --model CHECKPOINT.pt --out .* --size HxW"):
        TensorRTBackend(tmp_path / "missing.onnx", cache_dir=tmp_path / "c")


def test_run_checks_its_input(model, tmp_path):
    backend = TensorRTBackend(model, cache_dir=tmp_path / "c", progress=False, max_batch=2)
    good = torch.randn(1, 3, *SIZE, device=backend.device)
    for bad in (good.half(), good.cpu(), torch.randn(1, 3, 32, 128, device=backend.device),
                torch.randn(3, 3, *SIZE, device=backend.device), good[0]):
        with pytest.raises(ValueError, match="float32 \\(N,3,64,128\\)"):
            backend.run(bad)


def test_misaligned_input_and_side_streams(model, tmp_path):
    backend = TensorRTBackend(model, cache_dir=tmp_path / "c", progress=False)
    flat = torch.randn(1 + 3 * SIZE[0] * SIZE[1], device=backend.device)
    images = flat[1:].view(1, 3, *SIZE)  # 4 bytes past an allocation: not 256-byte aligned
    assert images.data_ptr() % 256
    reference = onnxruntime_heads(model, images)
    assert_close(backend.run(images), reference, FP32_TOL)
    stream = torch.cuda.Stream(device=backend.device)
    with torch.cuda.stream(stream):  # the caller's own stream is respected
        outputs = backend.run(images)
    stream.synchronize()
    assert_close(outputs, reference, FP32_TOL)


@pytest.mark.skipif(not hasattr(trt.BuilderFlag, "INT8"), reason="TensorRT 11 removed BuilderFlag.INT8")
def test_int8_engine_calibrates_and_is_cached(model, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "calib").mkdir()
    for i in range(8):
        cv2.imwrite(str(tmp_path / "calib" / f"{i}.png"), rng.integers(0, 255, (96, 160, 3), dtype=np.uint8))
    cache = EngineCache(tmp_path / "c")
    backend = TensorRTBackend(model, cache_dir=cache.root, progress=False, int8=True, calib_dir=tmp_path / "calib")
    assert backend.built and cache.calibration_path(backend.key).is_file()
    outputs = backend.run(torch.randn(1, 3, *SIZE, device=backend.device))
    assert all(torch.isfinite(t).all() for t in outputs.values())
    assert not TensorRTBackend(model, cache_dir=cache.root, progress=False, int8=True,
                               calib_dir=tmp_path / "calib").built


def test_cli_build_only_then_smoke_run(model, tmp_path, capsys):
    cache = str(tmp_path / "c")
    assert run_cli(["--onnx", str(model), "--build-only", "--cache", cache]) == 0
    assert "built in" in capsys.readouterr().out
    assert run_cli(["--onnx", str(model), "--cache", cache]) == 0
    out = capsys.readouterr().out
    assert "reused from the cache" in out and "semantic (1, 19, 16, 32)" in out and "offset (1, 2, 16, 32)" in out
    assert run_cli(["--list", "--cache", cache]) == 0
    assert "  ok " in capsys.readouterr().out
