"""``pisr-ros export``: a checkpoint's network as ONNX, checked and compared with PyTorch."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from pisr_ros.errors import UsageError

# ONNX Runtime against PyTorch in float32: reordered sums and fused BN differ in the last bits;
# a relative error above this means the graph computes something else.
PARITY_TOLERANCE = 1e-4

_EPILOG = """\
Exports the network only (normalised images in; semantic logits, center heatmap and offsets
out, at stride 4): fixed input size, dynamic batch, opset 17 by default, the model spec in the
file's metadata. Post-processing runs after every backend, outside the graph.

Then: onnx.checker (full check), the operator list against what TensorRT's ONNX parser takes,
and ONNX Runtime against PyTorch on random input (max abs / rel error per output; fails above
a relative error of %g).

example:
  pisr-ros export --model models/pd_light_base_synth.pt --out models/pd_light_base_synth.onnx --size 512x1024
""" % PARITY_TOLERANCE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--model", required=True, metavar="CKPT", help="checkpoint (.pt) to export")
    parser.add_argument("--out", required=True, metavar="X.onnx", help="ONNX file to write")
    parser.add_argument("--size", default=None, metavar="HxW",
                        help="network input size (default: the spec's input_size, 512x1024 for the light models)")
    parser.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default: 17)")
    parser.add_argument("--force", action="store_true", help="overwrite --out when it holds a different file")


def main(args: argparse.Namespace) -> int:
    from pisr_ros.inference.export import (DEFAULT_OPSET, TENSORRT_OPS, check_onnx, export_checkpoint,
                                           parity)
    from pisr_ros.arguments import parse_size

    out = Path(args.out)
    if out.suffix != ".onnx":
        raise UsageError(f"--out {out}: the file name must end in .onnx")
    if not Path(args.model).is_file():
        raise UsageError(f"--model {args.model}: no such file")
    opset = args.opset or DEFAULT_OPSET
    if not 13 <= opset <= 21:
        raise UsageError(f"--opset {opset}: choose 13..21 (17 is what TensorRT 10 and ONNX Runtime both take)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        size = parse_size(args.size, "--size") if args.size else None
        model, spec = export_checkpoint(args.model, tmp, size, opset)
        size = size or tuple(spec.input_size)
        ops = check_onnx(tmp)
        print(f"onnx.checker: ok ({len(ops)} operator types, opset {opset}, input 1..N x 3 x {size[0]} x {size[1]})")
        foreign = sorted(ops - TENSORRT_OPS)
        if foreign:
            print(f"warning: operators outside the TensorRT set this project checks: {', '.join(foreign)}")
        worst = 0.0
        for name, (abs_err, rel_err) in parity(tmp, model, size).items():
            print(f"  {name:9s} ONNX Runtime vs PyTorch: max abs error {abs_err:.3g}, max rel error {rel_err:.3g}")
            worst = max(worst, rel_err)
        if worst > PARITY_TOLERANCE:
            print(f"error: ONNX Runtime and PyTorch disagree (relative error {worst:.3g} > {PARITY_TOLERANCE:g}); "
                  f"{out} not written")
            return 1
        if out.exists():
            if out.read_bytes() == tmp.read_bytes():
                print(f"{out} is already this export; unchanged")
                return 0
            if not args.force:
                raise UsageError(f"{out} exists and holds a different file; pass --force to overwrite it")
        os.replace(tmp, out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
        return 0
    finally:
        tmp.unlink(missing_ok=True)
