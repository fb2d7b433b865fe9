"""A cache of built TensorRT engines, keyed by everything that makes an engine valid.

A TensorRT engine is compiled for one network, one TensorRT version and one GPU; loading it
anywhere else fails at best and misbehaves at worst. So every engine is stored with the full
``EngineKey`` it was built for, and ``lookup`` returns an engine only when the stored key equals
the requested one field by field and the engine file is the one the metadata describes:

    <root>/<digest>.engine   the serialized engine (TensorRT "plan")
    <root>/<digest>.json     {"key": {...}, "engine_sha256", "engine_size", "built_at", ...}
    <root>/<digest>.calib    INT8 calibration cache (int8 keys only)

``root`` is ``$PISR_ROS_ENGINE_CACHE``, else ``$PISR_ROS_CACHE/engines``, else
``~/.cache/pisr_ros/engines``. Pure Python: nothing here imports TensorRT except
``current_key``, which asks the installed TensorRT and CUDA what they are.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from pisr_ros.errors import UsageError
from pisr_ros.inference.model_files import sha256_of

# Bump when build_engine changes in a way that changes the engines it makes (profiles, flags):
# old entries then stop matching and are rebuilt instead of silently reused.
BUILD_RECIPE = 1
META_FORMAT = 1
CALIB_MAX_IMAGES = 500  # NVIDIA's INT8 guidance: about 500 representative images suffice
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
STALE_TMP_SECONDS = 3600.0  # a temporary file this old is a crashed write, not one in progress

BUILD_HINT = "pisr-ros build-engine --onnx {onnx}"


class TensorRTUnavailable(UsageError, RuntimeError):
    """TensorRT, CUDA or a GPU is missing. A ``UsageError`` so the command line prints one line
    and exits 2; a ``RuntimeError`` for library callers that catch that."""


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on.

    ``workspace_mb`` is part of the key: the workspace limit decides which tactics the builder
    may pick and so how much scratch memory the engine needs at run time; an engine built with
    a larger limit may not respect the smaller budget asked for. ``max_batch`` fixes the
    optimisation profile. ``calib_sha256`` (INT8 only) covers the calibration images and their
    preprocessing, since they set the INT8 scales. ``recipe`` is ``BUILD_RECIPE``.
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "9.0"
    fp16: bool = False
    int8: bool = False
    calib_sha256: str | None = None
    max_batch: int = 1
    workspace_mb: int | None = None  # None: TensorRT's default (the device's memory)
    recipe: int = BUILD_RECIPE

    def __post_init__(self) -> None:
        if self.int8 and not self.calib_sha256:
            raise ValueError("an int8 key needs calib_sha256 (the calibration data decides the scales)")
        if not self.int8 and self.calib_sha256 is not None:
            raise ValueError("calib_sha256 belongs to int8 keys only")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.workspace_mb is not None and self.workspace_mb < 1:
            raise ValueError(f"workspace_mb must be at least 1 (or None), got {self.workspace_mb}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineKey":
        """Strict: a missing or unknown field is an error, so a key written by other code never
        half-matches."""
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise ValueError(f"engine key fields differ: missing {sorted(names - set(data))}, "
                             f"unknown {sorted(set(data) - names)}")
        return cls(**data)

    def digest(self) -> str:
        return key_digest(self)

    def precision(self) -> str:
        return "+".join(p for p, on in (("int8", self.int8), ("fp16", self.fp16)) if on) or "fp32"


def key_digest(key: EngineKey) -> str:
    """32 hex digits of the SHA-256 of the key's canonical JSON: the entry's file name.
    A collision cannot load a wrong engine: ``lookup`` compares the stored key too."""
    canonical = json.dumps(key.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


file_sha256 = sha256_of  # one implementation (pisr_ros.inference.model_files)


def default_root() -> Path:
    if os.environ.get("PISR_ROS_ENGINE_CACHE"):
        return Path(os.environ["PISR_ROS_ENGINE_CACHE"])
    if os.environ.get("PISR_ROS_CACHE"):
        return Path(os.environ["PISR_ROS_CACHE"]) / "engines"
    return Path.home() / ".cache" / "pisr_ros" / "engines"


@dataclass(frozen=True)
class CacheEntry:
    """One entry as found on disk; ``problem`` says why it can never be loaded, if so."""

    digest: str
    engine: Path
    meta: Path
    key: EngineKey | None = None
    built_at: str | None = None
    onnx_path: str | None = None
    size: int | None = None
    problem: str | None = None

    def files(self) -> list[Path]:
        candidates = (self.engine, self.meta, self.engine.with_suffix(".calib"))
        return [p for p in dict.fromkeys(candidates) if p.exists()]


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: readers
    see the old file or the whole new one, never a part."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class EngineCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    def engine_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.digest()}.engine"

    def meta_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.digest()}.json"

    def calibration_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.digest()}.calib"

    def lookup(self, key: EngineKey, *, verify: bool = True) -> Path | None:
        """The engine file for exactly ``key``, or None.

        None unless the metadata's key equals ``key`` and the engine file has the recorded size
        (and, with ``verify``, SHA-256): an edited or foreign JSON, a hash collision or a
        truncated engine all read as a miss, and the caller rebuilds.
        """
        engine, meta = self.engine_path(key), self.meta_path(key)
        try:
            record = json.loads(meta.read_text())
            if EngineKey.from_dict(record["key"]) != key:
                return None
            if engine.stat().st_size != int(record["engine_size"]):
                return None
            if verify and file_sha256(engine) != record["engine_sha256"]:
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return engine

    def store(self, key: EngineKey, engine_bytes: bytes, *, onnx_path: str | Path | None = None,
              build_seconds: float | None = None) -> Path:
        """Write the engine, then its metadata (the metadata is what makes an entry visible to
        ``lookup``, so a crash between the two leaves a miss, not a wrong engine)."""
        self.root.mkdir(parents=True, exist_ok=True)
        engine_bytes = bytes(engine_bytes)
        engine = self.engine_path(key)
        _atomic_write(engine, engine_bytes)
        record = {
            "format": META_FORMAT,
            "digest": key.digest(),
            "key": key.to_dict(),
            "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
            "engine_size": len(engine_bytes),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": None if build_seconds is None else round(float(build_seconds), 1),
            "onnx_path": None if onnx_path is None else str(Path(onnx_path).resolve()),
        }
        _atomic_write(self.meta_path(key), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
        return engine

    def entries(self) -> list[CacheEntry]:
        """Every entry on disk, loadable or not, oldest first."""
        if not self.root.is_dir():
            return []
        found: list[CacheEntry] = []
        digests = {p.stem for suffix in ("json", "engine", "calib") for p in self.root.glob(f"*.{suffix}")}
        for digest in sorted(digests):
            found.append(self._read_entry(digest))
        now = time.time()
        for tmp in sorted(self.root.glob("*.tmp*")):
            if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                found.append(CacheEntry(digest=tmp.name, engine=tmp, meta=tmp, problem="unfinished write"))
        return sorted(found, key=lambda e: e.built_at or "")

    def _read_entry(self, digest: str) -> CacheEntry:
        engine, meta = self.root / f"{digest}.engine", self.root / f"{digest}.json"
        if not meta.exists():
            return CacheEntry(digest, engine, meta, problem="no metadata")
        try:
            record = json.loads(meta.read_text())
            key = EngineKey.from_dict(record["key"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return CacheEntry(digest, engine, meta, problem=f"unreadable metadata ({exc})")
        entry = dict(digest=digest, engine=engine, meta=meta, key=key, built_at=record.get("built_at"),
                     onnx_path=record.get("onnx_path"), size=record.get("engine_size"))
        if key.digest() != digest:
            return CacheEntry(**entry, problem="metadata key does not match its file name (edited?)")
        if not engine.exists():
            return CacheEntry(**entry, problem="engine file missing")
        if engine.stat().st_size != record.get("engine_size"):
            return CacheEntry(**entry, problem="engine size differs from its metadata")
        return CacheEntry(**entry)

    def stale(self, tensorrt_version: str, gpu_name: str, compute_capability: str) -> list[CacheEntry]:
        """Entries this machine can never load: built with another TensorRT or for another GPU,
        or broken (``problem`` set)."""
        here = (tensorrt_version, gpu_name, compute_capability)
        return [e for e in self.entries() if e.problem or e.key is None
                or (e.key.tensorrt_version, e.key.gpu_name, e.key.compute_capability) != here]

    def broken(self) -> list[CacheEntry]:
        return [e for e in self.entries() if e.problem]

    def others_for(self, key: EngineKey) -> list[CacheEntry]:
        """Entries for the same ONNX file under another key (other TensorRT, GPU or flags)."""
        return [e for e in self.entries()
                if e.key is not None and e.key.onnx_sha256 == key.onnx_sha256 and e.key != key]

    def prune(self, entries: Iterable[CacheEntry]) -> list[Path]:
        """Delete the files of ``entries``; returns what was deleted."""
        removed = []
        for entry in entries:
            for path in entry.files():
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed


def calibration_images(calib_dir: str | Path, max_images: int = CALIB_MAX_IMAGES) -> list[Path]:
    """The images under ``calib_dir`` used for INT8 calibration: sorted, and at most
    ``max_images`` spread evenly over the sorted list (deterministic, so the key is too)."""
    calib_dir = Path(calib_dir)
    if not calib_dir.is_dir():
        raise UsageError(f"--calib {calib_dir}: no such directory (INT8 calibration reads images from it)")
    files = sorted(p for p in calib_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(f"--calib {calib_dir}: no {'/'.join(IMAGE_SUFFIXES)} images found")
    if len(files) > max_images:
        files = [files[i * len(files) // max_images] for i in range(max_images)]
    return files


def calibration_sha256(files: Sequence[Path], root: str | Path, input_size: Sequence[int],
                       pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> str:
    """SHA-256 over the calibration images (relative names and bytes) and the preprocessing
    that turns them into network input: a change in either changes the INT8 scales."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"input_size": [int(v) for v in input_size],
                              "pixel_mean": [float(v) for v in pixel_mean],
                              "pixel_std": [float(v) for v in pixel_std]}, sort_keys=True).encode())
    for path in files:
        digest.update(Path(path).relative_to(root).as_posix().encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            "TensorRT is not installed in this Python. On a machine with an NVIDIA GPU and driver: "
            "`pip install tensorrt` (TensorRT >= 10; `tensorrt-cu12`/`tensorrt-cu13` pins the CUDA major) "
            f"and a CUDA build of torch. Elsewhere use the onnxruntime or torch backend. ({exc})") from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} is installed; this code needs TensorRT >= 10 "
                                  "(named I/O tensors, execute_async_v3): `pip install -U tensorrt`")
    return trt


