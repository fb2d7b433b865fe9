"""What a model file says about itself: checkpoints (.pt) and exported networks (.onnx).

Every backend needs the same few facts besides the weights: the input size the network runs
at, and the pixel mean and std it was trained with. A checkpoint carries them in its spec; our
ONNX export writes the spec into the file's metadata, so an .onnx (or an engine built from
one) can be served without the checkpoint it came from.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pisr_ros.errors import UsageError

ONNX_INPUT = "images"
ONNX_OUTPUTS = ("semantic", "center", "offset")
META_SPEC = "pisr_ros.spec"  # the model spec (JSON), input_size = the exported size
META_SOURCE_SHA256 = "pisr_ros.source_sha256"  # the checkpoint the file was exported from

EXPORT_HINT = "pisr-ros export --model CHECKPOINT.pt --out {path} --size HxW"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    kind: str  # "checkpoint" or "onnx"
    name: str
    input_size: tuple[int, int]  # (H, W) the network runs at
    pixel_mean: tuple[float, float, float]  # RGB, 0..255
    pixel_std: tuple[float, float, float]
    spec: dict  # the full model spec
    source_sha256: str  # of the checkpoint (the file itself for a checkpoint)


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _info_from_spec(path: Path, kind: str, spec: dict, source_sha256: str) -> ModelInfo:
    return ModelInfo(path=path, kind=kind, name=str(spec.get("name", path.stem)),
                     input_size=tuple(int(v) for v in spec["input_size"]),
                     pixel_mean=tuple(float(v) for v in spec["pixel_mean"]),
                     pixel_std=tuple(float(v) for v in spec["pixel_std"]),
                     spec=spec, source_sha256=source_sha256)


def read_model_info(path: str | Path) -> ModelInfo:
    """``ModelInfo`` of a checkpoint or of an ONNX file written by ``pisr-ros export``.

    Raises ``UsageError`` naming the command that makes the file when it is missing, and saying
    what is wrong when it is not one of ours.
    """
    path = Path(path)
    if not path.is_file():
        if path.suffix == ".onnx":
            raise UsageError(f"no ONNX file at {path}; make it with `{EXPORT_HINT.format(path=path)}`")
        raise UsageError(f"no model file at {path}; train one with `pisr-ros train` "
                         "or use the shipped models/pd_light_pisr_residual_synth.pt")
    if path.suffix == ".onnx":
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and others from protobuf
            raise UsageError(f"{path} is not a readable ONNX file ({exc})") from exc
        meta = {p.key: p.value for p in proto.metadata_props}
        if META_SPEC not in meta:
            raise UsageError(f"{path} has no pisr_ros metadata; export it with `{EXPORT_HINT.format(path=path)}`")
        return _info_from_spec(path, "onnx", json.loads(meta[META_SPEC]), meta.get(META_SOURCE_SHA256, ""))
    if path.suffix in (".pt", ".pth"):
        from pisr_ros.models.spec import read_checkpoint

        return _info_from_spec(path, "checkpoint", read_checkpoint(path)["spec"], sha256_of(path))
    raise UsageError(f"{path}: a model is a checkpoint (.pt) or an ONNX file (.onnx)")


def onnx_cache_dir() -> Path:
    return Path(os.environ.get("PISR_ROS_CACHE", Path.home() / ".cache" / "pisr_ros")) / "onnx"


def onnx_for(checkpoint: ModelInfo, input_size: tuple[int, int] | None = None, *, verbose: bool = True) -> Path:
    """An ONNX file of ``checkpoint`` at ``input_size`` (default: its own): the one beside it
    (``model.onnx`` next to ``model.pt``) when it was exported from exactly this checkpoint at
    this size, otherwise one exported once into the cache (``$PISR_ROS_CACHE/onnx``)."""
    size = tuple(input_size or checkpoint.input_size)
    sibling = checkpoint.path.with_suffix(".onnx")
    if sibling.is_file():
        try:
            info = read_model_info(sibling)
        except UsageError:
            info = None
        if info and info.source_sha256 == checkpoint.source_sha256 and info.input_size == size:
            return sibling
    cached = onnx_cache_dir() / f"{checkpoint.source_sha256[:16]}_{size[0]}x{size[1]}.onnx"
    if not cached.is_file():
        from pisr_ros.inference.export import export_checkpoint

        if verbose:
            print(f"exporting {checkpoint.path} at {size[0]}x{size[1]} to {cached} (once)", flush=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        export_checkpoint(checkpoint.path, tmp, size)
        os.replace(tmp, cached)
    return cached


def model_search_path() -> list[Path]:
    """Where a relative ``model`` is looked for after the current directory."""
    dirs = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            dirs.append(Path(get_package_share_directory("pisr_ros")) / "models")
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    dirs.append(Path(__file__).resolve().parents[2] / "models")  # the source tree
    return dirs


def find_model(name: str) -> Path:
    """A model file by name: as given when it exists, else in the package's models/ folders
    (``model_search_path``). Raises UsageError naming where it looked and how to make it."""
    path = Path(name).expanduser()
    if path.is_absolute() or path.exists():
        candidates = [path]
    else:
        candidates = [path] + [d / name for d in model_search_path()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    hint = (f"make it with `pisr-ros export --model CHECKPOINT.pt --out {name} --size HxW`" if path.suffix == ".onnx"
            else "train one with `pisr-ros train` or use the shipped pd_light_pisr_residual_synth.pt")
    raise UsageError(f"model {name!r} not found (looked at: {looked}); {hint}")
