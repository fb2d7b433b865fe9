"""The stages of ``make gpu-check`` (pisr_ros/tools/gpu_check.py), each run in a process of its
own: ``stage_tests`` (the GPU test tier), ``stage_model`` (the Predictor end to end, per
precision and backend), ``stage_postprocess`` (post-processing alone). Each appends records
to ``StageContext.records`` and rewrites its records file after each one, so that a stage
killed at its time limit keeps what it measured.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
R50 = "pd_r50_pisr"
R50_SPEC = REPO / "config" / "models" / "pd_r50_pisr.yaml"
FULL_SIZE = (1024, 2048)
POSTPROCESS_GOAL_MS = 2.0
MEASURED_STAGES = ("preprocess", "network", "postprocess", "resize", "total")


class Skip(Exception):
    """A variant that does not apply here (the reason is recorded)."""


class StageContext:
    def __init__(self, args):
        import torch

        self.args = args
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.size = args.size_hw
        self.frames = args.frames
        self.warmup = 10 if self.cuda else 1
        self.deadline = args.deadline or time.time() + 60
        self.work = Path(args.work or tempfile.mkdtemp(prefix="pisr_gpu_check_"))
        self.records: list[dict] = []
        self.records_path = Path(args.records) if args.records else None

    def left(self) -> float:
        return self.deadline - time.time()

    def add(self, record: dict) -> None:
        self.records.append(record)
        if self.records_path:  # rewritten whole after each record: a killed stage keeps what it had
            tmp = self.records_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.records, default=str))
            os.replace(tmp, self.records_path)
        print(json.dumps(record, default=str), flush=True)

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)


def stage_tests(ctx: StageContext) -> None:
    cmd = [sys.executable, "-m", "pytest", "test/gpu", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    record = {"kind": "tests", "command": " ".join(["python -m pytest"] + cmd[3:])}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(ctx.left(), 1))
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        ctx.add(record | {"exit": None, "status": "timeout", "seconds": round(time.perf_counter() - t0, 1),
                          "tail": out[-2000:], "failed": 0, "summary": "cut at the stage's time limit"})
        return
    record.update(exit=proc.returncode, status="ok", seconds=round(time.perf_counter() - t0, 1),
                  tail=proc.stdout[-2000:] + proc.stderr[-1000:])
    record.update(pytest_counts(proc.stdout))
    ctx.add(record)


def pytest_counts(output: str) -> dict:
    """Counts from pytest's closing line, e.g. '3 passed, 2 skipped in 4.1s'."""
    lines = [ln for ln in output.strip().splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", ln)]
    if not lines:
        return {"summary": None}
    last = lines[-1].strip("= ")
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors")}
    for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)", last):
        key = "errors" if word.startswith("error") else word
        counts[key] = counts.get(key, 0) + int(n)
    return counts | {"summary": last}


def synthetic_frames(size: tuple[int, int], count: int = 2, seed: int = 11):
    """(bgr camera frames, label ids, instance ids) of synthetic street scenes."""
    import numpy as np

    from pisr_ros.data.synth import render_scene

    scenes = [render_scene(seed, "val", i, size) for i in range(count)]
    return ([np.ascontiguousarray(rgb[..., ::-1]) for rgb, _, _ in scenes],
            [lab for _, lab, _ in scenes], [inst for _, _, inst in scenes])


def untrained_checkpoint(spec_path: Path, out: Path, input_size: tuple[int, int] | None = None, seed: int = 0) -> Path:
    """A checkpoint of ``spec_path``'s network with seeded random weights (speed does not depend
    on what the weights are); ``input_size`` overrides the spec's."""
    import dataclasses

    import torch

    from pisr_ros.models.spec import build_model, load_spec, save_checkpoint

    spec = load_spec(spec_path)
    if input_size:
        spec = dataclasses.replace(spec, input_size=tuple(input_size))
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    save_checkpoint(out, model, spec, note="untrained: for speed measurements only")
    return out


