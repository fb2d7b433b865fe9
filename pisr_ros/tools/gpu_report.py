"""The report of ``make gpu-check``: one JSON (everything, as measured) and one markdown table."""
from __future__ import annotations

import json
from pathlib import Path

from pisr_ros.tools.gpu_stages import MEASURED_STAGES, POSTPROCESS_GOAL_MS

JSON_NAME, MARKDOWN_NAME = "gpu_check.json", "gpu_check.md"


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / JSON_NAME, out / MARKDOWN_NAME
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path


def _ms(value) -> str:
    return "" if value is None else f"{value:.2f}"


def markdown(report: dict) -> str:
    meta = report.get("meta", {})
    what = meta.get("gpu") or f"{meta.get('cpu', '?')} ({meta.get('device', '?')})"
    lines = [f"# gpu-check: {what}", "",
             f"{meta.get('date', '?')}; torch {meta.get('torch', '?')} (CUDA {meta.get('torch_cuda')}), "
             f"cuDNN {meta.get('cudnn')}, ONNX Runtime {meta.get('onnxruntime')}, TensorRT {meta.get('tensorrt')}; "
             f"commit {str(meta.get('git_commit'))[:12]}; whole run {meta.get('seconds', '?')} s", ""]
    records = [r for s in report.get("stages", []) for r in s.get("records", [])]
    lines += ["| stage | status | seconds (limit) |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} ({s['limit_s']}) |" for s in report.get("stages", [])]
    tests = [r for r in records if r.get("kind") == "tests"]
    for t in tests:
        lines += ["", f"GPU test tier (`{t['command']}`): " + ", ".join(
            f"{t[k]} {k}" for k in ("passed", "failed", "skipped", "errors") if t.get(k)) + (
            f" ({t['summary']})" if t.get("summary") else "")]
    runs = [r for r in records if r.get("kind") == "predictor"]
    if runs:
        lines += ["", "## Predictor end to end (median ms per frame; camera frames of "
                  f"{'x'.join(map(str, runs[0]['frame_size']))})", "",
                  "| model | variant | network input | preprocess | network | postprocess | resize | total | "
                  "frames/s | frames | note |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            med = r.get("median_ms") or {}
            size = "x".join(map(str, r["network_input"])) if r.get("network_input") else ""
            fps = f"{r['fps']:.1f}" if r.get("fps") else ""
            note = r["status"] if r["status"] != "ok" else ""
            if r.get("reason"):
                note += f": {r['reason']}"
            lines.append(f"| {r['model']} | {r['variant']} | {size} | " + " | ".join(
                _ms(med.get(s)) for s in MEASURED_STAGES) + f" | {fps} | {r.get('frames', 0)} | {note} |")
    post = [r for r in records if r.get("kind") == "postprocess"]
    if post:
        lines += ["", f"## Post-processing alone (heads of synthetic ground truth; goal <= {POSTPROCESS_GOAL_MS:g} ms "
                  "at 1024x2048)", "",
                  "| settings | network input | instances | median ms | p90 ms | with id map to host, median ms | "
                  "goal met | runs | note |", "|---|---|---|---|---|---|---|---|---|"]
        for r in post:
            goal = "" if r.get("median_ms") is None else ("yes" if r["median_ms"] <= POSTPROCESS_GOAL_MS else "no")
            note = r["status"] if r["status"] != "ok" else ""
            if r.get("reason"):
                note += f": {r['reason']}"
            lines.append(f"| {r['variant']} | {'x'.join(map(str, r['network_input']))} | {r.get('instances', '')} | "
                         f"{_ms(r.get('median_ms'))} | {_ms(r.get('p90_ms'))} | {_ms(r.get('to_host_median_ms'))} | "
                         f"{goal} | {r.get('runs', 0)} | {note} |")
    return "\n".join(lines) + "\n"
