"""PQ/SQ/RQ against cityscapesscripts' evaluatePanoptic on random and adversarial inputs.

The generator below writes ground truth and predictions in the COCO/Cityscapes panoptic format
(RGB PNG + JSON, category_id = Cityscapes labelId) with the categories that cityscapesscripts'
own converter (createPanopticImgs.convert2panoptic) writes. Every number of the reference's
result is compared to ours to 1e-9, and so are the raw per-category TP/FP/FN/IoU sums.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
import pytest
from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as ref
from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
from PIL import Image

from pisr_ros import cli
from pisr_ros.evaluation import panoptic_quality as pq

TOL = 1e-9
MAX_ID = 256**3 - 1


# ---------------------------------------------------------------------------------------------
# Categories: from cityscapesscripts' converter, run on a one-pixel dataset


@pytest.fixture(scope="session")
def categories(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("cs_categories")
    city = root / "gtFine" / "val" / "aachen"
    city.mkdir(parents=True)
    Image.fromarray(np.full((2, 2), 26001, np.uint16)).save(city / "aachen_000000_000000_gtFine_instanceIds.png")
    (root / "out").mkdir()
    convert2panoptic(str(root / "gtFine"), str(root / "out"), setNames=["val"])
    with open(root / "out" / "cityscapes_panoptic_val.json") as f:
        return json.load(f)["categories"]


# ---------------------------------------------------------------------------------------------
# Generator


@dataclass
class Options:
    h: int = 48
    w: int = 64
    images: int = 3
    random_ids: bool = False  # 24-bit random segment ids instead of Cityscapes-style ids
    crowd: int = 2  # max crowd regions per image
    void: int = 2  # max void rectangles per image
    things: int = 10  # max thing instances per image
    area_jitter: bool = False  # gt JSON areas differ from the PNG (the reference trusts the JSON)
    ghost_gt: bool = False  # gt JSON segments that are not in the PNG
    unlisted_gt: bool = False  # gt PNG ids that are not in the JSON
    empty_pred: float = 0.0  # probability that an image's prediction is all void
    pred_void_json: bool = False  # prediction JSON lists id 0 (void pixels become a segment)
    shuffle_pred: bool = True
    extra_pred_images: bool = True
    drop_category: list = field(default_factory=list)  # categories never in gt


def _rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def write_png(path, ids: np.ndarray) -> None:
    Image.fromarray(_rgb(ids)).save(path)


def _shape_mask(rng, h: int, w: int, max_frac: float = 0.5) -> np.ndarray:
    rh = int(rng.integers(1, max(2, int(h * max_frac)) + 1))
    rw = int(rng.integers(1, max(2, int(w * max_frac)) + 1))
    y, x = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
    mask = np.zeros((h, w), bool)
    if rng.random() < 0.5:
        mask[y : y + rh, x : x + rw] = True
    else:
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx, ry, rx = y + rh / 2, x + rw / 2, rh / 2 + 0.5, rw / 2 + 0.5
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return mask


class IdSource:
    """Distinct segment ids: Cityscapes style (labelId, labelId*1000+k) or random 24-bit."""

    def __init__(self, rng, random_ids: bool):
        self.rng, self.random_ids, self.used = rng, random_ids, {0}
        self.next_k: dict[int, int] = {}

    def new(self, cat: int, style: str) -> int:
        if self.random_ids:
            while True:
                sid = int(self.rng.integers(1, MAX_ID + 1))
                if sid not in self.used:
                    break
        elif style == "plain":  # stuff and crowd: the labelId itself, shared by all its regions
            sid = cat
        else:
            k = self.next_k.get(cat, 0) + 1
            self.next_k[cat] = k
            sid = cat * 1000 + k
        self.used.add(sid)
        return sid


def segments_info(ids: np.ndarray, meta: dict[int, tuple[int, int]]) -> list[dict]:
    out = []
    values, counts = np.unique(ids, return_counts=True)
    for sid, area in zip(values.tolist(), counts.tolist()):
        if sid == 0 or sid not in meta:
            continue
        ys, xs = np.nonzero(ids == sid)
        cat, crowd = meta[sid]
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        out.append({"id": sid, "category_id": cat, "area": area, "bbox": bbox, "iscrowd": crowd})
    return out


def random_gt(rng, cats: list[dict], opt: Options) -> tuple[np.ndarray, list[dict]]:
    h, w = opt.h, opt.w
    stuff = [c["id"] for c in cats if not c["isthing"] and c["id"] not in opt.drop_category]
    things = [c["id"] for c in cats if c["isthing"] and c["id"] not in opt.drop_category]
    # Use a subset of classes per image so that some classes are absent from the gt.
    stuff = list(rng.choice(stuff, size=int(rng.integers(1, len(stuff) + 1)), replace=False))
    things = list(rng.choice(things, size=int(rng.integers(1, len(things) + 1)), replace=False))
    idsrc = IdSource(rng, opt.random_ids)
    meta: dict[int, tuple[int, int]] = {}
    ids = np.zeros((h, w), np.int64)

    def paint(mask, cat, crowd, style):
        sid = idsrc.new(cat, style)
        ids[mask] = sid
        meta[sid] = (int(cat), crowd)

    paint(np.ones((h, w), bool), rng.choice(stuff), 0, "plain")
    for _ in range(int(rng.integers(0, 6))):
        paint(_shape_mask(rng, h, w, 0.7), rng.choice(stuff), 0, "plain")
    for _ in range(int(rng.integers(0, opt.things + 1))):
        paint(_shape_mask(rng, h, w, 0.4), rng.choice(things), 0, "instance")
    for _ in range(int(rng.integers(0, opt.crowd + 1))):
        paint(_shape_mask(rng, h, w, 0.4), rng.choice(things), 1, "plain")
    for _ in range(int(rng.integers(0, opt.void + 1))):
        ids[_shape_mask(rng, h, w, 0.4)] = 0
    if opt.unlisted_gt:
        # Below and above every listed id: both ends of the id -> segment lookup.
        unlisted = idsrc.new(0, "instance") if opt.random_ids else int(rng.choice([999, 45000]))
        ids[_shape_mask(rng, h, w, 0.3)] = unlisted
    info = segments_info(ids, meta)
    if opt.area_jitter:
        for seg in info:
            seg["area"] = max(1, seg["area"] + int(rng.integers(-seg["area"] // 3, seg["area"] // 3 + 2)))
    if opt.ghost_gt:
        cat = int(rng.choice(things + stuff))
        info.append({"id": idsrc.new(cat, "instance"), "category_id": cat, "area": int(rng.integers(1, 50)),
                     "bbox": [0, 0, 1, 1], "iscrowd": int(rng.random() < 0.3)})
    return ids, info


def perturb(rng, gt: np.ndarray, gt_info: list[dict], cats: list[dict], opt: Options):
    """A prediction derived from the gt: shifted, relabelled, dropped, merged, split, eroded
    segments, painted void, extra blobs (also of classes the gt lacks)."""
    h, w = gt.shape
    if rng.random() < opt.empty_pred:
        return np.zeros_like(gt), []
    all_cats = [c["id"] for c in cats]
    base = gt if rng.random() < 0.5 else np.roll(gt, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), (0, 1))
    gt_meta = {s["id"]: (s["category_id"], s["iscrowd"]) for s in gt_info}
    tokens = np.zeros((h, w), np.int64)
    tok_cat: dict[int, int] = {}
    by_cat: dict[int, int] = {}

    def new_token(mask, cat):
        t = len(tok_cat) + 1
        tok_cat[t] = int(cat)
        tokens[mask] = t
        return t

    xx = np.broadcast_to(np.arange(w), (h, w))
    for sid in np.unique(base).tolist():
        mask = base == sid
        if sid not in gt_meta:  # void or unlisted gt
            if rng.random() < 0.3:
                new_token(mask, rng.choice(all_cats))
            continue
        cat, crowd = gt_meta[sid]
        op = rng.choice(["keep", "keep", "keep", "relabel", "drop", "merge", "split", "erode"],
                        p=None if not crowd else [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3, 0.1])
        if op == "drop":
            continue
        if op == "relabel":
            cat = rng.choice(all_cats)
        if op == "merge" and cat in by_cat:
            tokens[mask] = by_cat[cat]
            continue
        if op == "split":
            cols = xx[mask]
            thr = int(rng.integers(cols.min(), cols.max() + 1))
            new_token(mask & (xx < thr), cat)
            by_cat[cat] = new_token(mask & (xx >= thr), cat)
            continue
        if op == "erode":
            inner = mask.copy()
            for axis, s in ((0, 1), (0, -1), (1, 1), (1, -1)):
                inner &= np.roll(mask, s, axis)
            mask = inner
        by_cat[cat] = new_token(mask, cat)
    for _ in range(int(rng.integers(0, 4))):
        cat = rng.choice(opt.drop_category) if opt.drop_category and rng.random() < 0.5 else rng.choice(all_cats)
        new_token(_shape_mask(rng, h, w, 0.3), cat)
    for _ in range(int(rng.integers(0, 2))):
        tokens[_shape_mask(rng, h, w, 0.3)] = 0
    idsrc = IdSource(rng, opt.random_ids or rng.random() < 0.5)
    pred = np.zeros((h, w), np.int64)
    info = []
    for t in np.unique(tokens).tolist():
        if t == 0:
            continue
        cat = tok_cat[t]
        sid = idsrc.new(cat, "instance")
        pred[tokens == t] = sid
        info.append({"id": sid, "category_id": cat, "area": int((tokens == t).sum()), "iscrowd": 0})
    if opt.pred_void_json and (pred == 0).any():
        info.append({"id": 0, "category_id": int(rng.choice(all_cats)), "iscrowd": 0})
    rng.shuffle(info)
    return pred, info


@dataclass
class Case:
    gt_json: str
    gt_folder: str
    pred_json: str
    pred_folder: str


def write_case(root, cats, gts, preds, opt: Options | None = None, rng=None) -> Case:
    """Write gt [(ids, segments_info)] and preds [(ids, segments_info)] in the panoptic layout."""
    opt = opt or Options(shuffle_pred=False, extra_pred_images=False)
    root = str(root)
    gt_folder, pred_folder = os.path.join(root, "gt"), os.path.join(root, "pred")
    os.makedirs(gt_folder, exist_ok=True)
    os.makedirs(pred_folder, exist_ok=True)
    gt_anns, pred_anns, images = [], [], []
    for i, ((g, ginfo), (p, pinfo)) in enumerate(zip(gts, preds)):
        image_id = f"city_{i:06d}_000019"
        write_png(os.path.join(gt_folder, f"{image_id}_gtFine_panoptic.png"), g)
        write_png(os.path.join(pred_folder, f"{image_id}_pred.png"), p)
        images.append({"id": image_id, "file_name": f"{image_id}_leftImg8bit.png", "height": g.shape[0], "width": g.shape[1]})
        gt_anns.append({"image_id": image_id, "file_name": f"{image_id}_gtFine_panoptic.png", "segments_info": ginfo})
        pred_anns.append({"image_id": image_id, "file_name": f"{image_id}_pred.png", "segments_info": pinfo})
    if opt.extra_pred_images:  # predictions for images the gt does not have are ignored
        p, pinfo = preds[0]
        write_png(os.path.join(pred_folder, "extra_pred.png"), p)
        pred_anns.append({"image_id": "extra", "file_name": "extra_pred.png", "segments_info": pinfo})
    if opt.shuffle_pred and rng is not None:
        rng.shuffle(pred_anns)
    case = Case(os.path.join(root, "gt.json"), gt_folder, os.path.join(root, "pred.json"), pred_folder)
    with open(case.gt_json, "w") as f:
        json.dump({"images": images, "annotations": gt_anns, "categories": cats}, f)
    with open(case.pred_json, "w") as f:
        json.dump({"annotations": pred_anns}, f)
    return case


def random_case(root, cats, seed: int, opt: Options) -> Case:
    rng = np.random.default_rng(seed)
    gts = [random_gt(rng, cats, opt) for _ in range(opt.images)]
    preds = [perturb(rng, g, info, cats, opt) for g, info in gts]
    return write_case(root, cats, gts, preds, opt, rng)


# ---------------------------------------------------------------------------------------------
# Comparison with the reference


def reference_stats(case: Case) -> dict[int, ref.PQStatCat]:
    """The reference's raw per-category statistics, computed in this process."""
    with open(case.gt_json) as f:
        gt_json = json.load(f)
    with open(case.pred_json) as f:
        pred_json = json.load(f)
    cats = {el["id"]: el for el in gt_json["categories"]}
    preds = {el["image_id"]: el for el in pred_json["annotations"]}
    matched = [(g, preds[g["image_id"]]) for g in gt_json["annotations"]]
    return ref.pq_compute_single_core(0, matched, case.gt_folder, case.pred_folder, cats).pq_per_cat


