"""``pisr-ros bench``: the Predictor's per-stage latency on every backend, side by side.

Backends take turns frame by frame, so that a noisy, shared machine slows them alike; the
figures to quote are medians and ratios from one run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from pisr_ros.errors import UsageError
from pisr_ros.inference.model_files import DEFAULT_MODEL, find_model

STAGES = ("decode", "preprocess", "network", "postprocess", "resize", "total")

_EPILOG = """\
Frames: --images (any Cityscapes-layout folder or image files) or, by default, a few synthetic
street scenes; resized to --size, the camera's resolution. The decode stage is what a node
does with the message: a view of raw bgr8 bytes (--input raw) or a JPEG decode (--input jpeg,
a CompressedImage).

example:
  pisr-ros bench --model models/pd_light_base_synth.pt --backends torch,onnxruntime \\
      --size 1024x2048 --frames 50 --json docs/runs/bench_predictor_cpu.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="M",
                        help=f"checkpoint (.pt) or exported .onnx (default: the node's default, {DEFAULT_MODEL})")
    parser.add_argument("--backends", default="torch,onnxruntime", metavar="LIST",
                        help="comma-separated: torch, onnxruntime, tensorrt (default: torch,onnxruntime)")
    parser.add_argument("--size", default="1024x2048", metavar="HxW", help="camera frame size (default: 1024x2048)")
    parser.add_argument("--frames", type=int, default=50, metavar="N", help="timed frames per backend (default: 50)")
    parser.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed frames first (default: 5)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    parser.add_argument("--fp16", action="store_true", help="half precision (torch and tensorrt on CUDA)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (default: all cores)")
    parser.add_argument("--input", choices=("raw", "jpeg"), default="raw", help="frame transport (default: raw)")
    parser.add_argument("--images", default=None, metavar="DIR", help="frames from these images instead of synthetic ones")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")


def _frames(images: str | None, size: tuple[int, int], count: int = 6) -> list[np.ndarray]:
    """Up to ``count`` distinct BGR frames at ``size``."""
    import cv2

    if images:
        from pisr_ros.image_files import find_images

        paths = [p for _, p in find_images(images)[:count]]
        frames = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
    else:
        from pisr_ros.data.synth import render_scene

        frames = [render_scene(11, "val", i, size)[0][..., ::-1] for i in range(count)]
    return [np.ascontiguousarray(cv2.resize(f, (size[1], size[0])) if f.shape[:2] != size else f) for f in frames]


def summarize(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median and p90 in ms per stage, and frames/s from the median total."""
    out = {stage: {"median_ms": float(np.median(v) * 1e3), "p90_ms": float(np.percentile(v, 90) * 1e3)}
           for stage, v in samples.items()}
    out["fps"] = {"median": 1e3 / out["total"]["median_ms"]}
    return out


def table(results: dict[str, dict]) -> str:
    names = list(results)
    lines = ["| stage | " + " | ".join(f"{n} median / p90 (ms)" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for stage in STAGES:
        cells = [f"{results[n][stage]['median_ms']:.1f} / {results[n][stage]['p90_ms']:.1f}" for n in names]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines.append("| frames/s (1 / median total) | " + " | ".join(f"{results[n]['fps']['median']:.1f}" for n in names) + " |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    import cv2
    import torch
    from tqdm import tqdm

    from pisr_ros.inference.backends import BACKENDS, default_threads
    from pisr_ros.arguments import parse_size
    from pisr_ros.inference.predictor import Predictor

    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or not names:
        raise UsageError(f"--backends {args.backends!r}: choose from {', '.join(BACKENDS)}")
    if args.frames < 1 or args.warmup < 0:
        raise UsageError("--frames must be at least 1 and --warmup at least 0")
    size = parse_size(args.size, "--size")
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    model = str(find_model(args.model))
    predictors = {n: Predictor.from_file(model, backend=n, device=args.device, fp16=args.fp16 and n != "onnxruntime",
                                         threads=threads, profile=True, keep_confidence=False) for n in names}
    frames = _frames(args.images, size)
    if args.input == "jpeg":
        payloads = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in frames]
    else:
        payloads = [f.tobytes() for f in frames]

    def decode(payload: bytes) -> np.ndarray:
        if args.input == "jpeg":
            return cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
        return np.frombuffer(payload, np.uint8).reshape(size[0], size[1], 3)

    samples = {n: {s: [] for s in STAGES} for n in names}
    total_runs = (args.warmup + args.frames) * len(names)
    with tqdm(total=total_runs, desc="bench", unit="frame", leave=False) as bar:
        for i in range(args.warmup + args.frames):
            for n, predictor in predictors.items():  # interleaved: drift hits every backend alike
                payload = payloads[i % len(payloads)]
                t0 = time.perf_counter()
                image = decode(payload)
                t1 = time.perf_counter()
                predictor(image, "bgr")
                t2 = time.perf_counter()
                bar.update()
                if i < args.warmup:
                    continue
                samples[n]["decode"].append(t1 - t0)
                for stage, seconds in predictor.last_timings.items():
                    samples[n][stage].append(seconds)
                samples[n]["total"].append(t2 - t0)
    results = {n: summarize(samples[n]) for n in names}
    meta = {
        "model": str(args.model), "frame_size": list(size), "input": args.input, "frames": args.frames,
        "network_input": list(next(iter(predictors.values())).input_size), "device": args.device,
        "threads": threads, "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
        "postprocess": {n: vars(p.postprocess) | {"thing_ids": None} for n, p in predictors.items()},
    }
    try:
        import onnxruntime

        meta["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if args.device.startswith("cuda"):
        meta["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    print(f"{args.model}: {size[0]}x{size[1]} {args.input} frames, network at "
          f"{meta['network_input'][0]}x{meta['network_input'][1]}, {args.frames} frames per backend, "
          f"{threads} threads, {args.device}")
    print(table(results))
    if len(names) > 1:
        base = results[names[0]]["total"]["median_ms"]
        print("speed-up over " + names[0] + ": " + ", ".join(
            f"{n} {base / results[n]['total']['median_ms']:.2f}x" for n in names[1:]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
