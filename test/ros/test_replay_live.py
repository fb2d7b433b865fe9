"""`pisr-ros replay-eval --live`: a few frames through panoptic_node over DDS, scored; the same
numbers as `--offline` on the same bag when nothing was dropped."""
from __future__ import annotations

import json

import pytest

from pisr_ros import cli


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    data, bag = root / "data", root / "bag"
    assert cli.main(["synth", "--out", str(data), "--split", "val", "--num", "3", "--size", "256x512",
                     "--seed", "21"]) == 0
    assert cli.main(["make-bag", "--images", str(data / "leftImg8bit" / "val"), "--out", str(bag),
                     "--topic", "/front/image_raw", "--rate", "5"]) == 0
    return root, data, bag


def test_live_replay_scores_what_offline_scores(bag):
    root, data, bag_path = bag
    common = ["--bag", str(bag_path), "--gt", str(data), "--camera", "/front", "--examples", "1"]
    assert cli.main(["replay-eval", "--live", "--rate", "max", "--overlays", "2", "--out", str(root / "live"), *common]) == 0
    assert cli.main(["replay-eval", "--offline", "--out", str(root / "offline"), *common]) == 0
    live = json.loads((root / "live" / "metrics.json").read_text())
    offline = json.loads((root / "offline" / "metrics.json").read_text())
    assert live["counts"]["sent"] == live["counts"]["received"] == 3 and live["counts"]["dropped"] == 0
    assert live["counts"]["scored"] == 3
    for part in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq"):
            assert live["panoptic"][part][key] == pytest.approx(offline["panoptic"][part][key], abs=1e-12)
    assert live["semantic"]["averageScoreClasses"] == pytest.approx(offline["semantic"]["averageScoreClasses"], abs=1e-12)
    assert live["latency"]["n"] == 3 and live["latency"]["p50_s"] > 0
    assert (root / "live" / "report.md").is_file()
    assert len(list((root / "live" / "overlays").glob("overlay_*.png"))) == 2


def test_attach_without_a_running_node_says_so(bag, capsys):
    root, data, bag_path = bag
    # The bag's camera is /front; no node runs there once the test above has stopped its own.
    code = cli.main(["replay-eval", "--live", "--attach", "--camera", "/front", "--bag", str(bag_path),
                     "--gt", str(data), "--out", str(root / "x")])
    assert code == 2 and "no panoptic_node answers in /front" in capsys.readouterr().err
