"""``pisr-ros bench-evaluator`` on tiny generated data: the table, the report, hotcoco optional."""
from __future__ import annotations

import json

import pytest

from pisr_ros import cli
from pisr_ros.tools import bench_evaluator


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tmp_path_factory.mktemp("bench_evaluator") / "data"


def _run(data, tmp_path, capsys, *extra: str) -> tuple[str, dict]:
    report = tmp_path / "report.json"
    rc = cli.main(["bench-evaluator", "--num", "2", "--size", "32x64", "--pairs", "1",
                   "--data", str(data), "--json-out", str(report), *extra])
    assert rc == 0
    return capsys.readouterr().out, json.loads(report.read_text())


def _table_rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("evaluator"))
    rows = {}
    for line in lines[start + 1 :]:
        if line.startswith("report written"):
            break
        rows[line.split()[0]] = line.split()[1:]
    return rows


def test_all_evaluators_side_by_side(data, tmp_path, capsys):
    out, report = _run(data, tmp_path, capsys)
    rows = _table_rows(out)
    tools = ["ours", "cityscapesscripts"] + (["hotcoco"] if bench_evaluator.hotcoco_installed() else [])
    assert list(rows) == tools
    if "hotcoco" not in tools:
        assert "hotcoco is not installed" in out
    for name in tools:
        assert len(report["runs"][name]) == 1
        assert report["median_wall_s"][name] > 0 and report["median_cpu_s"][name] > 0
        assert report["max_abs_diff_vs_cityscapesscripts"][name] <= 1e-9, name
    for name in tools[1:]:
        ratio = report["ratios"][f"{name}/ours"]["median_of_rounds"]
        assert ratio == pytest.approx(report["runs"][name][0]["wall_s"] / report["runs"]["ours"][0]["wall_s"])
        assert rows[name][-2] == f"{ratio:.2f}x"
    text = json.dumps(report)
    assert str(tmp_path) not in text and str(data) not in text  # no absolute paths in the report
    assert "--data DATA" in report["command"] and "--json-out report.json" in report["command"]


def test_without_hotcoco_says_so_in_one_line(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench_evaluator, "hotcoco_installed", lambda: False)
    out, report = _run(data, tmp_path, capsys)
    notes = [line for line in out.splitlines() if "hotcoco" in line and not line.startswith("report written")]
    assert notes == ["hotcoco is not installed (pip install hotcoco): timing ours and cityscapesscripts only"]
    assert list(_table_rows(out)) == ["ours", "cityscapesscripts"]
    assert set(report["runs"]) == {"ours", "cityscapesscripts"}


def test_hotcoco_difference_ignores_classes_it_marks_absent():
    ref = {g: {"pq": 0.5, "sq": 0.5, "rq": 0.5, "n": 1} for g in ("All", "Things", "Stuff")}
    ref["per_class"] = {"7": {"pq": 0.5, "sq": 0.5, "rq": 0.5}, "8": {"pq": 0.0, "sq": 0.0, "rq": 0.0}}
    theirs = json.loads(json.dumps(ref))
    theirs["per_class"]["8"] = {"pq": -1.0, "sq": -1.0, "rq": -1.0, "tp": 0, "fp": 0, "fn": 0}
    assert bench_evaluator.max_abs_diff(theirs, ref) == 0.0
    theirs["per_class"]["8"]["fp"] = 1  # counted: then the -1 is a difference
    assert bench_evaluator.max_abs_diff(theirs, ref) == 1.0
    theirs["All"]["n"] = 2
    assert bench_evaluator.max_abs_diff(theirs, ref) == float("inf")


@pytest.mark.skipif(not bench_evaluator.hotcoco_installed(), reason="hotcoco is not installed")
def test_timed_subset_still_compares_every_evaluator(data, tmp_path, capsys):
    out, report = _run(data, tmp_path, capsys, "--pairs", "2", "--timed", "hotcoco,ours")
    rows = _table_rows(out)
    assert list(rows) == ["ours", "hotcoco", "cityscapesscripts"]
    assert rows["cityscapesscripts"][:3] == ["(warm-up", "only)", "0.0e+00"]
    assert set(report["runs"]) == {"ours", "hotcoco"} and len(report["runs"]["ours"]) == 2
    assert report["max_abs_diff_vs_cityscapesscripts"]["hotcoco"] <= 1e-9


@pytest.mark.parametrize("timed", ["ours", "hotcoco,cityscapesscripts", "ours,panopticapi"])
def test_bad_timed_list_is_refused(data, tmp_path, capsys, timed):
    rc = cli.main(["bench-evaluator", "--num", "2", "--size", "32x64", "--data", str(data),
                   "--json-out", str(tmp_path / "r.json"), "--timed", timed])
    assert rc == 2
    assert "--timed" in capsys.readouterr().err
