"""IoU per class and mIoU against cityscapesscripts' evalPixelLevelSemanticLabeling."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ref
from cityscapesscripts.helpers.labels import labels as cs_labels
from PIL import Image

from pisr_ros import cli
from pisr_ros.evaluation import semantic
from pisr_ros.taxonomy import CLASSES

TOL = 1e-9
ALL_LABEL_IDS = [lab.id for lab in cs_labels if lab.id >= 0]


def reference_args() -> ref.CArgs:
    """The reference's settings, quiet, without files and without the instance-level score."""
    args = ref.CArgs()
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.evalLabels = []
    args.printRow = 5
    args.normalized = True
    args.colorized = False
    args.bold = args.nocol = ""
    args.JSONOutput = False
    args.quiet = True
    args.avgClassSize = ref.args.avgClassSize
    args.predictionPath = None
    args.predictionWalk = None
    return args


def _blocks(rng, h, w, values, n):
    img = np.full((h, w), rng.choice(values), np.uint8)
    for _ in range(n):
        rh, rw = int(rng.integers(1, h // 2 + 1)), int(rng.integers(1, w // 2 + 1))
        y, x = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
        img[y : y + rh, x : x + rw] = rng.choice(values)
    return img


def make_dataset(root, rng, images=4, h=32, w=48, gt_values=None, pred_values=None, nested_pred=True):
    """gtFine/val/<city>/<id>_gtFine_labelIds.png and predictions <id>_pred.png from them."""
    gt_values = ALL_LABEL_IDS if gt_values is None else gt_values
    pred_values = ALL_LABEL_IDS if pred_values is None else pred_values
    gt_dir, pred_dir = os.path.join(root, "gtFine", "val"), os.path.join(root, "pred")
    for i in range(images):
        city = ("aachen", "bonn")[i % 2]
        image_id = f"{city}_{i:06d}_000019"
        gt = _blocks(rng, h, w, gt_values, int(rng.integers(0, 12)))
        pred = gt.copy()
        noise = _blocks(rng, h, w, pred_values, int(rng.integers(0, 10)))
        change = _blocks(rng, h, w, [0, 1], int(rng.integers(0, 6))).astype(bool)
        pred[change] = noise[change]
        if pred_values is not ALL_LABEL_IDS:
            pred[~np.isin(pred, pred_values)] = pred_values[0]
        os.makedirs(os.path.join(gt_dir, city), exist_ok=True)
        Image.fromarray(gt).save(os.path.join(gt_dir, city, f"{image_id}_gtFine_labelIds.png"))
        out = os.path.join(pred_dir, city) if nested_pred else pred_dir
        os.makedirs(out, exist_ok=True)
        Image.fromarray(pred).save(os.path.join(out, f"{image_id}_pred.png"))
    return gt_dir, pred_dir


def assert_matches_reference(gt_dir, pred_dir, workers=1) -> dict:
    ours = semantic.evaluate_semantic(gt_dir, pred_dir, workers=workers)
    pairs = semantic.find_pairs(gt_dir, pred_dir)
    expected = ref.evaluateImgLists([p for _, p in pairs], [g for g, _ in pairs], reference_args())
    assert list(ours["classScores"]) == [c.name for c in sorted(CLASSES, key=lambda c: c.label_id)]
    for name, iou in ours["classScores"].items():
        theirs = expected["classScores"][name]
        assert (math.isnan(iou) and math.isnan(theirs)) or iou == pytest.approx(theirs, abs=TOL, rel=0), name
    theirs = expected["averageScoreClasses"]
    mine = ours["averageScoreClasses"]
    assert (math.isnan(mine) and math.isnan(theirs)) or mine == pytest.approx(theirs, abs=TOL, rel=0)
    return ours


@pytest.mark.parametrize("seed", range(8))
def test_random_images_match_reference(tmp_path, seed):
    rng = np.random.default_rng(seed)
    gt_dir, pred_dir = make_dataset(str(tmp_path), rng, images=int(rng.integers(1, 6)))
    assert_matches_reference(gt_dir, pred_dir, workers=1 + seed % 2)


@pytest.mark.parametrize("seed", range(4))
def test_classes_absent_from_gt_are_nan_or_zero(tmp_path, seed):
    """Few gt classes: absent classes never predicted are NaN (left out of the mean); absent
    classes predicted on evaluated pixels score 0 and count."""
    rng = np.random.default_rng(50 + seed)
    gt_dir, pred_dir = make_dataset(str(tmp_path), rng, gt_values=[0, 7, 26, 4], pred_values=[7, 26, 24, 0, 3])
    ours = assert_matches_reference(gt_dir, pred_dir)
    assert math.isnan(ours["classScores"]["bicycle"])


def test_prediction_of_ignored_labels_on_ignored_gt(tmp_path):
    rng = np.random.default_rng(9)
    gt_dir, pred_dir = make_dataset(str(tmp_path), rng, gt_values=[0, 1, 2, 3], pred_values=[0, 5, 7])
    ours = assert_matches_reference(gt_dir, pred_dir)
    # Road predicted only on ignored pixels: no FP for anyone, so every class is NaN.
    assert math.isnan(ours["averageScoreClasses"])


def test_perfect_prediction(tmp_path):
    rng = np.random.default_rng(3)
    gt_dir, _ = make_dataset(str(tmp_path), rng, images=2)
    pred_dir = os.path.join(str(tmp_path), "gtcopy")
    for root, _, names in os.walk(gt_dir):
        for name in names:
            os.makedirs(pred_dir, exist_ok=True)
            Image.open(os.path.join(root, name)).save(os.path.join(pred_dir, name.replace("gtFine_labelIds", "x")))
    ours = assert_matches_reference(gt_dir, pred_dir)
    assert all(math.isnan(v) or v == 1.0 for v in ours["classScores"].values())


def test_pairing_rule_is_the_references(tmp_path):
    rng = np.random.default_rng(4)
    gt_dir, pred_dir = make_dataset(str(tmp_path), rng, images=5)
    args = reference_args()
    args.predictionPath = pred_dir
    for gt, pred in semantic.find_pairs(gt_dir, pred_dir):
        assert pred == ref.getPrediction(args, gt)


def test_taxonomy_classes_are_the_evaluated_labels():
    evaluated = sorted(lab.id for lab in cs_labels if lab.id >= 0 and not lab.ignoreInEval)
    assert sorted(c.label_id for c in CLASSES) == evaluated


# ---------------------------------------------------------------------------------------------
# Command line


def test_cli_semantic_and_panoptic_json(tmp_path, capsys):
    rng = np.random.default_rng(5)
    gt_dir, pred_dir = make_dataset(str(tmp_path), rng, images=3)
    out = tmp_path / "r.json"
    rc = cli.main(["evaluate", "--gt-semantic", gt_dir, "--pred-semantic", pred_dir, "--json-out", str(out)])
    assert rc == 0
    assert "mIoU" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert set(written) == {"semantic"}
    ours = semantic.evaluate_semantic(gt_dir, pred_dir, workers=1)
    mine = written["semantic"]["averageScoreClasses"]
    assert mine == pytest.approx(ours["averageScoreClasses"], abs=TOL)
    for name, v in ours["classScores"].items():
        assert (written["semantic"]["classScores"][name] is None) == math.isnan(v)


def _cli_error(capsys, gt_dir, pred_dir) -> str:
    rc = cli.main(["evaluate", "--gt-semantic", gt_dir, "--pred-semantic", pred_dir, "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1, err
    return err


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(str(tmp_path), np.random.default_rng(1), images=2, nested_pred=False)


def test_cli_no_prediction(dataset, capsys):
    gt_dir, pred_dir = dataset
    os.remove(os.path.join(pred_dir, "bonn_000001_000019_pred.png"))
    err = _cli_error(capsys, gt_dir, pred_dir)
    assert "bonn_000001_000019_gtFine_labelIds.png" in err and "no prediction" in err


def test_cli_two_predictions(dataset, capsys):
    gt_dir, pred_dir = dataset
    Image.new("L", (48, 32)).save(os.path.join(pred_dir, "bonn_000001_000019_other.png"))
    err = _cli_error(capsys, gt_dir, pred_dir)
    assert "bonn_000001_000019" in err and "2 predictions" in err


def test_cli_unknown_label_value(dataset, capsys):
    gt_dir, pred_dir = dataset
    path = os.path.join(pred_dir, "aachen_000000_000019_pred.png")
    Image.fromarray(np.full((32, 48), 255, np.uint8)).save(path)
    err = _cli_error(capsys, gt_dir, pred_dir)
    assert path in err and "[255]" in err


def test_cli_size_mismatch(dataset, capsys):
    gt_dir, pred_dir = dataset
    path = os.path.join(pred_dir, "aachen_000000_000019_pred.png")
    Image.fromarray(np.full((16, 48), 7, np.uint8)).save(path)
    err = _cli_error(capsys, gt_dir, pred_dir)
    assert path in err and "48x16" in err


def test_cli_colour_prediction(dataset, capsys):
    gt_dir, pred_dir = dataset
    path = os.path.join(pred_dir, "aachen_000000_000019_pred.png")
    Image.new("RGB", (48, 32)).save(path)
    err = _cli_error(capsys, gt_dir, pred_dir)
    assert path in err and "single-channel" in err