def assert_matches_reference(case: Case, tmp_path, workers: int = 1) -> dict:
    ours = pq.evaluate(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder, workers=workers)
    # Raw statistics first: TP/FP/FN exactly, summed IoU to 1e-9.
    ref_stats = reference_stats(case)
    for cat in set(ref_stats) | set(ours.stats):
        r, o = ref_stats.get(cat, ref.PQStatCat()), ours.stats.get(cat, pq.CategoryStats())
        assert (o.tp, o.fp, o.fn) == (r.tp, r.fp, r.fn), f"category {cat}"
        assert o.iou == pytest.approx(r.iou, abs=TOL, rel=0), f"category {cat}"
    try:
        expected = ref.evaluatePanoptic(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder,
                                        str(tmp_path / "ref_results.json"))
    except ZeroDivisionError:
        # The reference divides by n = 0 when a group has no category to count; we report NaN.
        assert any(ours.results[g]["n"] == 0 for g, _ in pq.GROUPS)
        for g, _ in pq.GROUPS:
            if ours.results[g]["n"] == 0:
                assert all(math.isnan(ours.results[g][k]) for k in ("pq", "sq", "rq"))
        return ours.results
    assert_same_results(ours.results, expected)
    return ours.results


def assert_same_results(ours: dict, expected: dict) -> None:
    assert set(ours) == set(expected) == {"All", "Things", "Stuff", "per_class"}
    for group in ("All", "Things", "Stuff"):
        assert ours[group]["n"] == expected[group]["n"], group
        for key in ("pq", "sq", "rq"):
            assert ours[group][key] == pytest.approx(expected[group][key], abs=TOL, rel=0), (group, key)
    assert list(ours["per_class"]) == list(expected["per_class"])
    for cat, values in expected["per_class"].items():
        for key in ("pq", "sq", "rq"):
            assert ours["per_class"][cat][key] == pytest.approx(values[key], abs=TOL, rel=0), (cat, key)


