"""`pisr-ros replay-eval --live`: a few frames through panoptic_node over DDS, scored; the same
numbers as `--offline` on the same bag when nothing was dropped."""
from __future__ import annotations

import json
import uuid

import pytest

from pisr_ros import cli
from pisr_ros.ros import replay_live

# A camera namespace of this run's own: two runs that share a DDS domain must not meet.
CAMERA = f"/t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    data, bag = root / "data", root / "bag"
    assert cli.main(["synth", "--out", str(data), "--split", "val", "--num", "3", "--size", "256x512",
                     "--seed", "21"]) == 0
    assert cli.main(["make-bag", "--images", str(data / "leftImg8bit" / "val"), "--out", str(bag),
                     "--topic", f"{CAMERA}/image_raw", "--rate", "5"]) == 0
    return root, data, bag


def test_live_replay_scores_what_offline_scores(bag, monkeypatch):
    root, data, bag_path = bag
    # --rate max sends the next frame when the previous one's labels are back: the wait ends at
    # the labels, so a long bound costs a fast machine nothing and lets a busy one finish (what
    # is checked is that every frame came back, not how fast).
    monkeypatch.setattr(replay_live, "SETTLE_S", 120.0)
    common = ["--bag", str(bag_path), "--gt", str(data), "--camera", CAMERA, "--examples", "1"]
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
    # No node runs in the bag's camera once the test above has stopped its own.
    code = cli.main(["replay-eval", "--live", "--attach", "--camera", CAMERA, "--bag", str(bag_path),
                     "--gt", str(data), "--out", str(root / "x")])
    assert code == 2 and f"no panoptic_node answers in {CAMERA}" in capsys.readouterr().err
