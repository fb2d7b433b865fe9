"""`pisr-ros replay-eval`: scoring what a replay produced (pisr_ros.evaluation.replay), the offline
replay against `pisr-ros predict` + `pisr-ros evaluate` (the reference), and the errors."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from pisr_ros import cli
from pisr_ros import cityscapes_layout as layout
from pisr_ros.data import synth
from pisr_ros.evaluation import bags, replay
from pisr_ros.image_files import find_images
from pisr_ros.panoptic import LABEL_DIVISOR
from pisr_ros.taxonomy import IS_THING, LABEL_TO_TRAIN, VOID_TRAIN_ID

SIZE = (128, 256)
MODEL = Path(__file__).resolve().parents[2] / "models" / "pd_light_base_synth.pt"


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs")
    synth.generate(root, "val", 3, SIZE, seed=41, workers=1)
    return root


@pytest.fixture(scope="module")
def bag(cs_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("bags") / "val"
    bags.write_image_bag(find_images(cs_root / "leftImg8bit" / "val"), out)
    return out


def perfect_id_map(root: Path, image_id: str) -> np.ndarray:
    """The ground truth as an id map (trainId*1000+k): what a perfect model would publish."""
    paths = layout.image_paths(root, "val", image_id)
    label = cv2.imread(str(paths.label_ids), cv2.IMREAD_UNCHANGED)
    inst = cv2.imread(str(paths.instance_ids), cv2.IMREAD_UNCHANGED).astype(np.int64)
    train = LABEL_TO_TRAIN[label].astype(np.int64)
    ids = np.full(label.shape, -1, np.int32)
    valid = train != VOID_TRAIN_ID
    thing = valid & IS_THING[np.where(valid, train, 0)]
    stuff = valid & ~thing
    ids[stuff] = train[stuff] * LABEL_DIVISOR
    instance = thing & (inst >= 1000)  # thing pixels without an instance (crowd) stay void
    ids[instance] = train[instance] * LABEL_DIVISOR + inst[instance] % 1000 + 1
    return ids


def test_score_frames_of_perfect_predictions(cs_root, tmp_path):
    ids = layout.list_split(cs_root, "val")
    frames = {i: perfect_id_map(cs_root, i) for i in ids[:2]}
    metrics = replay.score_frames(frames, cs_root, "val", tmp_path, workers=1)
    assert metrics["scored_ids"] == ids[:2]
    for group in ("All", "Things", "Stuff"):
        assert metrics["panoptic"][group]["pq"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["panoptic"]["per_class"]["car"]["fp"] == 0
    assert metrics["semantic"]["numImages"] == 2 and metrics["semantic"]["averageScoreClasses"] > 0.9
    assert set(metrics["per_frame_pq"]) == set(ids[:2])
    # The files are what `pisr-ros evaluate` reads: panoptic.json + PNGs, labelIds.
    pred = json.loads((tmp_path / "predictions" / "panoptic.json").read_text())
    assert [a["image_id"] for a in pred["annotations"]] == ids[:2]
    assert (tmp_path / "predictions" / "semantic" / f"{ids[0]}_labelIds.png").is_file()


def test_live_contract_drops_are_counted_never_skipped(cs_root, bag, tmp_path):
    """What the live replay hands over: results by stamp, the stamps sent. Frame 1 never came
    back, one result has a stamp nobody sent, and one stamp sent has no label."""
    frame_map = bags.read_frame_map(bag)
    (s0, i0), (s1, i1), (s2, i2) = [(f.stamp_ns, f.image_id) for f in frame_map.frames]
    unlabelled, stray = s2 + 50_000_000, s2 + 90_000_000
    output = replay.ReplayOutput(
        results={s0: replay.FrameResult(perfect_id_map(cs_root, i0), 0.020),
                 s2: replay.FrameResult(perfect_id_map(cs_root, i2), 0.040),
                 unlabelled: replay.FrameResult(perfect_id_map(cs_root, i1), 0.030),
                 stray: replay.FrameResult(perfect_id_map(cs_root, i1), None)},
        sent_stamps=[s0, s1, s2, unlabelled], wall_s=2.0, mode="live", description="panoptic_node")
    gt = replay.load_ground_truth(cs_root, "val")
    doc = replay.evaluate_replay(output, frame_map, gt, tmp_path, workers=1)

    assert doc["counts"] == {"sent": 4, "received": 3, "dropped": 1, "labelled": 3, "scored": 2,
                             "dropped_labelled": 1, "unlabelled": 1, "labels_not_sent": 0, "unexpected": 1}
    assert doc["scored_ids"] == [i0, i2] and doc["dropped_ids"] == [i1]
    assert doc["panoptic"]["All"]["pq"] == pytest.approx(1.0, abs=1e-12)
    # The dropped frame as an empty prediction: all its (non-crowd) segments are misses.
    with_drops = doc["panoptic_with_drops"]
    gt_segments = [s for s in gt.annotations[i1]["segments_info"] if s["iscrowd"] != 1]
    assert sum(r["fn"] for r in with_drops["per_class"].values()) == len(gt_segments)
    assert with_drops["All"]["pq"] < 1.0
    assert [r["status"] for r in doc["per_frame"]] == ["scored", "dropped", "scored", "unlabelled"]
    assert doc["latency"]["n"] == 3 and doc["latency"]["max_s"] == pytest.approx(0.040)
    assert doc["throughput_fps"] == pytest.approx(1.5)

    report = (tmp_path / "report.md").read_text()
    assert "**2 scored ground-truth frames**" in report and "**1 labelled frames were dropped**" in report
    assert json.loads((tmp_path / "metrics.json").read_text())["counts"]["dropped"] == 1
    for name in ("per_class_pq", "latency_hist", "pq_over_sequence"):
        assert (tmp_path / "plots" / f"{name}.png").is_file()
    assert sorted(p.stem for p in (tmp_path / "examples").glob("*.png")) == [i0, i2]


@pytest.mark.slow
def test_offline_equals_predict_and_evaluate(cs_root, bag, tmp_path, capsys):
    """The reference check: the offline replay of a bag scores exactly what `pisr-ros predict` +
    `pisr-ros evaluate` score on the same images, with the same backend (torch) and each
    command's default post-processing (the same: the device's defaults)."""
    out = tmp_path / "replay"
    assert cli.main(["replay-eval", "--bag", str(bag), "--gt", str(cs_root), "--camera", "/front", "--offline",
                     "--model", str(MODEL), "--backend", "torch", "--threads", "2",
                     "--workers", "1", "--out", str(out)]) == 0
    assert "3 ground-truth frames scored, 0 dropped" in capsys.readouterr().out
    for name in ("report.md", "metrics.json", "plots/per_class_pq.png", "plots/latency_hist.png",
                 "plots/pq_over_sequence.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "examples").glob("*.png"))) == 3
    report = (out / "report.md").read_text()
    for heading in ("## Frames", "## Panoptic quality", "### Per class", "## Semantic IoU", "## Latency and throughput"):
        assert heading in report
    ours = json.loads((out / "metrics.json").read_text())
    assert ours["counts"]["scored"] == 3 and ours["counts"]["dropped"] == 0
    assert ours["latency"]["n"] == 3 and ours["throughput_fps"] > 0

    pred = tmp_path / "pred"
    assert cli.main(["predict", "--model", str(MODEL), "--backend", "torch", "--images",
                     str(cs_root / "leftImg8bit" / "val"), "--out", str(pred), "--threads", "2"]) == 0
    assert cli.main(["evaluate", "--gt-json", str(layout.panoptic_json(cs_root, "val")),
                     "--pred-json", str(pred / "panoptic.json"), "--workers", "1",
                     "--json-out", str(tmp_path / "ref.json")]) == 0
    ref = json.loads((tmp_path / "ref.json").read_text())
    for group in ("All", "Things", "Stuff"):
        for m in ("pq", "sq", "rq"):
            assert ours["panoptic"][group][m] == pytest.approx(ref[group][m], abs=1e-12), (group, m)
    for name, r in ours["panoptic"]["per_class"].items():
        assert r["pq"] == pytest.approx(ref["per_class"][str(r["label_id"])]["pq"], abs=1e-12), name
    assert not math.isnan(ours["panoptic"]["All"]["pq"])


@pytest.mark.slow
def test_offline_defaults_on_a_jpeg_bag(cs_root, tmp_path, capsys):
    """The node's defaults (auto backend, heads-grid post-processing) on CompressedImage frames."""
    bag = tmp_path / "jpeg"
    assert cli.main(["make-bag", "--images", str(cs_root / "leftImg8bit" / "val"), "--out", str(bag),
                     "--compressed", "--format", "sqlite3"]) == 0
    out = tmp_path / "replay"
    assert cli.main(["replay-eval", "--bag", str(bag), "--gt", str(cs_root), "--examples", "1",
                     "--threads", "2", "--workers", "1", "--out", str(out)]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["info"]["mode"] == "offline" and "upsample False" in doc["info"]["postprocess"]  # the heads' grid
    assert doc["info"]["topic"] == "/front/image_raw/compressed (sensor_msgs/msg/CompressedImage)"
    assert doc["counts"]["scored"] == 3
    # The scores are cityscapesscripts' own on the prediction files the replay wrote.
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    expected = evaluatePanoptic(str(layout.panoptic_json(cs_root, "val")), str(layout.panoptic_dir(cs_root, "val")),
                                str(out / "predictions" / "panoptic.json"), str(out / "predictions" / "panoptic"),
                                str(tmp_path / "reference.json"))
    for group in ("All", "Things", "Stuff"):
        for m in ("pq", "sq", "rq"):
            assert doc["panoptic"][group][m] == pytest.approx(expected[group][m], abs=1e-9), (group, m)
    assert len(list((out / "examples").glob("*.png"))) == 1
    assert cli.main(["replay-eval", "--bag", str(bag), "--gt", str(cs_root), "--transport", "raw",
                     "--out", str(out)]) == 2
    assert "expected /front/image_raw;" in capsys.readouterr().err


def test_bag_without_the_camera_topic(cs_root, bag, tmp_path, capsys):
    assert cli.main(["replay-eval", "--bag", str(bag), "--gt", str(cs_root), "--camera", "/rear",
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "/rear/image_raw or /rear/image_raw/compressed" in err
    assert "it has: /front/image_raw (sensor_msgs/msg/Image, 3 msgs)" in err
    assert cli.main(["replay-eval", "--bag", str(tmp_path / "nope"), "--gt", str(cs_root),
                     "--out", str(tmp_path)]) == 2
    assert "no bag at" in capsys.readouterr().err


def test_stamps_that_match_no_label(cs_root, bag, tmp_path, capsys):
    # No frames map at all: neither the JSON nor the metadata entry.
    bare = tmp_path / "bare"
    shutil.copytree(bag, bare)
    (bare / bags.FRAMES_FILE).unlink()
    meta = yaml.safe_load((bare / "metadata.yaml").read_text())
    meta["rosbag2_bagfile_information"]["custom_data"] = None
    (bare / "metadata.yaml").write_text(yaml.safe_dump(meta))
    args = ["replay-eval", "--gt", str(cs_root), "--out", str(tmp_path / "o")]
    assert cli.main(args + ["--bag", str(bare)]) == 2
    assert "no frames map" in capsys.readouterr().err

    # A frames map of another bag.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"frames": [{"stamp_ns": 5, "image_id": layout.list_split(cs_root, "val")[0]}]}))
    assert cli.main(args + ["--bag", str(bag), "--frames", str(other)]) == 2
    assert "belongs to another bag" in capsys.readouterr().err


def test_images_without_labels(cs_root, bag, tmp_path, capsys):
    gt = tmp_path / "gt"
    shutil.copytree(cs_root / "gtFine", gt / "gtFine")
    gt_json = layout.panoptic_json(gt, "val")
    doc = json.loads(gt_json.read_text())
    doc["annotations"] = doc["annotations"][1:]
    gt_json.write_text(json.dumps(doc))
    assert cli.main(["replay-eval", "--bag", str(bag), "--gt", str(gt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "1 of the 3 images" in err and "have no label" in err
    assert cli.main(["replay-eval", "--bag", str(bag), "--gt", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_example_borders_are_drawn_at_the_shown_size():
    """A downscaled example keeps one closed border per object: colours area-averaged, borders
    found on the downscaled ids. Borders drawn at full size and then sampled by a
    nearest-neighbour downscale break into dots (the lattice the examples used to show)."""
    import cv2

    from pisr_ros.evaluation.replay import colorize_panoptic

    ys, xs = np.mgrid[:1024, :2048]
    ids = np.where((ys - 512) ** 2 + (xs - 1024) ** 2 <= 300 ** 2, 26001, 7)  # a car (a disk) on road
    segments = [{"id": 7, "category_id": 7}, {"id": 26001, "category_id": 26}]
    shown = (320, 640)

    def rings(rgb):
        white = np.all(rgb == 255, axis=-1).astype(np.uint8)
        return cv2.connectedComponents(white, connectivity=8)[0] - 1, int(white.sum())

    n, pixels = rings(colorize_panoptic(ids, segments, shown))
    assert n == 1 and pixels > 2 * np.pi * 300 * 640 / 2048  # one closed border, round the whole disk
    naive = cv2.resize(colorize_panoptic(ids, segments), (shown[1], shown[0]), interpolation=cv2.INTER_NEAREST)
    assert rings(naive)[0] > 10  # the old way: a dotted border