# ---------------------------------------------------------------------------------------------
# Random cases


RANDOM_OPTIONS = {
    "plain": Options(),
    "random_ids": Options(random_ids=True),
    "crowd_heavy": Options(crowd=4, things=6),
    "void_heavy": Options(void=6),
    "json_areas": Options(area_jitter=True, ghost_gt=True, unlisted_gt=True),
    "empty_preds": Options(empty_pred=0.5, images=4),
    "one_image": Options(images=1, h=30, w=40),
    "many_images": Options(images=12, h=24, w=32),
    "pred_only_classes": Options(drop_category=[24, 21, 26]),
    "pred_void_json": Options(pred_void_json=True, random_ids=True),
    "crowd_random_ids": Options(random_ids=True, crowd=4, area_jitter=True),
}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", sorted(RANDOM_OPTIONS))
def test_random_cases_match_reference(categories, tmp_path, kind, seed):
    case = random_case(tmp_path, categories, seed * 1000 + sorted(RANDOM_OPTIONS).index(kind), RANDOM_OPTIONS[kind])
    assert_matches_reference(case, tmp_path, workers=1 + seed % 2)


@pytest.mark.parametrize("seed", range(3))
def test_converted_cityscapes_gt_matches_reference(categories, tmp_path, seed):
    """Ground truth made by cityscapesscripts' own converter from instanceIds images (ignored
    labels become void, thing regions without instance ids become crowd)."""
    rng = np.random.default_rng(100 + seed)
    city = tmp_path / "cs" / "val" / "bonn"
    city.mkdir(parents=True)
    h, w = 40, 56
    for i in range(3):
        inst = np.full((h, w), rng.choice([7, 8, 11, 21, 23]), np.uint16)
        for _ in range(6):  # stuff and ignored labels (0..6, 9, 10, 14..16, 18, 29, 30)
            inst[_shape_mask(rng, h, w, 0.6)] = rng.choice([0, 1, 3, 4, 5, 6, 8, 9, 12, 13, 17, 20, 22, 29])
        for k in range(8):
            label = int(rng.choice([24, 25, 26, 27, 28, 31, 32, 33]))
            crowd = rng.random() < 0.2
            inst[_shape_mask(rng, h, w, 0.35)] = label if crowd else label * 1000 + k
        Image.fromarray(inst).save(city / f"bonn_000000_{i:06d}_gtFine_instanceIds.png")
    out = tmp_path / "out"
    out.mkdir()
    convert2panoptic(str(tmp_path / "cs"), str(out), setNames=["val"])
    with open(out / "cityscapes_panoptic_val.json") as f:
        gt_json = json.load(f)
    preds_folder = tmp_path / "pred"
    preds_folder.mkdir()
    pred_anns = []
    for ann in gt_json["annotations"]:
        gt = pq.read_panoptic_png(str(out / "cityscapes_panoptic_val" / ann["file_name"])).astype(np.int64)
        p, pinfo = perturb(rng, gt, ann["segments_info"], categories, Options())
        write_png(preds_folder / f"{ann['image_id']}.png", p)
        pred_anns.append({"image_id": ann["image_id"], "file_name": f"{ann['image_id']}.png", "segments_info": pinfo})
    with open(tmp_path / "pred.json", "w") as f:
        json.dump({"annotations": pred_anns}, f)
    case = Case(str(out / "cityscapes_panoptic_val.json"), str(out / "cityscapes_panoptic_val"),
                str(tmp_path / "pred.json"), str(preds_folder))
    assert_matches_reference(case, tmp_path, workers=2)


