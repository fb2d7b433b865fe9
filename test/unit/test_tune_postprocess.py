"""tune-postprocess: its in-memory PQ is the evaluator's, it picks the best setting it tried, and
it stores the choice where read_model_info (hence Predictor, node, predict) finds it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from pisr_ros import cli
from pisr_ros.data import synth
from pisr_ros import cityscapes_layout as layout
from pisr_ros.data.dataset import read_rgb
from pisr_ros.errors import UsageError
from pisr_ros.evaluation import panoptic_quality as pq
from pisr_ros.evaluation.cityscapes_files import CityscapesWriter
from pisr_ros.inference.model_files import read_model_info
from pisr_ros.inference.predictor import Predictor
from pisr_ros.inference.tune_postprocess import Sweep, load_frames, store_settings
from pisr_ros.inference.tune_postprocess_cli import parse_tries
from pisr_ros.postprocess.panoptic_deeplab import PanopticDeepLabSettings

MODELS = Path(__file__).resolve().parents[2] / "models"
TRIES = ["--try", "center_threshold=0.1,0.3", "--try", "nms_kernel=3,5", "--try", "top_k=200",
         "--try", "thing_area=0,256", "--try", "stuff_area=0,2048"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    synth.generate(root, "val", 3, (128, 256), seed=11, workers=1)
    return root


@pytest.fixture()
def model(tmp_path):
    path = tmp_path / "base.pt"
    shutil.copy(MODELS / "pd_light_base_synth.pt", path)
    return path


def test_in_memory_pq_is_the_evaluators(root, model, tmp_path):
    predictor = Predictor.from_file(str(model), backend="torch", device="cpu", keep_confidence=False)
    frames, categories = load_frames(predictor, root, "val")
    sweep = Sweep(predictor, frames, categories)
    for values in ({}, {"center_threshold": 0.3, "nms_kernel": 5}, {"stuff_area": 0, "thing_area": 256}):
        trial = sweep.evaluate({**sweep.start, **values})
        # The same settings through the files `pisr-ros predict` writes and `pisr-ros evaluate` reads.
        out = tmp_path / f"pred{len(values)}"
        writer = CityscapesWriter(out)
        predictor.postprocess = PanopticDeepLabSettings(**{**sweep.start, **values})
        for image_id in layout.list_split(root, "val"):
            image = read_rgb(layout.image_paths(root, "val", image_id).left_img)
            writer.add(image_id, image_id + ".png", predictor(image).id_map, None)
        ev = pq.evaluate(str(layout.panoptic_json(root, "val")), str(layout.panoptic_dir(root, "val")),
                         str(writer.close()), str(writer.panoptic_dir), workers=1)
        for group in ("All", "Things", "Stuff"):
            assert trial.results[group]["pq"] == pytest.approx(ev.results[group]["pq"], abs=1e-12), group
        assert {c: (s.tp, s.fp, s.fn) for c, s in trial.stats.items() if s.tp + s.fp + s.fn} == \
            {c: (s.tp, s.fp, s.fn) for c, s in ev.stats.items() if s.tp + s.fp + s.fn}


def test_command_sweeps_prints_and_stores_the_best(root, model, capsys):
    assert cli.main(["tune-postprocess", "--model", str(model), "--data", str(root), "--backend", "torch",
                     "--threads", "1", *TRIES]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 7 and "PQ" not in line]
    assert len(rows) >= 5  # the start and at least one change of each setting with two values
    best_pq = max(float(r[5]) for r in rows)
    stored = torch.load(str(model), weights_only=True)["postprocess"]
    assert set(stored) == {"cpu"}
    assert set(stored["cpu"]) == {"center_threshold", "nms_kernel", "top_k", "thing_area", "stuff_area"}
    chosen_row = [r for r in rows if [v.strip() for v in r[:5]] == [str(v) for v in stored["cpu"].values()]]
    assert chosen_row and float(chosen_row[0][5]) == best_pq
    # Whoever loads the model now gets the tuned values, unless told otherwise.
    assert read_model_info(model).postprocess == stored
    predictor = Predictor.from_file(str(model), backend="torch", device="cpu")
    assert predictor.postprocess.center_threshold == stored["cpu"]["center_threshold"]
    assert predictor.postprocess.thing_area == stored["cpu"]["thing_area"]


def test_settings_go_into_onnx_metadata_and_keep_other_devices(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    shutil.copy(MODELS / "pd_light_base_synth.onnx", onnx_path)
    store_settings(onnx_path, "cuda", {"center_threshold": 0.2})
    store_settings(onnx_path, "cpu", {"center_threshold": 0.4, "nms_kernel": 5})
    assert read_model_info(onnx_path).postprocess == {"cuda": {"center_threshold": 0.2},
                                                      "cpu": {"center_threshold": 0.4, "nms_kernel": 5}}


def test_bad_candidates_are_refused_with_the_setting_named():
    assert parse_tries(["nms_kernel=3,5", "center_threshold=0.2"], PanopticDeepLabSettings) == \
        {"nms_kernel": (3, 5), "center_threshold": (0.2,)}
    for bad, says in [("nms_kernel=4", "odd"), ("threshold=0.1", "center_threshold"),
                      ("center_threshold=2", "center_threshold"), ("top_k=x", "not a int")]:
        with pytest.raises(UsageError, match=says):
            parse_tries([bad], PanopticDeepLabSettings)


def test_a_split_without_panoptic_ground_truth_says_what_writes_it(tmp_path, model):
    predictor = Predictor.from_file(str(model), backend="torch", device="cpu")
    with pytest.raises(UsageError, match="pisr-ros synth"):
        load_frames(predictor, tmp_path, "val")


def test_each_family_tries_its_own_settings():
    from pisr_ros.inference.tune_postprocess import candidates
    from pisr_ros.postprocess.yolo_panoptic import YoloPanopticSettings

    yolo = candidates(YoloPanopticSettings())
    assert {"score_threshold", "nms_iou", "mask_threshold", "stuff_area"} <= yolo.keys()
    assert not yolo.keys() & {"center_threshold", "nms_kernel", "top_k", "thing_area"}
    deeplab = candidates(PanopticDeepLabSettings())
    assert {"center_threshold", "nms_kernel", "top_k", "thing_area", "stuff_area"} <= deeplab.keys()
    assert not deeplab.keys() & {"score_threshold", "nms_iou", "mask_threshold"}
