"""`make gpu-check` (pisr_ros/tools/gpu_check.py, gpu_stages.py, gpu_report.py) on a machine without CUDA: the one-line exit,
argument handling, the time box of a stage, the report writer, and a dry run of every stage on
the CPU at a tiny size (real measurements, of a CPU, at 64x128: they say nothing about speed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from pisr_ros.tools import gpu_check, gpu_report, gpu_stages

REPO = Path(__file__).resolve().parents[2]


def _run(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pisr_ros.tools.gpu_check", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path):
    out = tmp_path / "gc"
    proc = _run("--out", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device here" in lines[0]
    assert proc.stderr.strip() == ""
    assert not out.exists()  # nothing measured, nothing written


@pytest.mark.parametrize("bad", [["--size", "12x7"], ["--size", "big"], ["--stages", "tests,nope"],
                                 ["--device", "tpu"], ["--frames", "0"], ["--budget", "-1"]])
def test_bad_arguments_exit_2_naming_the_option(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_check.parse_args(bad)
    assert exc.value.code == 2
    assert bad[0] in capsys.readouterr().err


def test_defaults_follow_the_device():
    cuda, cpu = gpu_check.parse_args([]), gpu_check.parse_args(["--device", "cpu"])
    assert cuda.size_hw == (1024, 2048) and cuda.frames == 50
    assert cpu.size_hw == gpu_check.DRY_SIZE and cpu.frames == 3
    names = gpu_check.model_names(cuda)
    assert names[0] == gpu_check.R50 and "pd_light_pisr_residual_synth" in names


def test_the_plan_fits_the_budget():
    args = gpu_check.parse_args(["--budget", "300"])
    plan = gpu_check.plan(args)
    assert [n for n, _ in plan][0] == "tests" and plan[-1][0] == "postprocess"
    assert sum(limit for _, limit in plan) == pytest.approx(300)
    assert gpu_check.DEFAULT_BUDGET_S < 8 * 60


def test_pytest_counts_reads_the_closing_line():
    out = "....s\n==== 3 passed, 1 failed, 2 skipped, 1 error in 4.20s ====\n"
    assert gpu_stages.pytest_counts(out) == {"passed": 3, "failed": 1, "skipped": 2, "errors": 1,
                                            "summary": "3 passed, 1 failed, 2 skipped, 1 error in 4.20s"}
    assert gpu_stages.pytest_counts("4 skipped in 1.0s")["skipped"] == 4
    assert gpu_stages.pytest_counts("ERROR: no tests ran")["summary"] is None


def test_a_missing_pure_python_package_comes_from_a_wheel(tmp_path, monkeypatch):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "pisr_fake_dep-0.1-py3-none-any.whl", "w") as z:
        z.writestr("pisr_fake_dep/__init__.py", "VALUE = 42\n")
    monkeypatch.setattr(gpu_check, "REQUIRED", {"numpy": "numpy", "pisr_fake_dep": "pisr-fake-dep",
                                                "pisr_absent_dep": "pisr-absent-dep"})
    monkeypatch.setattr(sys, "path", list(sys.path))
    missing, used = gpu_check.missing_modules(wheels)
    assert missing == ["pisr_absent_dep"]
    assert [w.name for w in used] == ["pisr_fake_dep-0.1-py3-none-any.whl"]
    import pisr_fake_dep

    assert pisr_fake_dep.VALUE == 42
    sys.modules.pop("pisr_fake_dep", None)


def test_a_stage_past_its_limit_is_killed_and_reported(tmp_path):
    args = gpu_check.parse_args(["--device", "cpu", "--size", "64x128"])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # Half a second: less than the stage's process needs to import torch on any machine, so the
    # stage is always cut off, however fast the machine (building the ResNet-50 once took 3 s
    # here, and a fresh clone on a quiet machine did it within a 3 s limit).
    stage = gpu_check.run_stage("model:pd_r50_pisr", 0.5, args, tmp_path, env)
    assert stage["status"] == "timeout after 0.5 s"
    assert stage["records"] == []


def _format_only_report():
    """Hand-made records, one of each kind, to check the layout alone: no number here was
    measured."""
    return {"meta": {"date": "format-only", "gpu": "FORMAT-ONLY GPU", "torch": "x", "seconds": 1.0},
            "stages": [
                {"name": "tests", "status": "ok", "seconds": 1.0, "limit_s": 10, "records": [
                    {"kind": "tests", "command": "python -m pytest test/gpu", "passed": 2, "failed": 0,
                     "skipped": 1, "errors": 0, "summary": "2 passed, 1 skipped"}]},
                {"name": "model:m", "status": "ok", "seconds": 1.0, "limit_s": 10, "records": [
                    {"kind": "predictor", "model": "m", "variant": "v-ok", "frame_size": [1024, 2048],
                     "network_input": [512, 1024], "status": "ok", "frames": 4, "fps": 100.0,
                     "median_ms": {"preprocess": 1.0, "network": 2.0, "postprocess": 3.0, "resize": 4.0,
                                   "total": 10.0}},
                    {"kind": "predictor", "model": "m", "variant": "v-skip", "frame_size": [1024, 2048],
                     "status": "skipped", "reason": "why not"}]},
                {"name": "postprocess", "status": "timeout after 9 s", "seconds": 9.0, "limit_s": 9, "records": [
                    {"kind": "postprocess", "variant": "p", "network_input": [1024, 2048], "status": "ok",
                     "instances": 7, "median_ms": 1.5, "p90_ms": 1.75, "to_host_median_ms": 2.25, "runs": 9}]}]}


def test_report_layout_from_hand_made_records(tmp_path):
    report = _format_only_report()
    json_path, md_path = gpu_report.write_report(report, tmp_path / "o")
    assert json.loads(json_path.read_text()) == report
    md = md_path.read_text()
    assert md.startswith("# gpu-check: FORMAT-ONLY GPU")
    assert "| postprocess | timeout after 9 s | 9.0 (9) |" in md
    assert "2 passed, 1 skipped" in md
    assert "| m | v-ok | 512x1024 | 1.00 | 2.00 | 3.00 | 4.00 | 10.00 | 100.0 | 4 |  |" in md
    assert "| m | v-skip |" in md and "skipped: why not" in md
    assert "| p | 1024x2048 | 7 | 1.50 | 1.75 | 2.25 | yes | 9 |  |" in md


@pytest.mark.slow
def test_dry_run_on_the_cpu_runs_every_stage(tmp_path):
    out = tmp_path / "gc"
    # One light model: ResNet-50 in eager PyTorch on two shared cores takes minutes even at 64x128.
    proc = _run("--device", "cpu", "--size", "64x128", "--frames", "2", "--models", "pd_light_base_synth",
                "--out", str(out), "--budget", "400")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / gpu_report.JSON_NAME).read_text())
    assert [s["name"] for s in report["stages"]] == ["tests", "model:pd_light_base_synth", "postprocess"]
    assert all(s["status"] == "ok" for s in report["stages"])
    records = [r for s in report["stages"] for r in s["records"]]
    tests = [r for r in records if r["kind"] == "tests"]
    assert len(tests) == 1 and tests[0]["failed"] == 0 and tests[0]["skipped"] > 0  # no CUDA: all skip
    runs = {(r["model"], r["variant"]): r for r in records if r["kind"] == "predictor"}
    for model in ("pd_light_base_synth",):
        for variant in ("torch fp32", "torch bf16", "onnxruntime fp32"):
            r = runs[(model, variant)]
            assert r["status"] == "ok", r
            assert r["network_input"] == [64, 128] and r["frames"] == 2
            assert all(r["median_ms"][s] > 0 for s in gpu_stages.MEASURED_STAGES)
        for variant in ("torch fp16", "torch fp16, CUDA graph", "tensorrt fp16"):
            assert runs[(model, variant)]["status"] == "skipped" and runs[(model, variant)]["reason"]
    assert runs[("pd_light_base_synth", "torch fp32")]["untrained"] is False
    post = [r for r in records if r["kind"] == "postprocess"]
    assert len(post) == 2 and all(r["status"] == "ok" and r["median_ms"] > 0 for r in post)
    assert all(r["instances"] > 0 for r in post)  # the synthetic ground truth has cars and people
    md = (out / gpu_report.MARKDOWN_NAME).read_text()
    assert "| pd_light_base_synth | torch fp32 | 64x128 |" in md


def test_the_resnet50_checkpoint_is_built_from_its_spec(tmp_path):
    from pisr_ros.inference.model_files import read_model_info
    from pisr_ros.models.spec import load_spec

    path = gpu_stages.untrained_checkpoint(gpu_stages.R50_SPEC, tmp_path / "r50.pt", (64, 128))
    info = read_model_info(path)
    expected = load_spec(gpu_stages.R50_SPEC).to_dict()
    assert info.input_size == (64, 128)
    assert info.spec["backbone"] == expected["backbone"] and info.spec["pisr"] == expected["pisr"]
    assert info.spec["backbone"]["depth"] == 50