# ---------------------------------------------------------------------------------------------
# Hand-made edge cases (20x40 images; road = 7 stuff, car = 26 and person = 24 things)


def _seg(sid, cat, ids=None, crowd=0, area=None):
    if area is None:
        area = int((ids == sid).sum())
    return {"id": sid, "category_id": cat, "area": area, "iscrowd": crowd}


def _base_gt():
    gt = np.full((20, 40), 7, np.int64)
    gt[0:10, 20:40] = 26001  # car, 200 px
    gt[15:20, 0:10] = 0  # void, 50 px
    return gt


@pytest.mark.parametrize(
    "inside, outside, void_px, matched",
    [
        (100, 0, 0, False),  # 100 px inside a 200 px car: IoU exactly 0.5 -> no match
        (100, 0, 3, False),  # void pixels leave the union: still exactly 0.5
        (101, 0, 0, True),  # 101 / 200
        (101, 1, 0, True),  # 101 / 201
        (101, 2, 0, False),  # 101 / 202 = 0.5
        (101, 2, 7, False),
    ],
)
def test_iou_exactly_one_half(categories, tmp_path, inside, outside, void_px, matched):
    gt = _base_gt()
    pred = np.full_like(gt, 7)
    for value, count in ((26001, inside), (7, outside), (0, void_px)):
        pred.ravel()[np.flatnonzero(gt.ravel() == value)[:count]] = 5
    gt_info = [_seg(7, 7, gt), _seg(26001, 26, gt)]
    pred_info = [_seg(7, 7, pred), _seg(5, 26, pred)]
    case = write_case(tmp_path, categories, [(gt, gt_info)], [(pred, pred_info)])
    assert_matches_reference(case, tmp_path)
    stats = pq.evaluate(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder, workers=1).stats
    assert stats[26].tp == int(matched)