def cuda_device(device: str = "cuda:0"):
    """The torch CUDA device for ``device``; ``TensorRTUnavailable`` if there is none."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        raise UsageError(f"--device {device}: TensorRT runs on a CUDA device (cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise TensorRTUnavailable("CUDA is not available to torch here (no NVIDIA GPU/driver, or a CPU-only "
                                  "torch): TensorRT needs both. Install the CUDA build of torch that fits the "
                                  "driver, or use the onnxruntime or torch backend on CPU.")
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device("cuda", index)


def environment(device: str = "cuda:0") -> tuple[str, str, str]:
    """(TensorRT version, GPU name, compute capability "major.minor") of this machine, from the
    installed TensorRT and torch.cuda; ``TensorRTUnavailable`` when either is missing."""
    trt = _import_tensorrt()
    import torch

    dev = cuda_device(device)
    major, minor = torch.cuda.get_device_capability(dev)
    return str(trt.__version__), torch.cuda.get_device_name(dev), f"{major}.{minor}"


def current_key(onnx_path: str | Path, *, fp16: bool = False, int8: bool = False,
                calib_sha256: str | None = None, max_batch: int = 1, workspace_mb: int | None = None,
                device: str = "cuda:0", onnx_sha256: str | None = None) -> EngineKey:
    """The key an engine for ``onnx_path`` would have if built here and now."""
    tensorrt_version, gpu_name, capability = environment(device)
    return EngineKey(onnx_sha256=onnx_sha256 or file_sha256(onnx_path), tensorrt_version=tensorrt_version,
                     gpu_name=gpu_name, compute_capability=capability, fp16=fp16, int8=int8,
                     calib_sha256=calib_sha256 if int8 else None, max_batch=max_batch, workspace_mb=workspace_mb)


def build_command(onnx_path: str | Path, key: EngineKey | None = None, *, calib_dir: str | Path | None = None,
                  cache_dir: str | Path | None = None) -> str:
    """The ``pisr-ros build-engine`` command line that builds the engine for ``key``."""
    parts = [BUILD_HINT.format(onnx=onnx_path)]
    if key is not None:
        parts += ["--fp16"] if key.fp16 else []
        parts += [f"--int8 --calib {calib_dir or 'DIR'}"] if key.int8 else []
        parts += [f"--workspace {key.workspace_mb}"] if key.workspace_mb else []
        parts += [f"--max-batch {key.max_batch}"] if key.max_batch != 1 else []
    parts += [f"--cache {cache_dir}"] if cache_dir else []
    return " ".join(parts)
