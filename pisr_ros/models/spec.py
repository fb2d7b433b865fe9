"""Model specs and checkpoints. Panoptic-DeepLab's spec (``ModelSpec``) is a dataclass tree read
from ``config/models/*.yaml``; every spec names its family (``family:``, pisr_ros.families),
which builds the network, so the functions here serve every family.

A spec says everything needed to rebuild a network: backbone, decoders, heads, PISR, the loss
weights it was trained with, and the input it expects. Checkpoints carry their spec, so a
checkpoint can always be rebuilt, and a checkpoint that does not fit a given spec is refused
with the fields and weights that differ.

    spec = load_spec("config/models/pd_light_pisr.yaml")
    model = build_model(spec)                      # the family's nn.Module (here PanopticDeepLab)
    save_checkpoint("model.pt", model, spec)
    model, spec = load_checkpoint("model.pt")      # or load_checkpoint(path, spec=expected)
"""
from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pisr_ros.errors import UsageError
from pisr_ros.taxonomy import NUM_CLASSES

CHECKPOINT_FORMAT = "pisr_ros.checkpoint/1"
#: Spec fields a checkpoint may differ in from the spec it is loaded with.
FREE_SPEC_FIELDS = ("name:", "input_size:", "loss.")
FUSIONS = ("concat", "residual")


# Defaults: the CPU default model, config/models/pd_light_pisr.yaml (a test keeps them equal).


@dataclass(frozen=True)
class BackboneSpec:
    name: str = "mobilenet"  # "resnet" | "mobilenet"
    width: int = 16  # resnet: base width (64 for ResNet-50); mobilenet: stem channels
    output_stride: int = 32
    # resnet only
    depth: int = 50
    stem: str = "basic"  # "basic" (7x7) | "deeplab" (three 3x3)
    multi_grid: tuple[int, ...] = (1, 2, 4)
    # mobilenet only: rows of (expand, channels, repeats, stride)
    stages: tuple[tuple[int, int, int, int], ...] = (
        (1, 24, 1, 2), (3, 24, 1, 1), (3, 32, 3, 2), (3, 64, 3, 2), (3, 96, 2, 1), (4, 160, 3, 2))


@dataclass(frozen=True)
class DecoderSpec:
    """One Panoptic-DeepLab decoder: ASPP on res5, then two upsampling stages that fuse the
    projected res3 and res2 maps (DeepLabV3+ style)."""

    aspp_channels: int = 96
    aspp_dilations: tuple[int, ...] = (3, 6, 9)
    project_channels: tuple[int, int] = (16, 32)  # for (res2, res3)
    channels: int = 48  # output of each fusion stage
    kernel_size: int = 5  # depthwise-separable fusion convs


@dataclass(frozen=True)
class HeadSpec:
    semantic_channels: int = 32
    center_channels: int = 16
    offset_channels: int = 32
    kernel_size: int = 3
    convs: int = 1  # depthwise-separable convs before each 1x1 predictor


@dataclass(frozen=True)
class PISRSpec:
    """The PISR module (Borse et al. 2022, section 3). See docs/pisr_design_choices.md."""

    enabled: bool = True
    reweight: bool = True
    top_k: int = 16  # K instance encodings
    channels: int = 64  # C of the feature map F the encodings summarise
    key_channels: int = 32  # width of g_s(E) and h(F)
    value_channels: int = 64  # width of g_q(E), i.e. of F_pan before its output conv
    out_channels: int = 32  # F_pan as fed to the final heads
    reweight_hidden: int = 32  # hidden width of the 2-layer re-weighting MLP
    heatmap_radius: float = 32.0  # input pixels: H_inst falls linearly to 0 at this distance
    nms_kernel: int = 3  # cells of the grid PISR runs on (stride 4 x downsample)
    separable: bool = True  # h(F)'s 3x3 conv depthwise-separable (cheaper, for CPUs)
    downsample: int = 2  # run PISR on a grid this many times coarser than the heads' stride 4
    # How F_pan reaches the final outputs: "concat" = final heads on [decoder ; F_pan] at stride 4;
    # "residual" = a head on F_pan, on PISR's grid, adds corrections to the intermediate outputs.
    fusion: str = "concat"

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise UsageError(f"model spec: pisr.fusion must be one of {', '.join(FUSIONS)}, not {self.fusion!r}")


@dataclass(frozen=True)
class LossSpec:
    """L = gamma (L'sem + L'ins) + Lsem + Lins, Lins = center + offset (Panoptic-DeepLab)."""

    gamma: float = 1.0
    semantic_weight: float = 1.0
    top_k_percent: float = 0.2  # hard-pixel mining in the semantic cross-entropy
    center_weight: float = 200.0
    offset_weight: float = 0.01
    ignore_label: int = 255


class SpecBase:
    """``to_dict`` / ``from_dict`` for a family's frozen spec dataclass (nested dataclasses and
    tuples as YAML lists; unknown keys are an error, missing keys default)."""

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return _from_dict(cls, data, "")


