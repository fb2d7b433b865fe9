"""``pisr-ros quantize``: a statically quantized (int8) ONNX of a model, checked against fp32."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pisr_ros.errors import UsageError

_EPILOG = """\
Writes X.int8.onnx next to the model (ONNX Runtime's QDQ format: weights int8 per output
channel, activations uint8 calibrated on --data's train frames, preprocessed as the Predictor
does), with the model's pisr_ros metadata, so it serves by its file:
  ros2 launch pisr_ros panoptic.launch.py model:=models/X.int8.onnx

Then, unless --no-check, both files run over --data's val frames in alternating order: pixel
agreement of their id maps, network-time medians, and PQ of each against the val ground truth
(the evaluator of `pisr-ros evaluate`), printed side by side.

Redo it whenever the model changes. example:
  pisr-ros synth --out data/synth --split train --num 64 --size 512x1024 --seed 1
  pisr-ros synth --out data/synth --split val --num 200 --size 1024x2048 --seed 7
  pisr-ros quantize --model models/pd_light_pisr_residual_synth.pt --data data/synth
"""

#: Nodes left in float by default (regular expressions on the export's node names, which are
#: module paths): PISR, the refine head that reads its output, and the top-level additions that
#: fuse it into the heads (names without a module). Measured in docs/inference.md (int8).
DEFAULT_KEEP_FLOAT: tuple[str, ...] = (r"/pisr/", r"/refine_head/", r"/[^/]+$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pisr_ros.inference.quantize import CALIBRATION_METHODS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--model", required=True, metavar="M",
                        help="checkpoint (.pt; its ONNX export is used or made) or exported .onnx")
    parser.add_argument("--data", required=True, metavar="ROOT",
                        help="Cityscapes-layout dataset: train split for calibration, val split for the check")
    parser.add_argument("--out", default=None, metavar="X.int8.onnx",
                        help="file to write (default: the model's name with .int8.onnx, beside it)")
    parser.add_argument("--calibration-frames", type=int, default=64, metavar="N",
                        help="train frames the activation ranges are calibrated on (default: 64)")
    parser.add_argument("--method", choices=CALIBRATION_METHODS, default="minmax",
                        help="activation range calibration (default: minmax)")
    parser.add_argument("--keep-float", default=",".join(DEFAULT_KEEP_FLOAT), metavar="PREFIXES",
                        help="comma-separated node-name prefixes (module paths like /pisr/) left in float "
                             f"(default: {','.join(DEFAULT_KEEP_FLOAT) or 'none'})")
    parser.add_argument("--val-frames", type=int, default=0, metavar="N",
                        help="val frames for the check (default: 0 = all)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (default: all cores)")
    parser.add_argument("--no-check", action="store_true", help="write the int8 file and skip the comparison")
    parser.add_argument("--json-out", default=None, metavar="FILE", help="also write the comparison as JSON")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def main(args: argparse.Namespace) -> int:
    import tempfile

    import numpy as np

    from pisr_ros.inference.model_files import onnx_for, read_model_info
    from pisr_ros.inference.quantize import (INT8_SUFFIX, QuantizeSettings, compare, int8_path_for,
                                             network_latency, panoptic_scores, quantize_onnx, split_images)

    if args.calibration_frames < 1:
        raise UsageError(f"--calibration-frames must be at least 1, got {args.calibration_frames}")
    if args.val_frames < 0:
        raise UsageError(f"--val-frames must be 0 (all) or more, got {args.val_frames}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    info = read_model_info(args.model)
    if info.path.name.endswith(INT8_SUFFIX):
        raise UsageError(f"--model {info.path} is already quantized; give the float model it came from")
    fp32 = info.path if info.kind == "onnx" else onnx_for(info)
    out = Path(args.out) if args.out else int8_path_for(info.path)
    if out.suffix != ".onnx":
        raise UsageError(f"--out {out}: the file name must end in .onnx")
    if out.resolve() == Path(fp32).resolve():
        raise UsageError(f"--out {out} is the float model itself; choose another name")
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    calibration = [p for _, p in split_images(args.data, "train", args.calibration_frames)]
    val = [] if args.no_check else split_images(args.data, "val", args.val_frames)
    settings = QuantizeSettings(
        calibration_frames=len(calibration), method=args.method,
        keep_float=tuple(p.strip() for p in args.keep_float.split(",") if p.strip()),
        # The data root by its folder name only: the file must not carry this machine's paths.
        calibration_data=f"the first {len(calibration)} train frames (by image id) of {Path(args.data).name}/")
    print(f"quantizing {fp32} on {len(calibration)} train frames of {args.data} ...", flush=True)
    quantize_onnx(fp32, out, calibration, settings)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB; float {Path(fp32).stat().st_size / 1e6:.1f} MB)")
    if args.no_check:
        return 0

    from pisr_ros.image_files import read_rgb

    with tempfile.TemporaryDirectory(prefix="pisr_quant_check_") as tmp:
        result = compare(fp32, out, val, pred_root=tmp, threads=args.threads)
        result.pq = {k: panoptic_scores(args.data, "val", Path(tmp) / k) for k in ("fp32", "int8")}
    latency = network_latency(fp32, out, read_rgb(val[0][1]), threads=args.threads)
    medians = {k: float(np.median(v) * 1e3) for k, v in latency.items()}
    print(f"\n{len(val)} val frames of {args.data}, the same post-processing for both:")
    print("| | PQ | SQ | RQ | PQ things | PQ stuff | network ms (median) |")
    print("|---|---|---|---|---|---|---|")
    for k, path in (("fp32", fp32), ("int8", out)):
        s = result.pq[k]
        print(f"| {k} `{Path(path).name}` | {s['All']['pq']:.1f} | {s['All']['sq']:.1f} | {s['All']['rq']:.1f} | "
              f"{s['Things']['pq']:.1f} | {s['Stuff']['pq']:.1f} | {medians[k]:.1f} |")
    loss = result.pq["fp32"]["All"]["pq"] - result.pq["int8"]["All"]["pq"]
    print(f"PQ loss from int8: {loss:.2f}; id maps: {100 * result.identical_ids:.2f} % of pixels identical, "
          f"{100 * result.same_class:.2f} % the same class")
    print(f"network alone, {len(latency['fp32'])} alternating pairs on one val frame: fp32 {medians['fp32']:.1f} ms, "
          f"int8 {medians['int8']:.1f} ms ({medians['fp32'] / medians['int8']:.2f}x)")
    if args.json_out:
        report = {"fp32": str(fp32), "int8": str(out), "data": str(args.data),
                  "settings": {"method": settings.method, "calibration_frames": len(calibration),
                               "keep_float": list(settings.keep_float)},
                  "check": result.as_dict(), "pq_loss": loss,
                  "network_pairs_ms": {k: [t * 1e3 for t in v] for k, v in latency.items()},
                  "network_pairs_median_ms": medians}
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0
