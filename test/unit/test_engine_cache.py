"""The TensorRT engine cache: keys, digests, lookup, invalidation, atomic store, pruning, and the
`pisr-ros build-engine` errors and listing. None of this needs TensorRT or a GPU."""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os

import cv2
import numpy as np
import pytest

from pisr_ros import cli
from pisr_ros.errors import UsageError
from pisr_ros.inference import build_engine_cli, engine_cache
from pisr_ros.inference.engine_cache import (
    BUILD_RECIPE,
    EngineCache,
    EngineKey,
    TensorRTUnavailable,
    calibration_images,
    calibration_sha256,
    default_root,
    file_sha256,
    key_digest,
)

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def make_key(**changes) -> EngineKey:
    base = dict(onnx_sha256="a" * 64, tensorrt_version="10.9.0.34", gpu_name="NVIDIA H100 80GB HBM3",
                compute_capability="9.0", fp16=False, int8=False, calib_sha256=None, max_batch=1, workspace_mb=None)
    base.update(changes)
    return EngineKey(**base)


def run_cli(argv: list[str]) -> int:
    """`pisr-ros build-engine ARGS`, as the command line runs it (UsageError -> exit 2)."""
    return cli.main(["build-engine", *argv])


# -- keys and digests --------------------------------------------------------------------------

def test_digest_is_stable_hex_and_follows_the_key():
    key = make_key()
    assert key.digest() == key_digest(key) == key_digest(make_key())
    assert len(key.digest()) == 32 and int(key.digest(), 16) >= 0
    assert EngineKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key
    assert key.recipe == BUILD_RECIPE


INT8 = dict(int8=True, calib_sha256="c" * 64)
CHANGES = {  # name: (the stored key's fields, the fields then changed)
    "tensorrt_version": ({}, dict(tensorrt_version="10.10.0.31")),
    "gpu_name": ({}, dict(gpu_name="NVIDIA A100-SXM4-80GB")),
    "compute_capability": ({}, dict(compute_capability="8.0")),
    "fp16": ({}, dict(fp16=True)),
    "int8": ({}, INT8),
    "calibration data": (INT8, dict(calib_sha256="d" * 64)),
    "max_batch": ({}, dict(max_batch=4)),
    "workspace": ({}, dict(workspace_mb=1024)),
    "onnx bytes": ({}, dict(onnx_sha256="b" * 64)),
    "recipe": ({}, dict(recipe=BUILD_RECIPE + 1)),
}


@pytest.mark.parametrize("stored, change", CHANGES.values(), ids=CHANGES.keys())
def test_any_key_field_change_is_a_miss(tmp_path, stored, change):
    cache = EngineCache(tmp_path)
    base = make_key(**stored)
    cache.store(base, b"engine-bytes")
    other = dataclasses.replace(base, **change)
    assert other != base and other.digest() != base.digest()
    assert cache.lookup(base) is not None
    assert cache.lookup(other) is None


def test_key_validation():
    with pytest.raises(ValueError, match="calib_sha256"):
        make_key(int8=True)
    with pytest.raises(ValueError, match="int8 keys only"):
        make_key(calib_sha256="c" * 64)
    with pytest.raises(ValueError, match="max_batch"):
        make_key(max_batch=0)
    with pytest.raises(ValueError, match="fields differ"):
        EngineKey.from_dict({**make_key().to_dict(), "extra": 1})
    assert make_key(fp16=True, int8=True, calib_sha256="c" * 64).precision() == "int8+fp16"
    assert make_key().precision() == "fp32"


def test_onnx_bytes_change_the_key(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"onnx model one")
    b.write_bytes(b"onnx model two")
    assert file_sha256(a) != file_sha256(b)
    assert make_key(onnx_sha256=file_sha256(a)).digest() != make_key(onnx_sha256=file_sha256(b)).digest()


# -- lookup and store ----------------------------------------------------------------------------