def test_iou_just_above_one_half(categories, tmp_path):
    gt = _base_gt()
    pred = np.full_like(gt, 7)
    pred[0:5, 20:40] = 5
    pred[5, 20] = 5  # 101 / 200
    case = write_case(tmp_path, categories, [(gt, [_seg(7, 7, gt), _seg(26001, 26, gt)])],
                      [(pred, [_seg(7, 7, pred), _seg(5, 26, pred)])])
    assert_matches_reference(case, tmp_path)


def test_gt_area_comes_from_json(categories, tmp_path):
    """The reference uses the gt JSON's area, not the PNG's: a smaller JSON area turns a miss
    into a match."""
    gt = _base_gt()
    pred = np.full_like(gt, 7)
    pred[0:5, 20:40] = 5
    gt_info = [_seg(7, 7, gt), _seg(26001, 26, area=150)]
    case = write_case(tmp_path, categories, [(gt, gt_info)], [(pred, [_seg(7, 7, pred), _seg(5, 26, pred)])])
    assert_matches_reference(case, tmp_path)
    stats = pq.evaluate(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder, workers=1).stats
    assert stats[26].tp == 1


@pytest.mark.parametrize("on_void, fp", [(24, 1), (25, 1), (26, 0)])
def test_prediction_mostly_on_void_is_not_a_false_positive(categories, tmp_path, on_void, fp):
    """An unmatched 50 px person: a false positive unless strictly more than 25 px lie on void."""
    gt = _base_gt()
    pred = np.full_like(gt, 7)
    person = np.zeros_like(gt, bool)
    person.ravel()[np.flatnonzero(gt.ravel() == 0)[:on_void]] = True
    person.ravel()[np.flatnonzero(gt.ravel() == 7)[: 50 - on_void]] = True
    pred[person] = 9
    case = write_case(tmp_path, categories, [(gt, [_seg(7, 7, gt), _seg(26001, 26, gt)])],
                      [(pred, [_seg(7, 7, pred), _seg(9, 24, pred)])])
    assert_matches_reference(case, tmp_path)
    stats = pq.evaluate(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder, workers=1).stats
    assert stats.get(24, pq.CategoryStats()).fp == fp


