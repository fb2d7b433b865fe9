"""``pisr-ros build-engine``: build (or reuse) the TensorRT engine for an ONNX export, keep it in
the engine cache, and load it once on the GPU as a smoke test.

The cache keys every engine by the ONNX file's SHA-256, the TensorRT version, the GPU's name and
compute capability, the precision flags, the maximum batch and the workspace limit; the
Predictor's TensorRT backend reuses an engine only under exactly that key.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pisr_ros.errors import UsageError
from pisr_ros.inference.engine_cache import CacheEntry, EngineCache, TensorRTUnavailable, default_root, environment

_EPILOG = """\
examples:
  pisr-ros export --model models/pd_light_base_synth.pt --out models/pd_light.onnx --size 512x1024
  pisr-ros build-engine --onnx models/pd_light.onnx --fp16
  pisr-ros build-engine --onnx models/pd_light.onnx --int8 --calib data/cityscapes/leftImg8bit/train --build-only
  pisr-ros build-engine --list
  pisr-ros build-engine --prune      # delete engines this TensorRT/GPU can never load
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (__doc__ or "").split("\n\n")[0].replace("``", "")
    parser.epilog = _EPILOG
    parser.add_argument("--onnx", metavar="X.onnx", help="network exported by `pisr-ros export`")
    parser.add_argument("--fp16", action="store_true", help="allow FP16 kernels (TensorRT 10)")
    parser.add_argument("--int8", action="store_true", help="allow INT8 kernels, calibrated on --calib (TensorRT 10)")
    parser.add_argument("--calib", metavar="DIR", help="images for INT8 calibration (searched recursively; "
                        "at most 500 used)")
    parser.add_argument("--workspace", type=int, metavar="MB", default=None,
                        help="builder workspace limit in MiB (default: TensorRT's, the whole GPU)")
    parser.add_argument("--max-batch", type=int, metavar="N", default=1,
                        help="largest batch the engine accepts; batch 1 is the one optimised (default: 1)")
    parser.add_argument("--cache", metavar="DIR", default=None,
                        help=f"engine cache (default: $PISR_ROS_ENGINE_CACHE, else {default_root()})")
    parser.add_argument("--device", default="cuda:0", help="CUDA device (default: cuda:0)")
    parser.add_argument("--build-only", action="store_true", help="build and store the engine; do not load or run it")
    parser.add_argument("--list", action="store_true", help="list the cached engines and whether they load here")
    parser.add_argument("--prune", action="store_true",
                        help="delete cached engines built for another TensorRT or GPU, and broken entries")


def _check_arguments(args: argparse.Namespace) -> None:
    if not args.onnx:
        raise UsageError("--onnx X.onnx is required (or --list / --prune to look after the cache)")
    if args.int8 and not args.calib:
        raise UsageError("--int8 needs --calib DIR: images to calibrate the INT8 scales with")
    if args.calib and not args.int8:
        raise UsageError("--calib is used only with --int8")
    if args.calib and not Path(args.calib).is_dir():
        raise UsageError(f"--calib {args.calib}: no such directory")
    if args.workspace is not None and args.workspace < 1:
        raise UsageError(f"--workspace must be at least 1 MiB, got {args.workspace}")
    if args.max_batch < 1:
        raise UsageError(f"--max-batch must be at least 1, got {args.max_batch}")
    if not Path(args.onnx).is_file():
        from pisr_ros.inference.model_files import EXPORT_HINT

        raise UsageError(f"no ONNX file at {args.onnx}; make it with `{EXPORT_HINT.format(path=args.onnx)}`")


def _describe(entry: CacheEntry, here: tuple[str, str, str] | None) -> str:
    if entry.problem:
        status = f"broken: {entry.problem}"
    elif here is None:
        status = "?"
    elif (entry.key.tensorrt_version, entry.key.gpu_name, entry.key.compute_capability) == here:
        status = "ok"
    else:
        status = "stale"
    if entry.key is None:
        return f"{entry.digest}  {status}"
    k = entry.key
    size = f"{entry.size / 2**20:.1f} MiB" if entry.size else "?"
    workspace = f", workspace {k.workspace_mb} MiB" if k.workspace_mb else ""
    return (f"{entry.digest}  {status:<6} {k.precision():<9} max batch {k.max_batch}{workspace}  "
            f"TensorRT {k.tensorrt_version}  {k.gpu_name} ({k.compute_capability})  {size}  "
            f"{entry.built_at or '?'}  {entry.onnx_path or '?'}")


def _cache_commands(args: argparse.Namespace) -> int:
    cache = EngineCache(args.cache)
    here, reason = None, ""
    try:
        here = environment(args.device)
    except TensorRTUnavailable as exc:  # listing works without TensorRT; staleness is then unknown
        reason = str(exc).split(". ")[0]
    if args.list:
        entries = cache.entries()
        print(f"engine cache {cache.root}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
              + (f"; here: TensorRT {here[0]}, {here[1]} ({here[2]})" if here else f"; here: {reason}"))
        for entry in entries:
            print("  " + _describe(entry, here))
    if args.prune:
        doomed = cache.stale(*here) if here else cache.broken()
        removed = cache.prune(doomed)
        what = "stale or broken" if here else f"broken (stale ones need TensorRT and CUDA to tell: {reason})"
        print(f"pruned {len(doomed)} {what} entr{'y' if len(doomed) == 1 else 'ies'} ({len(removed)} files) "
              f"from {cache.root}")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.list or args.prune:
        return _cache_commands(args)
    _check_arguments(args)
    from pisr_ros.inference.tensorrt_backend import TensorRTBackend, ensure_engine

    settings = dict(device=args.device, fp16=args.fp16, int8=args.int8, calib_dir=args.calib,
                    workspace_mb=args.workspace, max_batch=args.max_batch, cache_dir=args.cache)
    if args.build_only:
        found = ensure_engine(args.onnx, build=True, progress=True, **settings)
        how = f"built in {found.seconds:.0f} s" if found.built else "already in the cache"
        print(f"engine {found.path} ({found.key.precision()}, max batch {found.key.max_batch}, TensorRT "
              f"{found.key.tensorrt_version}, {found.key.gpu_name}): {how}")
        return 0

    import torch

    backend = TensorRTBackend(args.onnx, build=True, progress=True, **settings)
    h, w = backend.input_size
    images = torch.randn(backend.max_batch, 3, h, w, device=backend.device)
    backend.run(images)  # the first run pays for lazy initialisation
    torch.cuda.synchronize(backend.device)
    start = time.perf_counter()
    outputs = backend.run(images)
    torch.cuda.synchronize(backend.device)
    ms = 1000 * (time.perf_counter() - start)
    bad = [name for name, t in outputs.items() if not torch.isfinite(t).all()]
    shapes = ", ".join(f"{name} {tuple(t.shape)}" for name, t in outputs.items())
    print(f"engine {backend.engine_path} ({'built' if backend.built else 'reused from the cache'}): "
          f"input {tuple(images.shape)} -> {shapes}; {ms:.1f} ms for batch {backend.max_batch}")
    if bad:
        print(f"pisr-ros build-engine: the engine produced non-finite values in {bad} on random input",
              file=sys.stderr)
        return 1
    return 0
