"""The one Cityscapes-format prediction writer (pisr_ros.evaluation.cityscapes_files): what its
files hold, read back with PIL (not the cv2 that wrote them), and cityscapesscripts' own label
table for the categories."""
from __future__ import annotations

import json

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import trainId2label
from PIL import Image

from pisr_ros.evaluation import cityscapes_files as cf
from pisr_ros.evaluation.cityscapes_files import CityscapesWriter


def _id_map() -> np.ndarray:
    """road (stuff) below, sky above, two cars (trainId 13) and a person (11), a void corner."""
    ids = np.full((40, 60), 10 * 1000, np.int32)  # sky
    ids[20:] = 0  # road
    ids[22:30, 5:20] = 13 * 1000 + 1
    ids[24:34, 30:50] = 13 * 1000 + 2
    ids[10:25, 52:56] = 11 * 1000 + 1
    ids[:4, :6] = -1
    return ids


def _png_ids(path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 ** 2 * rgb[..., 2]


def test_files_hold_the_id_map_in_the_cityscapes_encoding(tmp_path):
    ids = _id_map()
    semantic = np.where(ids < 0, 255, ids // 1000).astype(np.uint8)
    semantic[35:, :10] = 12  # the semantic head may disagree with the panoptic segments
    writer = CityscapesWriter(tmp_path / "out")
    writer.add("frankfurt_000000_000294", "frankfurt_000000_000294_leftImg8bit.png", ids, semantic)
    path = writer.close()
    assert path == tmp_path / "out" / cf.PANOPTIC_JSON
    doc = json.loads(path.read_text())
    (ann,) = doc["annotations"]
    assert ann["image_id"] == "frankfurt_000000_000294"
    assert ann["file_name"] == "frankfurt_000000_000294" + cf.PANOPTIC_SUFFIX
    assert doc["images"] == [{"id": "frankfurt_000000_000294", "file_name": "frankfurt_000000_000294_leftImg8bit.png",
                              "height": 40, "width": 60}]

    png = _png_ids(tmp_path / "out" / cf.PANOPTIC_DIR / ann["file_name"])
    assert (png[ids < 0] == 0).all()  # void
    label = {t: trainId2label[t].id for t in (0, 10, 11, 13)}
    expected = {label[0]: ids == 0, label[10]: ids == 10000,  # stuff: the plain labelId
                label[13] * 1000 + 1: ids == 13001, label[13] * 1000 + 2: ids == 13002, label[11] * 1000 + 1: ids == 11001}
    assert {s["id"] for s in ann["segments_info"]} == set(expected)
    for seg in ann["segments_info"]:
        mask = expected[seg["id"]]
        assert (png == seg["id"]).sum() == mask.sum() == seg["area"]
        assert (png[mask] == seg["id"]).all()
        assert seg["category_id"] == (seg["id"] // 1000 if seg["id"] >= 1000 else seg["id"])
    assert set(np.unique(png).tolist()) == set(expected) | {0}

    sem = np.asarray(Image.open(tmp_path / "out" / cf.SEMANTIC_DIR / ("frankfurt_000000_000294" + cf.SEMANTIC_SUFFIX)))
    assert sem.dtype == np.uint8 and sem.shape == ids.shape
    lut = np.zeros(256, np.uint8)  # void (255) -> labelId 0, "unlabeled"
    for t in range(19):
        lut[t] = trainId2label[t].id
    np.testing.assert_array_equal(sem, lut[semantic])


def test_categories_are_the_training_classes_by_label_id():
    cats = cf.categories()
    assert [c["id"] for c in cats] == [trainId2label[t].id for t in range(19)]
    for t, c in enumerate(cats):
        ref = trainId2label[t]
        assert (c["name"], c["isthing"], tuple(c["color"])) == (ref.name, int(ref.hasInstances), ref.color)
        assert c["supercategory"] == ("thing" if ref.hasInstances else "stuff")


def test_no_semantic_size_override_and_order(tmp_path):
    writer = CityscapesWriter(tmp_path)
    ids = _id_map()
    writer.add("b", "b.jpg", ids, None, height=80, width=120)  # id map at half the camera's resolution
    writer.add("a", "a.png", ids, None)
    assert writer.ids == ["b", "a"]
    assert not (tmp_path / cf.SEMANTIC_DIR).exists()  # no labelIds asked for, no folder of them
    doc = json.loads(writer.close().read_text())
    assert [(i["id"], i["height"], i["width"]) for i in doc["images"]] == [("b", 80, 120), ("a", 40, 60)]
    assert [a["image_id"] for a in doc["annotations"]] == ["b", "a"]
    assert doc == writer.document()
    assert sorted(p.name for p in tmp_path.iterdir()) == [cf.PANOPTIC_DIR, cf.PANOPTIC_JSON]  # no temporary left


def test_refuses_what_is_no_id_map_and_a_second_prediction(tmp_path):
    writer = CityscapesWriter(tmp_path)
    ids = _id_map()
    with pytest.raises(ValueError, match="must be HxW int32"):
        writer.add("x", "x.png", ids.astype(np.int64), None)
    with pytest.raises(ValueError, match="must be HxW int32"):
        writer.add("x", "x.png", ids[None], None)
    with pytest.raises(ValueError, match="semantic map of x"):
        writer.add("x", "x.png", ids, np.zeros((4, 4), np.uint8))
    writer.add("x", "x.png", ids, None)
    with pytest.raises(ValueError, match="two predictions for image x"):
        writer.add("x", "x.png", ids, None)
    assert writer.ids == ["x"]