def test_several_crowd_regions_of_one_class_only_last_counts(categories, tmp_path):
    """With two car crowd regions, only the one listed last shields false positives."""
    gt = _base_gt()
    gt[10:14, 0:10] = 26  # crowd A, 40 px
    gt[10:14, 30:40] = 126  # crowd B, 40 px
    gt_info = [_seg(7, 7, gt), _seg(26001, 26, gt), _seg(26, 26, gt, crowd=1), _seg(126, 26, gt, crowd=1)]
    pred = np.full_like(gt, 7)
    pred[10:14, 0:10] = 3  # car on crowd A: counted as FP (A is not the remembered crowd)
    pred[10:14, 30:40] = 4  # car on crowd B: ignored
    pred_info = [_seg(7, 7, pred), _seg(3, 26, pred), _seg(4, 26, pred)]
    case = write_case(tmp_path, categories, [(gt, gt_info)], [(pred, pred_info)])
    assert_matches_reference(case, tmp_path)
    stats = pq.evaluate(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder, workers=1).stats
    assert (stats[26].fp, stats[26].fn) == (1, 1)


def test_crowd_of_another_class_does_not_shield(categories, tmp_path):
    gt = _base_gt()
    gt[10:14, 0:10] = 24  # person crowd
    pred = np.full_like(gt, 7)
    pred[10:14, 0:10] = 3  # a car on it
    case = write_case(tmp_path, categories, [(gt, [_seg(7, 7, gt), _seg(26001, 26, gt), _seg(24, 24, gt, crowd=1)])],
                      [(pred, [_seg(7, 7, pred), _seg(3, 26, pred)])])
    assert_matches_reference(case, tmp_path)