def test_store_then_lookup_hits_with_the_engine_bytes(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    key = make_key()
    assert cache.lookup(key) is None  # empty (not even created)
    path = cache.store(key, b"\x00plan\xff" * 100, onnx_path=tmp_path / "m.onnx", build_seconds=12.34)
    assert path == tmp_path / "engines" / f"{key.digest()}.engine"
    assert cache.lookup(key) == path and path.read_bytes() == b"\x00plan\xff" * 100
    record = json.loads(cache.meta_path(key).read_text())
    assert record["key"] == key.to_dict() and record["digest"] == key.digest()
    assert record["engine_size"] == 600 and record["build_seconds"] == 12.3
    assert record["onnx_path"] == str((tmp_path / "m.onnx").resolve())
    assert not list((tmp_path / "engines").glob("*.tmp*"))  # no temporary files left


def test_edited_json_key_is_never_returned(tmp_path):
    cache = EngineCache(tmp_path)
    key = make_key()
    cache.store(key, b"engine built for 10.9")
    meta = cache.meta_path(key)
    record = json.loads(meta.read_text())
    record["key"]["tensorrt_version"] = "10.10.0.31"  # someone edits the metadata
    meta.write_text(json.dumps(record))
    assert cache.lookup(key) is None
    assert cache.lookup(make_key(tensorrt_version="10.10.0.31")) is None  # its file name is the old digest
    [entry] = cache.entries()
    assert "does not match its file name" in entry.problem


def test_entry_under_a_colliding_digest_is_not_returned(tmp_path):
    """A JSON whose key differs from the requested one is a miss even at the requested file name
    (what a digest collision would look like)."""
    cache = EngineCache(tmp_path)
    wanted, other = make_key(), make_key(gpu_name="NVIDIA A100-SXM4-80GB")
    cache.store(other, b"engine for the A100")
    os.replace(cache.engine_path(other), cache.engine_path(wanted))
    os.replace(cache.meta_path(other), cache.meta_path(wanted))
    assert cache.lookup(wanted) is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_engine_file_is_a_miss(tmp_path, damage):
    cache = EngineCache(tmp_path)
    key = make_key()
    path = cache.store(key, b"0123456789" * 10)
    if damage == "flip":
        path.write_bytes(b"0123456789" * 9 + b"012345678X")  # same size, other bytes
    elif damage == "truncate":
        path.write_bytes(b"0123456789")
    else:
        path.unlink()
    assert cache.lookup(key) is None
    if damage == "flip":
        assert cache.lookup(key, verify=False) == path  # only the hash catches this one


def test_unreadable_or_missing_metadata_is_a_miss(tmp_path):
    cache = EngineCache(tmp_path)
    key = make_key()
    cache.store(key, b"engine")
    cache.meta_path(key).write_text("{not json")
    assert cache.lookup(key) is None
    cache.meta_path(key).unlink()
    assert cache.lookup(key) is None
    [entry] = cache.entries()
    assert entry.problem == "no metadata"


def test_store_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    cache = EngineCache(tmp_path)
    key = make_key()
    cache.store(key, b"first engine")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(engine_cache.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.store(key, b"second engine, never completed")
    monkeypatch.undo()
    assert cache.lookup(key).read_bytes() == b"first engine"  # the old entry, whole
    assert not list(tmp_path.glob("*.tmp*"))


def test_overwrite_replaces_a_damaged_entry(tmp_path):
    cache = EngineCache(tmp_path)
    key = make_key()
    cache.store(key, b"old")
    cache.engine_path(key).write_bytes(b"garbage!")
    assert cache.lookup(key) is None
    cache.store(key, b"rebuilt")
    assert cache.lookup(key).read_bytes() == b"rebuilt"


# -- listing and pruning ---------------------------------------------------------------------------

def test_stale_entries_are_listed_and_pruned(tmp_path):
    cache = EngineCache(tmp_path)
    here = ("10.9.0.34", "NVIDIA H100 80GB HBM3", "9.0")
    current = make_key()
    old_trt = make_key(tensorrt_version="10.3.0.26")
    other_gpu = make_key(gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9")
    int8 = make_key(int8=True, calib_sha256="c" * 64)
    for key in (current, old_trt, other_gpu, int8):
        cache.store(key, key.digest().encode())
    cache.calibration_path(old_trt).write_bytes(b"calibration table")
    (tmp_path / ("f" * 32 + ".engine")).write_bytes(b"orphan engine, no metadata")

    assert len(cache.entries()) == 5
    assert {e.digest for e in cache.others_for(current)} == {old_trt.digest(), other_gpu.digest(), int8.digest()}
    stale = cache.stale(*here)
    assert {e.digest for e in stale} == {old_trt.digest(), other_gpu.digest(), "f" * 32}
    removed = cache.prune(stale)
    assert cache.calibration_path(old_trt) in removed and len(removed) == 6  # 2 x (engine, json), calib, orphan
    assert {e.digest for e in cache.entries()} == {current.digest(), int8.digest()}
    assert cache.lookup(current) is not None and cache.lookup(int8) is not None
    assert cache.lookup(old_trt) is None


def test_old_temporary_files_count_as_broken(tmp_path):
    cache = EngineCache(tmp_path)
    fresh, old = tmp_path / "x.engine.tmp1", tmp_path / "y.engine.tmp2"
    fresh.write_bytes(b"being written now")
    old.write_bytes(b"left by a crash")
    os.utime(old, (1, 1))
    assert [e.engine for e in cache.broken()] == [old]
    cache.prune(cache.broken())
    assert fresh.exists() and not old.exists()


def test_default_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("PISR_ROS_ENGINE_CACHE", raising=False)
    monkeypatch.delenv("PISR_ROS_CACHE", raising=False)
    assert default_root() == engine_cache.Path.home() / ".cache" / "pisr_ros" / "engines"
    monkeypatch.setenv("PISR_ROS_CACHE", str(tmp_path / "c"))
    assert default_root() == tmp_path / "c" / "engines"
    monkeypatch.setenv("PISR_ROS_ENGINE_CACHE", str(tmp_path / "e"))
    assert default_root() == tmp_path / "e" and EngineCache().root == tmp_path / "e"


# -- calibration data --------------------------------------------------------------------------

def _write_images(folder, count, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), rng.integers(0, 255, (8, 16, 3), dtype=np.uint8))


def test_calibration_images_are_sorted_and_capped(tmp_path):
    _write_images(tmp_path / "calib" / "sub", 10)
    (tmp_path / "calib" / "notes.txt").write_text("not an image")
    files = calibration_images(tmp_path / "calib")
    assert len(files) == 10 and files == sorted(files)
    few = calibration_images(tmp_path / "calib", max_images=4)
    assert len(few) == 4 and few[0] == files[0] and set(few) <= set(files)
    with pytest.raises(UsageError, match="no such directory"):
        calibration_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no .* images"):
        calibration_images(tmp_path / "empty")


def test_calibration_hash_covers_images_and_preprocessing(tmp_path):
    _write_images(tmp_path / "calib", 3)
    files = calibration_images(tmp_path / "calib")
    args = ((512, 1024), (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    base = calibration_sha256(files, tmp_path / "calib", *args)
    assert base == calibration_sha256(files, tmp_path / "calib", *args)
    assert base != calibration_sha256(files, tmp_path / "calib", (256, 512), *args[1:])
    assert base != calibration_sha256(files, tmp_path / "calib", args[0], (0.0, 0.0, 0.0), args[2])
    assert base != calibration_sha256(files[:2], tmp_path / "calib", *args)
    cv2.imwrite(str(files[0]), np.zeros((8, 16, 3), np.uint8))
    assert base != calibration_sha256(files, tmp_path / "calib", *args)


# -- without TensorRT ------------------------------------------------------------------------

@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_current_key_says_what_to_install(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"model")
    with pytest.raises(TensorRTUnavailable, match="pip install tensorrt") as info:
        engine_cache.current_key(tmp_path / "m.onnx")
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, UsageError)


# -- the command line --------------------------------------------------------------------------

def test_cli_missing_onnx_names_the_export_command(tmp_path, capsys):
    assert run_cli(["--onnx", str(tmp_path / "nope.onnx"), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "no ONNX file at" in err and f"pisr-ros export --model CHECKPOINT.pt --out {tmp_path / 'nope.onnx'} --size HxW" in err


def test_cli_int8_needs_calib(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"model")
    assert run_cli(["--onnx", str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "--int8 needs --calib DIR" in capsys.readouterr().err
    assert run_cli(["--onnx", str(tmp_path / "m.onnx"), "--calib", str(tmp_path)]) == 2
    assert "--calib is used only with --int8" in capsys.readouterr().err
    assert run_cli(["--onnx", str(tmp_path / "m.onnx"), "--int8", "--calib", str(tmp_path / "none")]) == 2
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    ([], "--onnx X.onnx is required"),
    (["--onnx", "m.onnx", "--workspace", "0"], "--workspace must be at least 1"),
    (["--onnx", "m.onnx", "--max-batch", "0"], "--max-batch must be at least 1"),
])
def test_cli_argument_errors(argv, message, capsys):
    assert run_cli(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_list_and_prune_without_tensorrt(tmp_path, capsys, monkeypatch):
    cache = EngineCache(tmp_path / "c")
    assert run_cli(["--list", "--cache", str(cache.root)]) == 0
    assert "0 entries" in capsys.readouterr().out

    key = make_key(fp16=True)
    cache.store(key, b"engine", onnx_path=tmp_path / "m.onnx")
    (cache.root / ("e" * 32 + ".engine")).write_bytes(b"orphan")
    # Listing must not need TensorRT: pretend it is missing even where it is installed.
    monkeypatch.setattr(build_engine_cli, "environment",
                        lambda device: (_ for _ in ()).throw(TensorRTUnavailable("TensorRT is not installed")))
    assert run_cli(["--list", "--cache", str(cache.root)]) == 0
    out = capsys.readouterr().out
    assert "2 entries" in out and "TensorRT is not installed" in out
    assert key.digest() in out and "fp16" in out and "NVIDIA H100 80GB HBM3 (9.0)" in out and "10.9.0.34" in out
    assert "broken: no metadata" in out

    assert run_cli(["--prune", "--cache", str(cache.root)]) == 0
    assert "pruned 1 broken" in capsys.readouterr().out
    assert [e.digest for e in cache.entries()] == [key.digest()]  # staleness unknown: kept


def test_cli_list_marks_stale_entries(tmp_path, capsys, monkeypatch):
    cache = EngineCache(tmp_path)
    ok, stale = make_key(), make_key(tensorrt_version="10.3.0.26")
    cache.store(ok, b"a")
    cache.store(stale, b"b")
    monkeypatch.setattr(build_engine_cli, "environment", lambda device: ("10.9.0.34", "NVIDIA H100 80GB HBM3", "9.0"))
    assert run_cli(["--list", "--prune", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{ok.digest()}  ok" in out and f"{stale.digest()}  stale" in out
    assert "pruned 1 stale or broken entry" in out
    assert cache.lookup(ok) is not None and cache.lookup(stale) is None


# -- build_engine / ensure_engine against a recording stand-in for tensorrt ----------------------
# These run the Python control flow of tensorrt_backend (which otherwise never runs without a GPU):
# the call sequence, profile shapes, flags, error reports and cache use. They check our code
# against our reading of the TensorRT API, not the API itself; test/gpu does that.

class _Recorder:
    def __init__(self):
        self.calls: list[tuple] = []


class _FakeTensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


def fake_tensorrt(*, parse_ok=True, build_ok=True, outputs=("semantic", "center", "offset"),
                  input_shape=(-1, 3, 64, 128), flags=("FP16", "INT8")):
    rec = _Recorder()

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self):
            pass

    class IProgressMonitor:
        def __init__(self):
            pass

    class Network:
        num_inputs, num_outputs = 1, len(outputs)

        def get_input(self, i):
            return _FakeTensor("images", input_shape)

        def get_output(self, i):
            return _FakeTensor(outputs[i], (-1, 1, 16, 32))

    class Profile:
        def set_shape(self, name, low, opt, high):
            rec.calls.append(("set_shape", name, low, opt, high))

    class Config:
        progress_monitor = None

        def set_memory_pool_limit(self, pool, size):
            rec.calls.append(("set_memory_pool_limit", pool, size))

        def set_flag(self, flag):
            rec.calls.append(("set_flag", flag))

        def add_optimization_profile(self, profile):
            return 0

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            rec.calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            monitor = config.progress_monitor
            if monitor is not None:
                monitor.phase_start("Building engine", None, 2)
                monitor.phase_start("Tactic search", "Building engine", 3)
                rec.calls.append(("step_complete", monitor.step_complete("Building engine", 0)))
                monitor.phase_finish("Tactic search")
                monitor.phase_finish("Building engine")
            if not build_ok:
                self.logger.log(ILogger.ERROR, "out of workspace")
                return None
            return memoryview(b"serialized plan")

    class OnnxParser:
        num_errors = 0 if parse_ok else 2

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            rec.calls.append(("parse_from_file", path))
            return parse_ok

        def get_error(self, i):
            return f"node {i}: unsupported operator"

    trt = argparse.Namespace(
        __version__="10.9.0.34", ILogger=ILogger, IProgressMonitor=IProgressMonitor, Builder=Builder,
        OnnxParser=OnnxParser, BuilderFlag=argparse.Namespace(**{f: f for f in flags}),
        MemoryPoolType=argparse.Namespace(WORKSPACE="WORKSPACE"))
    return trt, rec


@pytest.fixture
def backend_module(monkeypatch):
    """tensorrt_backend with CUDA device handling stubbed out, for the stand-in tensorrt."""
    import contextlib

    import torch

    from pisr_ros.inference import tensorrt_backend

    monkeypatch.setattr(tensorrt_backend, "_LOGGER", None)
    monkeypatch.setattr(tensorrt_backend, "cuda_device", lambda device: torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    return tensorrt_backend


def use_fake(monkeypatch, module, **kwargs):
    trt, rec = fake_tensorrt(**kwargs)
    monkeypatch.setattr(module, "_import_tensorrt", lambda: trt)
    # The fake network stands in for a Panoptic-DeepLab export; its file is never written, so the
    # outputs its family names are not read from ONNX metadata here (test_inference covers that).
    monkeypatch.setattr(module, "expected_outputs", lambda path: ("semantic", "center", "offset"))
    return trt, rec


def test_build_engine_call_sequence(backend_module, monkeypatch, tmp_path, capsys):
    trt, rec = use_fake(monkeypatch, backend_module)
    plan = backend_module.build_engine(tmp_path / "m.onnx", fp16=True, workspace_mb=512, max_batch=4)
    assert plan == b"serialized plan"
    assert rec.calls[:2] == [("create_network", 0), ("parse_from_file", str(tmp_path / "m.onnx"))]
    assert ("set_memory_pool_limit", "WORKSPACE", 512 << 20) in rec.calls
    assert ("set_shape", "images", (1, 3, 64, 128), (1, 3, 64, 128), (4, 3, 64, 128)) in rec.calls
    assert ("set_flag", "FP16") in rec.calls and ("set_flag", "INT8") not in rec.calls
    assert ("step_complete", True) in rec.calls  # anything else would cancel the build
    err = capsys.readouterr().err
    assert "Building engine (2 steps)" in err and "Tactic search (3 steps)" in err and "Building engine done in" in err


def test_build_engine_reports_parse_and_build_errors(backend_module, monkeypatch, tmp_path, capsys):
    use_fake(monkeypatch, backend_module, parse_ok=False)
    with pytest.raises(RuntimeError, match="could not parse .*node 0: unsupported operator; node 1"):
        backend_module.build_engine(tmp_path / "m.onnx", progress=False)
    use_fake(monkeypatch, backend_module, build_ok=False)
    with pytest.raises(RuntimeError, match="could not build an engine .*out of workspace"):
        backend_module.build_engine(tmp_path / "m.onnx", progress=False)
    assert "[TensorRT] error: out of workspace" in capsys.readouterr().err


def test_build_engine_checks_the_network(backend_module, monkeypatch, tmp_path):
    use_fake(monkeypatch, backend_module, outputs=("logits",))
    with pytest.raises(UsageError, match="expected input 'images' and outputs"):
        backend_module.build_engine(tmp_path / "m.onnx", progress=False)
    use_fake(monkeypatch, backend_module, input_shape=(1, 3, 64, 128))
    with pytest.raises(UsageError, match="batch size is fixed at 1"):
        backend_module.build_engine(tmp_path / "m.onnx", progress=False, max_batch=2)
    trt, rec = use_fake(monkeypatch, backend_module, input_shape=(1, 3, 64, 128))
    backend_module.build_engine(tmp_path / "m.onnx", progress=False, max_batch=1)
    assert ("set_shape", "images", (1, 3, 64, 128), (1, 3, 64, 128), (1, 3, 64, 128)) in rec.calls


def test_precision_flags_refused_where_tensorrt_removed_them(backend_module, monkeypatch, tmp_path):
    use_fake(monkeypatch, backend_module, flags=())  # TensorRT 11: no FP16/INT8 builder flags
    with pytest.raises(TensorRTUnavailable, match="TensorRT 11 removed the precision flags"):
        backend_module.build_engine(tmp_path / "m.onnx", fp16=True, progress=False)
    assert backend_module.build_engine(tmp_path / "m.onnx", progress=False) == b"serialized plan"


def test_ctrl_c_in_the_progress_monitor_cancels_the_build(backend_module, monkeypatch, tmp_path):
    trt, _ = use_fake(monkeypatch, backend_module)
    monitor = backend_module._progress_monitor(trt)
    monitor.phase_start("Building engine", None, 1)
    monkeypatch.setattr(backend_module.time, "monotonic", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    assert monitor.step_complete("Building engine", 0) is False and monitor.cancelled


def test_ensure_engine_builds_once_then_reuses(backend_module, monkeypatch, tmp_path, capsys):
    use_fake(monkeypatch, backend_module)
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx bytes")
    monkeypatch.setattr(backend_module, "current_key",
                        lambda path, **kw: make_key(onnx_sha256=kw["onnx_sha256"], fp16=kw["fp16"],
                                                    max_batch=kw["max_batch"], workspace_mb=kw["workspace_mb"]))
    cache = EngineCache(tmp_path / "c")
    with pytest.raises(UsageError, match=f"build it with `pisr-ros build-engine --onnx {onnx_path} --fp16 "
                                         f"--max-batch 2 --cache {cache.root}`"):
        backend_module.ensure_engine(onnx_path, fp16=True, max_batch=2, cache_dir=cache.root, build=False)
    first = backend_module.ensure_engine(onnx_path, fp16=True, max_batch=2, cache_dir=cache.root)
    assert first.built and first.path.read_bytes() == b"serialized plan"
    assert first.key.onnx_sha256 == file_sha256(onnx_path)
    assert "building a TensorRT engine" in capsys.readouterr().err
    monkeypatch.setattr(backend_module, "build_engine", lambda *a, **k: pytest.fail("rebuilt a cached engine"))
    again = backend_module.ensure_engine(onnx_path, fp16=True, max_batch=2, cache_dir=cache.root)
    assert not again.built and again.path == first.path and again.others == 0
    with pytest.raises(BaseException, match="rebuilt a cached engine"):  # another key: a build
        backend_module.ensure_engine(onnx_path, fp16=False, max_batch=2, cache_dir=cache.root)
