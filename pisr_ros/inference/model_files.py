"""What a model file says about itself: checkpoints (.pt) and exported networks (.onnx).

Every backend needs the same few facts besides the weights: the model family (which names the
network's outputs and post-processes them), the input size the network runs at, the pixel mean
and std it was trained with, and the post-processing settings tuned for it, if any. A checkpoint
carries them in its spec (and its "postprocess" entry); our ONNX export writes both into the
file's metadata, so an .onnx (or an engine built from one) can be served without the checkpoint
it came from.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pisr_ros.errors import UsageError

ONNX_INPUT = "images"
META_SPEC = "pisr_ros.spec"  # the model spec (JSON), input_size = the exported size
META_SOURCE_SHA256 = "pisr_ros.source_sha256"  # the checkpoint the file was exported from
META_POSTPROCESS = "pisr_ros.postprocess"  # settings tuned for the model (JSON), as in checkpoints
CHECKPOINT_POSTPROCESS = "postprocess"  # checkpoint key: {device type: {setting: value}}

EXPORT_HINT = "pisr-ros export --model CHECKPOINT.pt --out {path} --size HxW"
#: What the node, `pisr-ros predict`, `bench` and `replay-eval` serve when no model is named
#: (config/panoptic.yaml names the same file; a test keeps them equal). Found by ``find_model``.
DEFAULT_MODEL = "pd_light_pisr_residual_synth.pt"


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
    model_spec: Any = None  # ``spec`` as its family's spec object
    postprocess: dict = field(default_factory=dict)  # {device type: {setting: value}} tuned for it

    @property
    def family(self):
        from pisr_ros.families import family_of

        return family_of(self.model_spec)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.family.outputs(self.model_spec))


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _info_from_spec(path: Path, kind: str, spec: dict, source_sha256: str, postprocess) -> ModelInfo:
    from pisr_ros.models.spec import spec_from_dict

    try:
        model_spec = spec_from_dict(spec)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from exc
    if not isinstance(postprocess, dict) or not all(isinstance(v, dict) for v in postprocess.values()):
        raise UsageError(f"{path}: its stored post-processing settings are not {{device: {{name: value}}}}; "
                         "write them with `pisr-ros tune-postprocess`")
    return ModelInfo(path=path, kind=kind, name=str(spec.get("name", path.stem)),
                     input_size=tuple(int(v) for v in model_spec.input_size),
                     pixel_mean=tuple(float(v) for v in model_spec.pixel_mean),
                     pixel_std=tuple(float(v) for v in model_spec.pixel_std),
                     spec=spec, source_sha256=source_sha256, model_spec=model_spec, postprocess=postprocess)


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
                         f"or use the shipped models/{DEFAULT_MODEL}")
    if path.suffix == ".onnx":
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and others from protobuf
            raise UsageError(f"{path} is not a readable ONNX file ({exc})") from exc
        meta = {p.key: p.value for p in proto.metadata_props}
        if META_SPEC not in meta:
            raise UsageError(f"{path} has no pisr_ros metadata; export it with `{EXPORT_HINT.format(path=path)}`")
        try:
            spec = json.loads(meta[META_SPEC])
            postprocess = json.loads(meta.get(META_POSTPROCESS, "{}"))
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: its pisr_ros metadata is not JSON ({exc}); export it again with "
                             f"`{EXPORT_HINT.format(path=path)}`") from exc
        return _info_from_spec(path, "onnx", spec, meta.get(META_SOURCE_SHA256, ""), postprocess)
    if path.suffix in (".pt", ".pth"):
        from pisr_ros.models.spec import read_checkpoint

        ckpt = read_checkpoint(path)
        return _info_from_spec(path, "checkpoint", ckpt["spec"], sha256_of(path),
                               ckpt.get(CHECKPOINT_POSTPROCESS, {}))
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
            else f"train one with `pisr-ros train` or use the shipped {DEFAULT_MODEL}")
    raise UsageError(f"model {name!r} not found (looked at: {looked}); {hint}")