class CastBackend:
    """PyTorch on the device in ``dtype`` (bf16 or fp16), optionally replayed from a CUDA graph
    captured for one input shape; the Predictor's own stages run around it unchanged."""

    def __init__(self, model, input_size, output_names, device, dtype, graph: bool = False,
                 channels_last: bool = False):
        import torch

        self.name = "torch"
        self.output_names = tuple(output_names)
        self.device = torch.device(device)
        self.input_size = tuple(input_size)
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, dtype, memory_format=self.memory_format).eval()
        self.graph = None
        if graph:
            self._capture()

    def _forward(self, images):
        out = self.model(images.to(self.dtype, memory_format=self.memory_format))
        return {name: out[name].float() for name in self.output_names}

    def _capture(self) -> None:
        import torch

        h, w = self.input_size
        self.static_input = torch.zeros(1, 3, h, w, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(3):  # cuDNN picks its algorithms before the graph freezes them
                self._forward(self.static_input)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.static_output = self._forward(self.static_input)

    def run(self, images):
        import torch

        with torch.inference_mode():
            if self.graph is None:
                return self._forward(images)
            if images.shape != self.static_input.shape:
                raise ValueError(f"the CUDA graph was captured for input {tuple(self.static_input.shape)}, "
                                 f"got {tuple(images.shape)}")
            self.static_input.copy_(images)
            self.graph.replay()
            # The next replay overwrites the outputs; the frame's post-processing may still read them.
            return {k: v.clone() for k, v in self.static_output.items()}


def predictor_variants(ctx: StageContext):
    """(label, make(model_path) -> Predictor) in the order they run: the plain PyTorch ones
    first, so that a stage cut short still has them."""
    import torch

    from pisr_ros.inference.predictor import Predictor

    size = None if ctx.cuda else ctx.size  # on a GPU each model runs at its own input size

    def library(backend, fp16=False):
        def make(path):
            if fp16 and not ctx.cuda:
                raise Skip("the torch backend's fp16 needs CUDA")
            return Predictor.from_file(str(path), backend=backend, device=str(ctx.device), fp16=fp16,
                                       input_size=size, keep_confidence=False, profile=True)
        return make

    def cast(dtype, graph=False, channels_last=False):
        def make(path):
            if graph and not ctx.cuda:
                raise Skip("CUDA graphs need CUDA")
            predictor = library("torch")(path)
            fp32 = predictor.backend
            predictor.backend = CastBackend(fp32.model, predictor.input_size, fp32.output_names, ctx.device, dtype,
                                            graph, channels_last)
            return predictor
        return make

    def onnxruntime(path):
        from pisr_ros.inference.backends import available

        if "onnxruntime" not in available(str(ctx.device)):
            raise Skip("ONNX Runtime has no CUDA provider here (onnxruntime-gpu)" if ctx.cuda
                       else "onnxruntime is not installed")
        return library("onnxruntime")(path)

    def tensorrt(path):
        from pisr_ros.inference.backends import tensorrt_available

        if not tensorrt_available():
            raise Skip("TensorRT is not installed" if ctx.cuda else "TensorRT needs CUDA")
        return library("tensorrt", fp16=True)(path)

    return [("torch fp32", library("torch")), ("torch fp16", library("torch", fp16=True)),
            ("torch bf16", cast(torch.bfloat16)),
            ("torch fp16, CUDA graph", cast(torch.float16, graph=True)),
            ("torch bf16, CUDA graph", cast(torch.bfloat16, graph=True)),
            ("torch fp16, channels_last, CUDA graph", cast(torch.float16, graph=True, channels_last=True)),
            ("onnxruntime fp32", onnxruntime), ("tensorrt fp16", tensorrt)]


def summarize(samples: dict[str, list[float]]) -> tuple[dict, dict]:
    import numpy as np

    med = {k: float(np.median(v) * 1e3) for k, v in samples.items() if v}
    p90 = {k: float(np.percentile(v, 90) * 1e3) for k, v in samples.items() if v}
    return med, p90


def time_predictor(ctx: StageContext, predictor, frames, budget_s: float) -> dict:
    """Warm-up, then up to ``ctx.frames`` timed frames (at least 3) within ``budget_s``."""
    for i in range(ctx.warmup):
        predictor(frames[i % len(frames)], "bgr")
    samples = {s: [] for s in MEASURED_STAGES}
    stop = time.time() + budget_s
    n = 0
    while n < ctx.frames and (n < 3 or time.time() < stop):
        t0 = time.perf_counter()
        predictor(frames[n % len(frames)], "bgr")
        ctx.sync()
        samples["total"].append(time.perf_counter() - t0)
        for stage, seconds in predictor.last_timings.items():
            samples.setdefault(stage, []).append(seconds)
        n += 1
    med, p90 = summarize(samples)
    return {"frames": n, "median_ms": med, "p90_ms": p90, "fps": 1e3 / med["total"]}


def stage_model(ctx: StageContext, name: str) -> None:
    import torch

    if ctx.cuda:
        torch.backends.cudnn.benchmark = True  # one input shape: let cuDNN pick the fastest kernels
    if name == R50:
        path = untrained_checkpoint(R50_SPEC, ctx.work / f"{R50}_untrained.pt", None if ctx.cuda else ctx.size)
    else:
        path = REPO / "models" / f"{name}.pt"
        if not path.is_file():
            ctx.add({"kind": "predictor", "model": name, "variant": "-", "status": "error",
                     "reason": f"no model file {path}", "frame_size": list(ctx.size)})
            return
    frames, _, _ = synthetic_frames(ctx.size)
    variants = predictor_variants(ctx)
    for i, (label, make) in enumerate(variants):
        record = {"kind": "predictor", "model": name, "variant": label, "device": str(ctx.device),
                  "frame_size": list(ctx.size), "untrained": name == R50}
        budget = ctx.left() / (len(variants) - i) - 2
        if ctx.left() < 5:
            ctx.add(record | {"status": "skipped", "reason": "stage time spent"})
            continue
        predictor = None
        try:
            predictor = make(path)
            record["network_input"] = list(predictor.input_size)
            record.update(time_predictor(ctx, predictor, frames, max(budget * 0.6, 1.0)))
            record["status"] = "ok"
        except Skip as exc:
            record.update(status="skipped", reason=str(exc))
        except Exception as exc:  # one variant's failure (capture, OOM, a provider) is a finding, not the end
            record.update(status="error", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
        ctx.add(record)
        del predictor
        if ctx.cuda:
            torch.cuda.empty_cache()


def heads_from_ground_truth(label_ids, instance_ids, device, stride: int = 4):
    """Heads as a perfect network would give them: semantic logits one-hot (8 on the true class),
    the center targets' Gaussians and the offsets to each instance's center, at ``stride``."""
    import numpy as np
    import torch

    from pisr_ros.data.targets import make_targets
    from pisr_ros.taxonomy import NUM_CLASSES

    t = make_targets(instance_ids, label_ids, scale=label_ids.shape[0] / FULL_SIZE[0])
    sem = t["semantic"][::stride, ::stride].astype(np.int64)
    logits = np.zeros((NUM_CLASSES, *sem.shape), np.float32)
    ys, xs = np.nonzero(sem < NUM_CLASSES)
    logits[sem[ys, xs], ys, xs] = 8.0

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None].to(device)

    return tensor(logits), tensor(t["center"][:, ::stride, ::stride]), tensor(t["offset"][:, ::stride, ::stride])


def stage_postprocess(ctx: StageContext) -> None:
    import numpy as np

    from pisr_ros import settings as declared
    from pisr_ros.postprocess.panoptic_deeplab import PanopticDeepLabSettings, panoptic_deeplab_postprocess

    _, labels, instances = synthetic_frames(ctx.size)
    heads = [heads_from_ground_truth(lab, inst, ctx.device) for lab, inst in zip(labels, instances)]
    settings = [("the GPU default: heads upsampled to the input, 7x7 center NMS (detectron2's)",
                 declared.for_device(PanopticDeepLabSettings, "cuda")),
                ("the CPU default: the heads' stride-4 grid, 3x3 center NMS",
                 declared.for_device(PanopticDeepLabSettings, "cpu"))]
    runs = 200 if ctx.cuda else 3
    for i, (label, cfg) in enumerate(settings):
        record = {"kind": "postprocess", "variant": label, "device": str(ctx.device), "network_input": list(ctx.size),
                  "settings": {k: v for k, v in vars(cfg).items() if k != "thing_ids"}}
        stop = time.time() + ctx.left() / (len(settings) - i) - 2
        try:
            def once(h, to_host=False):
                batch = panoptic_deeplab_postprocess(*h, input_size=ctx.size, cfg=cfg)
                if to_host:
                    batch.id_map.cpu()
                return batch

            for w in range(5 if ctx.cuda else 1):
                once(heads[w % len(heads)])
            alone, to_host = [], []
            for n in range(runs):
                if n >= 3 and time.time() > stop:
                    break
                for target, host in ((alone, False), (to_host, True)):  # alternating
                    ctx.sync()
                    t0 = time.perf_counter()
                    batch = once(heads[n % len(heads)], host)
                    ctx.sync()
                    target.append(time.perf_counter() - t0)
            ids = batch.id_map[0]
            things = ids[(ids >= 0) & (ids % 1000 > 0)]  # thing ids are class*1000 + k, k >= 1
            record.update(status="ok", runs=len(alone), instances=int(things.unique().numel()),
                          median_ms=float(np.median(alone) * 1e3), p90_ms=float(np.percentile(alone, 90) * 1e3),
                          to_host_median_ms=float(np.median(to_host) * 1e3), goal_ms=POSTPROCESS_GOAL_MS)
        except Exception as exc:
            record.update(status="error", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
        ctx.add(record)


def run_one_stage(args) -> int:
    ctx = StageContext(args)
    if args.stage == "tests":
        stage_tests(ctx)
    elif args.stage.startswith("model:"):
        stage_model(ctx, args.stage.split(":", 1)[1])
    elif args.stage == "postprocess":
        stage_postprocess(ctx)
    else:
        raise SystemExit(f"gpu_check: unknown stage {args.stage!r}")
    return 0

