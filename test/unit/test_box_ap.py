"""Box AP50 of panoptic predictions against pycocotools' COCOeval (the reference), on random
boxes with crowds, misses, duplicates and classes without ground truth."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from pisr_ros.errors import UsageError
from pisr_ros.evaluation.box_ap import box_ap50

THINGS = [24, 25, 26, 27, 28, 31, 32, 33]  # Cityscapes labelIds of the 8 thing classes
CATEGORIES = [{"id": 7, "name": "road", "isthing": 0}] + [
    {"id": c, "name": f"thing{c}", "isthing": 1} for c in THINGS]


def random_documents(seed: int, images: int = 6):
    """(gt, pred) panoptic JSON documents: jittered copies of the ground-truth boxes, duplicates,
    false boxes, crowds; one class never in the ground truth, one never predicted."""
    rng = np.random.default_rng(seed)
    gt_anns, pred_anns = [], []
    for i in range(images):
        gt_segs, pred_segs = [{"id": 7, "category_id": 7, "area": 500, "bbox": [0, 0, 50, 10], "iscrowd": 0}], []
        for k in range(int(rng.integers(0, 12))):
            cat = int(rng.choice(THINGS[:6]))  # 32 and 33 have no ground truth
            x, y = rng.uniform(0, 400, 2).round()
            w, h = rng.uniform(4, 120, 2).round()
            crowd = int(rng.random() < 0.1)
            gt_segs.append({"id": cat * 1000 + k, "category_id": cat, "area": int(w * h), "bbox": [x, y, w, h],
                            "iscrowd": crowd})
            for _ in range(int(rng.choice([0, 1, 1, 2]))):  # missed, found, found twice
                jx, jy = rng.normal(0, 0.15 * w), rng.normal(0, 0.15 * h)
                pred_cat = cat if cat != 28 else 24  # class 28 is never predicted
                pred_segs.append({"category_id": pred_cat, "bbox": [x + jx, y + jy, w * rng.uniform(0.7, 1.3), h],
                                  "score": float(rng.random())})
        for _ in range(int(rng.integers(0, 6))):  # false boxes, some of a class without ground truth
            pred_segs.append({"category_id": int(rng.choice(THINGS)), "bbox": list(rng.uniform(1, 300, 4).round()),
                              "score": float(rng.random())})
        for n, seg in enumerate(pred_segs):
            seg.update(id=seg["category_id"] * 1000 + n, area=int(seg["bbox"][2] * seg["bbox"][3]), iscrowd=0)
        gt_anns.append({"image_id": f"city_{i:03d}", "segments_info": gt_segs})
        pred_anns.append({"image_id": f"city_{i:03d}", "segments_info": pred_segs})
    return {"annotations": gt_anns, "categories": CATEGORIES}, {"annotations": pred_anns}


def coco_reference(gt: dict, pred: dict) -> tuple[float, dict[int, float]]:
    """pycocotools' bbox AP at IoU 0.5 (stats[1]) and per class, of the same boxes."""
    coco_mod = pytest.importorskip("pycocotools.coco")
    from pycocotools.cocoeval import COCOeval

    ids = {a["image_id"]: n + 1 for n, a in enumerate(sorted(gt["annotations"], key=lambda a: a["image_id"]))}
    things = [c for c in gt["categories"] if c["isthing"]]
    thing_ids = {c["id"] for c in things}
    gt_coco = {"info": {}, "categories": things, "annotations": [],
               "images": [{"id": v, "width": 2048, "height": 1024} for v in ids.values()]}
    for a in gt["annotations"]:
        for s in a["segments_info"]:
            if s["category_id"] in thing_ids:
                gt_coco["annotations"].append({"id": len(gt_coco["annotations"]) + 1, "image_id": ids[a["image_id"]],
                                               "category_id": s["category_id"], "bbox": s["bbox"],
                                               "area": s["area"], "iscrowd": s["iscrowd"]})
    dets = [{"image_id": ids[a["image_id"]], "category_id": s["category_id"], "bbox": s["bbox"], "score": s["score"]}
            for a in pred["annotations"] for s in a["segments_info"] if s["category_id"] in thing_ids]
    with contextlib.redirect_stdout(io.StringIO()):
        cg = coco_mod.COCO()
        cg.dataset = gt_coco
        cg.createIndex()
        cd = cg.loadRes(dets)
        ev = COCOeval(cg, cd, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, recall points, classes, all areas, 100 boxes
    per_class = {cat: float(precision[:, k].mean()) for k, cat in enumerate(ev.params.catIds)
                 if precision[0, k] > -1}
    return float(ev.stats[1]), per_class


@pytest.mark.parametrize("seed", range(6))
def test_box_ap50_equals_cocoeval(seed):
    gt, pred = random_documents(seed)
    want_mean, want_per_class = coco_reference(gt, pred)
    got = box_ap50(gt, pred)
    assert got.per_class.keys() == want_per_class.keys()
    for cat, value in want_per_class.items():
        assert got.per_class[cat] == pytest.approx(value, abs=1e-12), cat
    assert got.mean == pytest.approx(want_mean, abs=1e-12)
    assert 0.0 < got.mean < 1.0 and got.per_class[28] == 0.0  # a class with ground truth and no boxes


def test_exact_boxes_score_one_and_scores_are_required():
    gt, _ = random_documents(0)
    pred = {"annotations": [{"image_id": a["image_id"], "segments_info": [
        dict(s, score=0.9) for s in a["segments_info"] if s["category_id"] != 7 and not s["iscrowd"]]}
        for a in gt["annotations"]]}
    assert box_ap50(gt, pred).mean == pytest.approx(1.0)
    del pred["annotations"][1]["segments_info"][0]["score"]
    with pytest.raises(UsageError, match="no 'score'"):
        box_ap50(gt, pred)
    with pytest.raises(UsageError, match="no prediction for 1"):
        box_ap50(gt, {"annotations": pred["annotations"][1:]})


def test_evaluate_reports_box_ap50_from_predicted_scores(tmp_path, capsys):
    """`pisr-ros evaluate` on files the Cityscapes writer made with scores: the table and the JSON entry."""
    from pisr_ros.cli import main
    from pisr_ros.evaluation.cityscapes_files import CityscapesWriter

    h, w = 32, 64
    car = np.full((h, w), 0 * 1000, np.int32)  # road (trainId 0) everywhere
    car[4:12, 6:20] = 13 * 1000 + 1  # a car (trainId 13)
    car[16:30, 30:60] = 13 * 1000 + 2
    for name, scores in (("gt", None), ("pred", {13001: 0.8, 13002: 0.6})):
        writer = CityscapesWriter(tmp_path / name)
        writer.add("img_0", "img_0.png", car, None, scores=scores)
        writer.close()
    gt_json, pred_json = (next((tmp_path / n).glob("*.json")) for n in ("gt", "pred"))
    assert main(["evaluate", "--gt-json", str(gt_json), "--pred-json", str(pred_json),
                 "--json-out", str(tmp_path / "r.json")]) == 0
    assert "Box AP50 of the things over 1 images" in capsys.readouterr().out
    result = json.loads((tmp_path / "r.json").read_text())["box_ap50"]
    assert result["mean"] == pytest.approx(1.0) and result["per_class"] == {"car": pytest.approx(1.0)}
