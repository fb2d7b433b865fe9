"""``make gpu-check``: on a machine with CUDA, the GPU test tier and the Predictor's speed at
1024x2048 in one go, in under 8 minutes, written to one JSON and one markdown table.

    python -m pisr_ros.tools.gpu_check --out out/gpu-check          # what `make gpu-check` runs
    python -m pisr_ros.tools.gpu_check --device cpu --out /tmp/dry  # the same flow on the CPU, tiny sizes

Stages, each in a process of its own with a time limit (a hang or a crash costs that stage
alone, and what it measured before is kept); the limits add up to --budget:
  tests         pytest -m gpu test/gpu (the GPU tier)
  model:NAME    the Predictor end to end on synthetic camera frames (1024x2048, bgr8): PyTorch
                fp32, fp16, bf16, fp16/bf16 replayed from a CUDA graph; ONNX Runtime's CUDA
                provider and TensorRT where installed. NAME: pd_r50_pisr (config/models/
                pd_r50_pisr.yaml with untrained weights: speed does not depend on them) and
                every checkpoint in models/
  postprocess   post-processing alone on heads made from synthetic ground truth (goal <= 2 ms)
Without CUDA (and without --device cpu) it says so in one line and exits 0. It needs only
what the repository holds and torch, numpy, OpenCV, PyYAML, pytest and cityscapesscripts; a
missing pure-Python package is taken from a wheel in --wheels (default .whl/), if one is there.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pisr_ros.tools.gpu_report import JSON_NAME, MARKDOWN_NAME, write_report
from pisr_ros.tools.gpu_stages import FULL_SIZE, R50, REPO, run_one_stage

DRY_SIZE = (128, 256)
DEFAULT_BUDGET_S = 450  # the whole run stays under 8 minutes with start-up and writing
# Each stage's share of the budget; a stage may use what earlier stages left unused.
STAGE_LIMITS_S = {"tests": 150, "model": 85, "postprocess": 40}
# Importable modules the stages need, and the distribution a wheel of each is named after.
REQUIRED = {"torch": "torch", "numpy": "numpy", "cv2": "opencv-python-headless", "yaml": "pyyaml",
            "cityscapesscripts": "cityscapesscripts", "pytest": "pytest", "tqdm": "tqdm"}
STAGES_ORDER = ("tests", "model", "postprocess")


# ============================================================================ orchestration
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--out", default="out/gpu-check", metavar="DIR",
                   help=f"folder for {JSON_NAME} and {MARKDOWN_NAME} (default: out/gpu-check)")
    p.add_argument("--device", default="cuda", help="cuda[:N], or cpu for a dry run of every stage at tiny sizes")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="S",
                   help=f"seconds for all stages together (default: {DEFAULT_BUDGET_S})")
    p.add_argument("--size", default=None, metavar="HxW",
                   help="camera frame size (default: 1024x2048 on CUDA, 128x256 on the CPU)")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="timed frames per variant at most (default: 50 on CUDA, 3 on the CPU)")
    p.add_argument("--models", default=None, metavar="LIST",
                   help=f"comma-separated model names (default: {R50} and every models/*.pt)")
    p.add_argument("--stages", default=",".join(STAGES_ORDER), metavar="LIST",
                   help=f"comma-separated subset of {', '.join(STAGES_ORDER)} (default: all)")
    p.add_argument("--wheels", default=str(REPO / ".whl"), metavar="DIR",
                   help="folder of pure-Python wheels for packages this machine lacks (default: .whl/)")
    # A stage's own process (internal).
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    p.add_argument("--records", default=None, help=argparse.SUPPRESS)
    p.add_argument("--work", default=None, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if not cuda and args.device != "cpu":
        p.error(f"--device {args.device}: use cuda, cuda:N or cpu")
    try:
        args.size_hw = parse_size(args.size) if args.size else (FULL_SIZE if cuda else DRY_SIZE)
    except ValueError as exc:
        p.error(str(exc))
    args.frames = args.frames if args.frames is not None else (50 if cuda else 3)
    if args.frames < 1:
        p.error("--frames must be at least 1")
    if args.budget <= 0:
        p.error("--budget must be positive")
    args.stage_list = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(args.stage_list) - set(STAGES_ORDER))
    if unknown or not args.stage_list:
        p.error(f"--stages {args.stages!r}: choose from {', '.join(STAGES_ORDER)}")
    return args


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m[1]) < 32 or int(m[2]) < 32:
        raise ValueError(f"--size {text!r}: give HEIGHTxWIDTH in pixels, each at least 32, like 1024x2048")
    return int(m[1]), int(m[2])


def model_names(args) -> list[str]:
    if args.models:
        return [m.strip() for m in args.models.split(",") if m.strip()]
    return [R50] + sorted(p.stem for p in (REPO / "models").glob("*.pt"))


def missing_modules(wheels: Path) -> tuple[list[str], list[Path]]:
    """(modules still missing, wheels put on the path for the others)."""
    missing, used = [], []
    for module, dist in REQUIRED.items():
        if importlib.util.find_spec(module) is not None:
            continue
        # A pure-Python wheel is a zip that Python imports from directly.
        found = sorted(wheels.glob(f"{dist.replace('-', '_')}-*.whl")) + sorted(wheels.glob(f"{dist}-*.whl"))
        pure = [w for w in found if w.name.endswith("-none-any.whl")]
        if pure:
            sys.path.insert(0, str(pure[-1]))
            importlib.invalidate_caches()
            if importlib.util.find_spec(module) is not None:
                used.append(pure[-1])
                continue
        missing.append(module)
    return missing, used


def environment(device: str) -> dict:
    import torch

    env = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(),
           "python": platform.python_version(), "cpu": _cpu_name(),
           "cpus": os.cpu_count(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "device": device}
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   compute_capability=f"{props.major}.{props.minor}",
                   cudnn=torch.backends.cudnn.version())
    try:
        import onnxruntime

        env.update(onnxruntime=onnxruntime.__version__, onnxruntime_providers=onnxruntime.get_available_providers())
    except ImportError:
        env["onnxruntime"] = None
    env["tensorrt"] = _version_of("tensorrt")
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                           text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version_of(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return str(getattr(__import__(module), "__version__", "unknown"))
    except Exception as exc:  # a broken install is worth a note, not a crash
        return f"unimportable ({type(exc).__name__})"


def plan(args) -> list[tuple[str, float]]:
    """(stage name, its time limit) in run order."""
    stages = []
    for kind in STAGES_ORDER:
        if kind not in args.stage_list:
            continue
        if kind == "model":
            stages += [(f"model:{m}", STAGE_LIMITS_S["model"]) for m in model_names(args)]
        else:
            stages.append((kind, STAGE_LIMITS_S[kind]))
    scale = args.budget / sum(limit for _, limit in stages)
    return [(name, limit * scale) for name, limit in stages]


def run_stage(name: str, limit_s: float, args, work: Path, env_vars: dict) -> dict:
    """One stage in its own process group, killed at ``limit_s``; its records survive."""
    records = work / f"records_{re.sub(r'[^A-Za-z0-9_]', '_', name)}.json"
    cmd = [sys.executable, "-m", "pisr_ros.tools.gpu_check", "--stage", name, "--records", str(records),
           "--work", str(work), "--deadline", str(time.time() + limit_s - 5), "--device", args.device,
           "--size", "x".join(map(str, args.size_hw)), "--frames", str(args.frames)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env_vars, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    status = "ok"
    try:
        output, _ = proc.communicate(timeout=limit_s)
        if proc.returncode != 0:
            status = f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the stage and what it started (pytest's workers)
        output, _ = proc.communicate()
        status = f"timeout after {limit_s:.3g} s"
    stage = {"name": name, "status": status, "seconds": round(time.perf_counter() - t0, 1),
             "limit_s": round(limit_s), "records": read_records(records),
             "log_tail": (output or "")[-3000:]}
    return stage


def read_records(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return []


def orchestrate(args) -> int:
    try:
        import torch
    except ImportError:
        print("gpu-check: PyTorch is not installed here; nothing measured")
        return 0
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda or 'none'}); nothing measured. `--device cpu` runs the flow on the CPU.")
        return 0
    missing, wheels = missing_modules(Path(args.wheels))
    if missing:
        print(f"gpu-check: missing Python modules {', '.join(missing)}; bring them as wheels into {args.wheels} "
              f"(e.g. `pip download --no-deps {' '.join(REQUIRED[m] for m in missing)} -d {args.wheels}`)")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env_vars = dict(os.environ)
    env_vars["PYTHONPATH"] = os.pathsep.join([str(REPO), *map(str, wheels)] + (
        [env_vars["PYTHONPATH"]] if env_vars.get("PYTHONPATH") else []))
    env_vars.setdefault("PYTHONUNBUFFERED", "1")
    report = {"meta": environment(args.device), "settings": {
        "frame_size": list(args.size_hw), "frames_per_variant": args.frames, "budget_s": args.budget,
        "wheels_used": [w.name for w in wheels]}, "stages": []}
    t0 = time.perf_counter()
    print(f"gpu-check on {report['meta'].get('gpu', args.device)}: {len(plan(args))} stages, "
          f"at most {args.budget:.0f} s; results in {out}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pisr_gpu_check_") as tmp:
        work = Path(tmp)
        env_vars["PISR_ROS_CACHE"] = str(work / "cache")  # ONNX exports and engines of this run only
        for name, limit in plan(args):
            # Time an earlier stage left unused goes to the later ones; none may pass the budget.
            left = args.budget - (time.perf_counter() - t0)
            if left < 10:
                stage = {"name": name, "status": "not run (budget spent)", "seconds": 0, "limit_s": 0, "records": []}
            else:
                stage = run_stage(name, min(left, max(limit, left / (1 + _stages_after(args, name)))), args, work, env_vars)
            report["stages"].append(stage)
            print(f"  {name}: {stage['status']} in {stage['seconds']} s, {len(stage['records'])} records", flush=True)
            write_report(report, out)  # after every stage: a run cut short still leaves its results
    report["meta"]["seconds"] = round(time.perf_counter() - t0, 1)
    json_path, md_path = write_report(report, out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    failed = [s["name"] for s in report["stages"] if s["status"] != "ok"]
    failed += [f"tests ({r['failed']} failed)" for s in report["stages"] for r in s["records"]
               if r.get("kind") == "tests" and r.get("failed")]
    if failed:
        print(f"gpu-check: not clean: {', '.join(failed)}")
    return 1 if failed else 0


def _stages_after(args, name: str) -> int:
    names = [n for n, _ in plan(args)]
    return len(names) - 1 - names.index(name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stage:
        return run_one_stage(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
