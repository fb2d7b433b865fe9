"""`pisr-ros merge-ablation` (issue 16's ablation): each arm is what `pisr-ros predict` writes with
that merge and that checkpoint, scored as `pisr-ros evaluate` scores it, and the overlap frames
are the frames a plain loop over the cells finds two thing classes in."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from test_spatial_ranking import CAR, PERSON, _tiny_checkpoint

from pisr_ros import cli
from pisr_ros.taxonomy import THING_TRAIN_IDS


def _favouring(cls):
    bias = [0.0] * len(THING_TRAIN_IDS)
    bias[cls] = 5.0
    return bias


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merge_ablation")
    _tiny_checkpoint(tmp / "person_on_top.pt", _favouring(PERSON))
    _tiny_checkpoint(tmp / "car_on_top.pt", _favouring(CAR))  # the heuristic's order already (as made)
    assert cli.main(["synth", "--out", str(tmp / "data"), "--split", "val", "--num", "3", "--size", "64x128",
                     "--seed", "5"]) == 0
    args = ["merge-ablation", "--ranked", str(tmp / "person_on_top.pt"), str(tmp / "car_on_top.pt"),
            "--data", str(tmp / "data"), "--out", str(tmp / "out"), "--threads", "1"]
    assert cli.main(args) == 0
    return tmp, json.loads((tmp / "out" / "results.json").read_text())


def _panoptic(pred_json):
    doc = json.loads(open(pred_json).read())
    folder = pred_json[: -len(".json")]
    pngs = {a["image_id"]: cv2.imread(f"{folder}/{a['file_name']}") for a in doc["annotations"]}
    return sorted(doc["annotations"], key=lambda a: a["image_id"]), pngs


@pytest.mark.parametrize("arm, checkpoint, merge", [(0, "person_on_top.pt", "heuristic"),
                                                    (1, "person_on_top.pt", "ranking"),
                                                    (2, "car_on_top.pt", "ranking")])
def test_each_arm_is_what_predict_writes_and_evaluate_scores(ablation, arm, checkpoint, merge):
    from pisr_ros.evaluation.panoptic_quality import evaluate

    tmp, results = ablation
    out = tmp / f"predict_{arm}"
    assert cli.main(["predict", "--model", str(tmp / checkpoint), "--images", str(tmp / "data" / "leftImg8bit" / "val"),
                     "--out", str(out), "--backend", "torch", "--threads", "1", "--merge", merge]) == 0
    want_json, want_png = _panoptic(str(out / "panoptic.json"))
    got_json, got_png = _panoptic(results["arms"][arm]["predictions"])
    assert got_json == want_json
    for image_id, png in want_png.items():
        np.testing.assert_array_equal(got_png[image_id], png)
    gt = tmp / "data" / "gtFine" / "cityscapes_panoptic_val.json"
    ev = evaluate(str(gt), str(gt.with_suffix("")), str(out / "panoptic.json"), str(out / "panoptic"))
    for group in ("All", "Things", "Stuff"):
        assert results["arms"][arm]["all"][group]["pq"] == pytest.approx(ev.results[group]["pq"], abs=1e-12)


def test_overlap_frames_are_those_with_two_thing_classes_in_one_cell(ablation):
    from pisr_ros.image_files import find_images, read_rgb
    from pisr_ros.inference.predictor import Predictor

    tmp, results = ablation
    predictor = Predictor.from_file(str(tmp / "person_on_top.pt"), backend="torch")
    expected = {}
    for image_id, path in find_images(tmp / "data" / "leftImg8bit" / "val"):
        frame = predictor.postprocessor.instances(predictor.run_network([read_rgb(path)]).heads,
                                                  predictor.postprocess)[0]
        masks, classes = frame.masks.numpy() > 0, frame.detections.classes.tolist()
        cells = sum(len({classes[k] for k in range(len(classes)) if masks[k, y, x]}) >= 2
                    for y in range(masks.shape[1]) for x in range(masks.shape[2]))
        if cells:
            expected[image_id] = cells
    assert expected, "no frame with overlapping classes: the test would not reach the ranking merge"
    assert results["overlap_frames"] == expected
    assert results["arms"][0]["overlap"]["images"] == len(expected)


def test_only_the_module_that_reorders_changes_pixels(ablation):
    _, results = ablation
    heuristic, person, car = results["arms"]
    assert heuristic["pixels_changed"] == 0 and person["pixels_changed"] > 0
    # Cars on top is the heuristic's order in every contested cell: nothing moves.
    assert car["pixels_changed"] == 0
    table = (ablation[0] / "out" / "results.md").read_text()
    assert "ranking, mean (range) of 2" in table and f"({len(results['overlap_frames'])} of 3)" in table


def test_checkpoints_with_another_network_are_refused(ablation, tmp_path, capsys):
    import torch

    tmp, _ = ablation
    other = tmp_path / "other.pt"
    ckpt = torch.load(str(tmp / "car_on_top.pt"), weights_only=True)
    first = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][first] = ckpt["state_dict"][first] + 1.0
    torch.save(ckpt, str(other))
    args = ["merge-ablation", "--ranked", str(tmp / "person_on_top.pt"), str(other), "--data", str(tmp / "data"),
            "--out", str(tmp_path / "out")]
    assert cli.main(args) == 2
    assert "holds another network" in capsys.readouterr().err
