"""ONNX export of the network alone: normalised images in, the model family's head tensors out
(``family.outputs(spec)``; Panoptic-DeepLab: semantic, center, offset).

Post-processing stays out of the graph: its work depends on the data (how many centers, which
pixels are things) and runs as torch functions after any backend. The input size is fixed
(TensorRT plans and PISR's pooling are built for one size); the batch axis is dynamic.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from pisr_ros.errors import UsageError
from pisr_ros.families import family_of
from pisr_ros.inference.model_files import (CHECKPOINT_POSTPROCESS, META_POSTPROCESS, META_SOURCE_SHA256, META_SPEC,
                                            ONNX_INPUT, sha256_of)

DEFAULT_OPSET = 17

# ONNX operators the exported graphs may hold: all are in TensorRT 10's ONNX parser support
# matrix (onnx-tensorrt docs/operators.md). A test fails when an export grows another.
TENSORRT_OPS = frozenset({
    "Add", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Div", "Equal", "Expand",
    "Gather", "Gemm", "GlobalAveragePool", "MatMul", "MaxPool", "Mul", "Relu", "Reshape",
    "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Sqrt", "Sub", "TopK", "Transpose",
    "Unsqueeze", "Where", "ReduceSum", "ReduceMax", "Exp", "Pow", "Squeeze", "Neg", "Flatten", "Clip",
    "Range",  # integer bounds only (float bounds must be initializers): see pisr.instance_heatmaps
})


def output_names(spec) -> list[str]:
    return [o.name for o in family_of(spec).outputs(spec)]


def export_onnx(model: torch.nn.Module, spec, out: str | Path, size: tuple[int, int],
                opset: int = DEFAULT_OPSET, source_sha256: str = "", postprocess: dict | None = None,
                checkpoint: dict | None = None) -> None:
    """Write ``model`` (in eval mode, on the CPU) as ONNX for input ``size`` (H, W), with the spec
    and the settings tuned for the model (``postprocess``) in its metadata; ``checkpoint``: the
    dict of the file exported, for a family that stores more of it there (``onnx_metadata``)."""
    import onnx

    if len(size) != 2 or min(int(v) for v in size) < 32:
        raise UsageError(f"cannot export {spec.name} at input size {list(size)}: height and width must be at "
                         "least 32 pixels (multiples of 32); give --size HxW or fix the spec's input_size")
    names = output_names(spec)
    model = model.cpu().eval()
    x = torch.zeros(1, 3, *size)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export's, which needs
        # onnxscript; this one writes the same operators and is what TensorRT users run.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(out), input_names=[ONNX_INPUT], output_names=names,
                          dynamic_axes={name: {0: "batch"} for name in (ONNX_INPUT, *names)},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    proto = onnx.load(str(out))
    exported = dict(spec.to_dict(), input_size=list(size))
    meta = [(META_SPEC, json.dumps(exported, sort_keys=True)), (META_SOURCE_SHA256, source_sha256)]
    if postprocess:
        meta.append((META_POSTPROCESS, json.dumps(postprocess, sort_keys=True)))
    # A family whose post-processing has weights outside the graph (YOLO-Panoptic's mask head)
    # stores them here, so that the .onnx can be served alone.
    extra = getattr(family_of(spec), "onnx_metadata", None)
    if extra is not None:
        meta += sorted(extra(model, spec, checkpoint).items())
    for key, value in meta:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "pisr_ros"
    onnx.save(proto, str(out))


def export_checkpoint(checkpoint: str | Path, out: str | Path, size: tuple[int, int] | None = None,
                      opset: int = DEFAULT_OPSET) -> tuple[torch.nn.Module, object]:
    """Export a checkpoint; returns its (model, spec) for parity checks."""
    from pisr_ros.models.spec import load_checkpoint, read_checkpoint

    model, spec = load_checkpoint(checkpoint)
    ckpt = read_checkpoint(checkpoint)
    export_onnx(model, spec, out, tuple(size or spec.input_size), opset, sha256_of(checkpoint),
                ckpt.get(CHECKPOINT_POSTPROCESS), ckpt)
    return model, spec


def check_onnx(path: str | Path) -> set[str]:
    """``onnx.checker`` on the file (full check, with shape inference); returns its operator
    types. Raises ``onnx.checker.ValidationError`` on an invalid graph."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def parity(path: str | Path, model: torch.nn.Module, size: tuple[int, int], batch: int = 2,
           seed: int = 0) -> dict[str, tuple[float, float]]:
    """ONNX Runtime (CPU) against PyTorch on the same random input, per output:
    (max abs error, max abs error / max abs PyTorch value)."""
    import onnxruntime as ort

    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model.cpu().eval()(x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = output_names(model.spec)
    got = dict(zip(names, session.run(names, {ONNX_INPUT: x.numpy()})))
    out = {}
    for name in names:
        r = ref[name].numpy()
        err = float(np.abs(got[name] - r).max())
        out[name] = (err, err / max(float(np.abs(r).max()), 1e-12))
    return out