def test_prediction_without_things_reports_nan_where_reference_divides_by_zero(categories, tmp_path):
    gt = np.full((20, 40), 7, np.int64)
    gt[:5] = 23
    pred = gt.copy()
    case = write_case(tmp_path, categories, [(gt, [_seg(7, 7, gt), _seg(23, 23, gt)])],
                      [(pred, [_seg(7, 7, pred), _seg(23, 23, pred)])])
    results = assert_matches_reference(case, tmp_path)
    assert results["Things"]["n"] == 0 and math.isnan(results["Things"]["pq"])
    assert results["Stuff"]["pq"] == 1.0


def test_void_ids_in_both_jsons(categories, tmp_path):
    """id 0 listed as a segment on both sides: the reference treats it like any segment."""
    gt = _base_gt()
    pred = gt.copy()
    pred[0:3, 0:3] = 0
    gt_info = [_seg(7, 7, gt), _seg(26001, 26, gt), _seg(0, 26, gt)]
    pred_info = [_seg(7, 7, pred), _seg(26001, 26, pred), _seg(0, 26, pred)]
    case = write_case(tmp_path, categories, [(gt, gt_info)], [(pred, pred_info)])
    assert_matches_reference(case, tmp_path)


def test_rgba_png_is_read_like_the_reference(categories, tmp_path):
    gt = _base_gt()
    case = write_case(tmp_path, categories, [(gt, [_seg(7, 7, gt), _seg(26001, 26, gt)])],
                      [(gt, [_seg(7, 7, gt), _seg(26001, 26, gt)])])
    path = os.path.join(case.pred_folder, "city_000000_000019_pred.png")
    rgba = np.concatenate([_rgb(gt), np.full(gt.shape + (1,), 77, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(path)
    assert_matches_reference(case, tmp_path)


def test_pool_and_single_process_agree(categories, tmp_path):
    case = random_case(tmp_path, categories, 7, Options(images=9, random_ids=True))
    one = pq.evaluate(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder, workers=1).results
    two = pq.evaluate(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder, workers=2).results
    assert_same_results(one, two)


@pytest.mark.parametrize("seed", range(3))
def test_compiled_and_opencv_paths_give_the_same_statistics(categories, tmp_path, monkeypatch, seed):
    """The compiled pixel pass and the OpenCV path on the same images (predictions of about half
    of them have 24-bit random ids, which take the OpenCV path anyway)."""
    from pisr_ros.evaluation import panoptic_png

    case = random_case(tmp_path, categories, 40 + seed, Options(images=8, crowd=3, unlisted_gt=True, ghost_gt=True))
    assert panoptic_png.available()
    calls = []
    histogram = panoptic_png.pair_histogram
    monkeypatch.setattr(panoptic_png, "pair_histogram", lambda *a: calls.append(1) or histogram(*a))
    compiled = pq.evaluate(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder, workers=2)
    assert calls  # some images went through the compiled pass
    monkeypatch.setattr(panoptic_png, "available", lambda: False)
    opencv = pq.evaluate(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder, workers=1)
    assert compiled.stats == opencv.stats
    assert_same_results(compiled.results, opencv.results)


def test_results_file_has_the_reference_layout(categories, tmp_path):
    case = random_case(tmp_path, categories, 3, Options())
    ours_file, ref_file = tmp_path / "ours.json", tmp_path / "ref.json"
    pq.evaluate_panoptic(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder, str(ours_file), workers=2)
    ref.evaluatePanoptic(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder, str(ref_file))
    ours, theirs = json.loads(ours_file.read_text()), json.loads(ref_file.read_text())
    assert_same_results(ours, theirs)  # same keys (category ids as strings), fractions not percent


# ---------------------------------------------------------------------------------------------
# Command line


def test_cli_prints_table_and_writes_json(categories, tmp_path, capsys):
    case = random_case(tmp_path, categories, 11, Options())
    out = tmp_path / "results.json"
    rc = cli.main(["evaluate", "--gt-json", case.gt_json, "--gt-folder", case.gt_folder, "--pred-json",
                   case.pred_json, "--pred-folder", case.pred_folder, "--json-out", str(out), "--workers", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "All" in text and "Things" in text and "person" in text
    expected = ref.evaluatePanoptic(case.gt_json, case.gt_folder, case.pred_json, case.pred_folder,
                                    str(tmp_path / "ref.json"))
    written = json.loads(out.read_text())
    assert_same_results(written, json.loads(json.dumps(expected)))


def _cli_error(case: Case, capsys, *extra: str) -> str:
    rc = cli.main(["evaluate", "--gt-json", case.gt_json, "--gt-folder", case.gt_folder, "--pred-json",
                   case.pred_json, "--pred-folder", case.pred_folder, "--workers", "1", *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1, err
    return err


@pytest.fixture
def simple_case(categories, tmp_path) -> Case:
    gt = _base_gt()
    pred = gt.copy()
    return write_case(tmp_path, categories, [(gt, [_seg(7, 7, gt), _seg(26001, 26, gt)])],
                      [(pred, [_seg(7, 7, pred), _seg(26001, 26, pred)])])


def _edit_pred_json(case: Case, edit) -> None:
    with open(case.pred_json) as f:
        data = json.load(f)
    edit(data)
    with open(case.pred_json, "w") as f:
        json.dump(data, f)


def test_cli_missing_png(simple_case, capsys):
    os.remove(os.path.join(simple_case.pred_folder, "city_000000_000019_pred.png"))
    err = _cli_error(simple_case, capsys)
    assert "city_000000_000019_pred.png" in err and "no such file" in err


def test_cli_missing_json(simple_case, capsys):
    os.remove(simple_case.pred_json)
    err = _cli_error(simple_case, capsys)
    assert simple_case.pred_json in err and "no such file" in err


def test_cli_png_id_absent_from_json(simple_case, capsys):
    _edit_pred_json(simple_case, lambda d: d["annotations"][0]["segments_info"].pop())
    err = _cli_error(simple_case, capsys)
    assert "city_000000_000019_pred.png" in err and "26001" in err and "not in the prediction JSON" in err


def test_cli_json_id_absent_from_png(simple_case, capsys):
    _edit_pred_json(simple_case, lambda d: d["annotations"][0]["segments_info"].append(
        {"id": 4242, "category_id": 26, "iscrowd": 0}))
    err = _cli_error(simple_case, capsys)
    assert "4242" in err and "not in the PNG" in err


def test_cli_unknown_category(simple_case, capsys):
    _edit_pred_json(simple_case, lambda d: d["annotations"][0]["segments_info"][1].update(category_id=99))
    err = _cli_error(simple_case, capsys)
    assert "city_000000_000019_pred.png" in err and "category_id 99" in err


def test_cli_size_mismatch(simple_case, capsys):
    write_png(os.path.join(simple_case.pred_folder, "city_000000_000019_pred.png"), np.full((10, 40), 7, np.int64))
    err = _cli_error(simple_case, capsys)
    assert "city_000000_000019_pred.png" in err and "40x10" in err and "40x20" in err


def test_cli_image_without_prediction(simple_case, capsys):
    _edit_pred_json(simple_case, lambda d: d["annotations"][0].update(image_id="other"))
    err = _cli_error(simple_case, capsys)
    assert simple_case.pred_json in err and "no prediction for image_id 'city_000000_000019'" in err


def test_cli_needs_something_to_evaluate(capsys):
    assert cli.main(["evaluate"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