@dataclass(frozen=True)
class ModelSpec(SpecBase):
    family: str = "panoptic_deeplab"  # pisr_ros.families; specs written before it was a field are this one
    name: str = "pd_light_pisr"
    num_classes: int = NUM_CLASSES
    input_size: tuple[int, int] = (512, 1024)  # H, W the model is trained and run at
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # RGB, 0..255
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    semantic_decoder: DecoderSpec = field(default_factory=DecoderSpec)
    instance_decoder: DecoderSpec = field(
        default_factory=lambda: DecoderSpec(aspp_channels=64, project_channels=(16, 24), channels=32))
    heads: HeadSpec = field(default_factory=HeadSpec)
    pisr: PISRSpec = field(default_factory=PISRSpec)
    loss: LossSpec = field(default_factory=LossSpec)

    def __post_init__(self):
        problems = model_spec_problems(self)
        if problems:
            raise UsageError("model spec: " + "; ".join(problems))


def model_spec_problems(spec: ModelSpec) -> list[str]:
    """What in ``spec`` no network can be built or run from, checked when the spec is made (a
    YAML file, a checkpoint's spec), so that the user reads why instead of a builder's traceback."""
    out = []
    if spec.num_classes != NUM_CLASSES:
        out.append(f"num_classes must be {NUM_CLASSES} (the Cityscapes training classes), not {spec.num_classes!r}")
    size = spec.input_size
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 32 for v in size)):
        out.append(f"input_size must be [H, W], two whole numbers of at least 32 pixels, not {_plain(size)!r}")
    for name in ("pixel_mean", "pixel_std"):
        value = getattr(spec, name)
        if not (isinstance(value, (tuple, list)) and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            out.append(f"{name} must be three numbers (R, G, B), not {_plain(value)!r}")
        elif name == "pixel_std" and min(value) <= 0:
            out.append(f"pixel_std must be positive, not {_plain(value)!r}")
    backbone = spec.backbone
    strides = {"resnet": (8, 16, 32), "mobilenet": (16, 32)}
    if backbone.name not in strides:
        out.append(f"backbone.name must be resnet or mobilenet, not {backbone.name!r}")
    elif backbone.output_stride not in strides[backbone.name]:
        out.append(f"backbone.output_stride of {backbone.name} must be one of "
                   f"{', '.join(map(str, strides[backbone.name]))}, not {backbone.output_stride!r}")
    if backbone.name == "resnet":
        from pisr_ros.models.backbone import RESNET_LAYERS

        if backbone.depth not in RESNET_LAYERS:
            out.append(f"backbone.depth must be one of {', '.join(map(str, sorted(RESNET_LAYERS)))}, "
                       f"not {backbone.depth!r}")
        if backbone.stem not in ("basic", "deeplab"):
            out.append(f"backbone.stem must be basic or deeplab, not {backbone.stem!r}")
    return out


def _plain(value):
    # Lists rather than tuples: YAML- and weights_only-friendly, and comparable after a round trip.
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _from_dict(cls, data, where, base=None):
    if not isinstance(data, dict):
        raise UsageError(f"model spec{where or ''}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UsageError(f"model spec{where}: unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(fields)}")
    base = base if base is not None else cls()
    kwargs = {}
    for name, value in data.items():
        current = getattr(base, name)
        if dataclasses.is_dataclass(current):
            # Missing keys keep the parent's default for this field (which may differ from the
            # sub-dataclass's own defaults, e.g. the instance decoder's narrower channels).
            kwargs[name] = _from_dict(type(current), value, f"{where}.{name}", current)
        else:
            kwargs[name] = _tuples(value)
    return dataclasses.replace(base, **kwargs)


def spec_from_dict(data: dict[str, Any]):
    """The spec of the family ``data["family"]`` names (Panoptic-DeepLab when absent)."""
    from pisr_ros.families import family_of  # the registry sits above models/: import it late

    if not isinstance(data, dict):
        raise UsageError(f"model spec: expected a mapping, got {type(data).__name__}")
    return family_of(data).spec_class.from_dict(data)


def load_spec(path: str | Path):
    """The spec in a YAML file (``config/models/*.yaml``), of the family its ``family:`` names."""
    import yaml  # only here: the rest of models/ needs nothing but torch

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read model spec {path}: {exc.strerror}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        raise UsageError(f"{path} is not a YAML model spec{at}; the model specs are config/models/*.yaml") from exc
    try:
        return spec_from_dict(data or {})
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from exc


def build_model(spec) -> nn.Module:
    """The network a spec describes, built by its family (``PanopticDeepLab`` for ``ModelSpec``)."""
    from pisr_ros.families import family_of

    return family_of(spec).build_model(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------ checkpoints
class CheckpointMismatchError(UsageError):
    """A checkpoint does not fit the spec it is loaded against (or its own spec)."""


def save_checkpoint(path: str | Path, model: nn.Module, spec: ModelSpec, **extra) -> None:
    """Weights plus the spec that builds them; ``extra`` (plain values: epoch, metrics...) rides along."""
    torch.save({"format": CHECKPOINT_FORMAT, "spec": spec.to_dict(),
                "state_dict": model.state_dict(), "extra": extra}, str(path))


def spec_differences(a: dict, b: dict, prefix="") -> list[str]:
    """Dotted paths where two spec dicts differ, as 'path: a != b'."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += spec_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} != {vb!r}")
    return out


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The raw dict ``save_checkpoint`` wrote (weights_only: nothing is unpickled but tensors
    and plain data). Every file that is not a readable pisr_ros checkpoint with a spec this code
    accepts raises ``UsageError`` (``CheckpointMismatchError``) naming the file and what to do."""
    try:
        ckpt = torch.load(str(path), map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise UsageError(f"no checkpoint at {path}") from exc
    except OSError as exc:  # a directory, no permission
        raise UsageError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # random bytes fail the unpickler too
            raise CheckpointMismatchError(f"{path} cannot be read as a checkpoint: the file is cut short or not "
                                          "a PyTorch file; copy it again or write it again (pisr-ros train)") from exc
        # torch's weights-only unpickler refuses anything but tensors and plain data.
        raise CheckpointMismatchError(
            f"{path} holds objects other than tensors and plain data, which are not loaded "
            "(weights_only); write checkpoints with pisr_ros.models.spec.save_checkpoint") from exc
    except Exception as exc:
        # Truncated, empty or random bytes fail deep in torch's zip reader or unpickler, with
        # any exception type (RuntimeError, EOFError, IndexError, ...).
        what = "empty" if _size(path) == 0 else "cut short or not a PyTorch file"
        raise CheckpointMismatchError(
            f"{path} cannot be read as a checkpoint: the file is {what} ({type(exc).__name__}); "
            "copy it again or write it again (pisr-ros train)") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"{path} is not a pisr_ros checkpoint (format {CHECKPOINT_FORMAT}); "
            "write checkpoints with pisr_ros.models.spec.save_checkpoint")
    if not isinstance(ckpt.get("state_dict"), dict) or not isinstance(ckpt.get("spec"), dict):
        raise CheckpointMismatchError(f"{path} is a pisr_ros checkpoint without its spec or weights; write it again "
                                      "with pisr_ros.models.spec.save_checkpoint")
    try:
        spec_from_dict(ckpt["spec"])
    except UsageError as exc:
        raise CheckpointMismatchError(f"checkpoint {path} cannot be used: {exc}; use a checkpoint written by "
                                      "pisr-ros train") from exc
    return ckpt


def _size(path) -> int | None:
    try:
        return Path(path).stat().st_size
    except OSError:
        return None


def checkpoint_problems(ckpt: dict, spec: ModelSpec, model: nn.Module, free_fields=FREE_SPEC_FIELDS) -> list[str]:
    """Why ``ckpt`` cannot be loaded into ``model`` built from ``spec``: spec fields that differ
    (other than those starting with one of ``free_fields``) and mismatched weight keys."""
    diffs = spec_differences(spec.to_dict(), spec_from_dict(ckpt["spec"]).to_dict())
    arch = [d for d in diffs if not d.startswith(tuple(free_fields))]
    problems = ["spec fields (expected != checkpoint): " + "; ".join(arch)] if arch else []
    return problems + state_dict_differences(model.state_dict(), ckpt["state_dict"])


def load_checkpoint(path: str | Path, spec=None, map_location="cpu") -> tuple[nn.Module, Any]:
    """(model, spec) from a checkpoint written by ``save_checkpoint``, in eval mode.

    With ``spec``, the checkpoint must have been made from that spec (its name, input size
    and loss may differ: ``FREE_SPEC_FIELDS``); otherwise its own spec is used. Either way
    the weights must fit the model exactly. Raises ``CheckpointMismatchError`` naming the
    differing spec fields and weight keys.
    """
    ckpt = read_checkpoint(path, map_location)
    target = spec or spec_from_dict(ckpt["spec"])
    model = build_model(target)
    # Neither the loss, the name nor the run resolution changes what the weights mean.
    problems = checkpoint_problems(ckpt, target, model)
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match spec {target.name!r}: " + " | ".join(problems)
            + ". Load it with the spec it was trained with (load_checkpoint(path) uses its own).")
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, target


def state_dict_differences(expected: dict, found: dict, limit=12) -> list[str]:
    """Missing, unexpected and wrongly shaped weight keys, each list cut at ``limit`` names."""

    def names(keys):
        keys = sorted(keys)
        more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    missing = set(expected) - set(found)
    unexpected = set(found) - set(expected)
    shaped = [f"{k} {tuple(found[k].shape)} != {tuple(expected[k].shape)}"
              for k in sorted(set(expected) & set(found)) if found[k].shape != expected[k].shape]
    out = []
    if missing:
        out.append(f"missing weights: {names(missing)}")
    if unexpected:
        out.append(f"unexpected weights: {names(unexpected)}")
    if shaped:
        more = f" (+{len(shaped) - limit} more)" if len(shaped) > limit else ""
        out.append("wrong shapes (checkpoint != model): " + ", ".join(shaped[:limit]) + more)
    return out
