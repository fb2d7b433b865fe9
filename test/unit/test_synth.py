"""`pisr-ros synth`: the Cityscapes layout, determinism, label consistency and the panoptic json."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label, labels as cs_labels
from PIL import Image

from pisr_ros import cli
from pisr_ros import cityscapes_layout as layout
from pisr_ros.data import synth
from pisr_ros.panoptic import rgb_to_id
from pisr_ros.taxonomy import LABEL_COLORS

SIZE = (128, 256)
NUM = 6
SEED = 3

VALID_LABEL_IDS = {lab.id for lab in cs_labels if lab.id >= 0}
THING_LABEL_IDS = {lab.id for lab in cs_labels if lab.hasInstances}
KINDS = {
    "leftImg8bit": layout.LEFT_IMG_SUFFIX,
    "gtFine": (layout.LABEL_IDS_SUFFIX, layout.INSTANCE_IDS_SUFFIX, layout.COLOR_SUFFIX),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "cs"
    synth.generate(root, "val", NUM, SIZE, seed=SEED, workers=2)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(root: Path, image_id: str):
    paths = layout.image_paths(root, "val", image_id)
    return (
        np.array(Image.open(paths.left_img)),
        np.array(Image.open(paths.label_ids)),
        np.array(Image.open(paths.instance_ids)).astype(np.int64),
        np.array(Image.open(paths.color)),
    )


def _ids(root):
    return layout.list_split(root, "val")


# ----------------------------------------------------------------------------- layout


def test_layout_is_exactly_cityscapes(dataset):
    ids = _ids(dataset)
    assert ids == sorted(synth.image_id_of("val", i) for i in range(NUM))
    expected = set()
    for image_id in ids:
        city, seq, frame = layout.parse_image_id(image_id)
        assert city in synth.CITIES["val"]
        assert re.fullmatch(r"[a-z]+_\d{6}_\d{6}", image_id)
        expected.add(f"leftImg8bit/val/{city}/{image_id}_leftImg8bit.png")
        for suffix in ("labelIds", "instanceIds", "color"):
            expected.add(f"gtFine/val/{city}/{image_id}_gtFine_{suffix}.png")
        expected.add(f"gtFine/cityscapes_panoptic_val/{image_id}_gtFine_panoptic.png")
    expected.add("gtFine/cityscapes_panoptic_val.json")
    assert set(_files(dataset)) == expected  # nothing missing, nothing extra (no scratch left behind)


def test_file_formats(dataset):
    for image_id in _ids(dataset):
        paths = layout.image_paths(dataset, "val", image_id)
        img, lab, inst = (Image.open(p) for p in (paths.left_img, paths.label_ids, paths.instance_ids))
        color = Image.open(paths.color)
        assert img.mode == "RGB" and img.size == (SIZE[1], SIZE[0])
        assert lab.mode == "L" and lab.size == img.size
        assert inst.mode in ("I;16", "I") and np.array(inst).dtype in (np.uint16, np.int32)
        assert color.mode == "RGBA" and color.size == img.size


def test_image_is_rgb_not_bgr(tmp_path):
    """The file holds the rendered RGB channels in RGB order (cv2 writes BGR unless told)."""
    rgb, labels, _ = synth.render_scene(SEED, "val", 0, SIZE)
    synth.write_scene(tmp_path, "val", 0, SEED, SIZE)
    on_disk = np.array(Image.open(layout.image_paths(tmp_path, "val", synth.image_id_of("val", 0)).left_img))
    assert np.array_equal(on_disk, rgb)


def test_layout_helpers_round_trip():
    assert layout.image_id("frankfurt", 0, 294) == "frankfurt_000000_000294"
    assert layout.parse_image_id("frankfurt_000000_000294_gtFine_labelIds.png") == ("frankfurt", 0, 294)
    with pytest.raises(ValueError):
        layout.parse_image_id("not_an_id.png")
    with pytest.raises(ValueError):
        layout.image_id("Bad City", 0, 0)
    p = layout.image_paths("/r", "train", "aachen_000001_000019")
    assert p.left_img == Path("/r/leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png")
    assert p.instance_ids == Path("/r/gtFine/train/aachen/aachen_000001_000019_gtFine_instanceIds.png")
    assert p.panoptic == Path("/r/gtFine/cityscapes_panoptic_train/aachen_000001_000019_gtFine_panoptic.png")


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_with_any_worker_count(dataset, tmp_path):
    # workers=1 also runs the converter in one call; the fixture (2 workers) shards it.
    again = tmp_path / "again"
    synth.generate(again, "val", NUM, SIZE, seed=SEED, workers=1)
    assert _files(again) == _files(dataset)


def test_different_seed_gives_different_scenes(dataset, tmp_path):
    other = tmp_path / "other"
    synth.generate(other, "val", NUM, SIZE, seed=SEED + 1, workers=1)
    for image_id in _ids(dataset):
        a = layout.image_paths(dataset, "val", image_id)
        b = layout.image_paths(other, "val", image_id)
        assert a.left_img.read_bytes() != b.left_img.read_bytes()
        assert a.label_ids.read_bytes() != b.label_ids.read_bytes()


def test_splits_differ_for_the_same_seed():
    a = synth.render_scene(SEED, "train", 0, SIZE)[1]
    b = synth.render_scene(SEED, "val", 0, SIZE)[1]
    assert not np.array_equal(a, b)


# ----------------------------------------------------------------------------- labels


def test_label_ids_are_cityscapes_ids_and_colours_follow(dataset):
    for image_id in _ids(dataset):
        _, lab, _, color = _load(dataset, image_id)
        assert set(np.unique(lab).tolist()) <= VALID_LABEL_IDS
        assert np.array_equal(color[..., :3], LABEL_COLORS[lab])
        assert (color[..., 3] == 255).all()


def test_instance_ids_agree_with_label_ids(dataset):
    for image_id in _ids(dataset):
        _, lab, inst, _ = _load(dataset, image_id)
        big = inst >= 1000
        assert np.array_equal(inst[big] // 1000, lab[big])
        assert np.array_equal(inst[~big], lab[~big])
        is_thing = np.isin(lab, sorted(THING_LABEL_IDS))
        assert np.array_equal(big, is_thing), "every thing pixel has an instance, no stuff pixel has one"


def test_thing_and_stuff_classes_appear(dataset):
    present = set()
    instances = 0
    for image_id in _ids(dataset):
        _, lab, inst, _ = _load(dataset, image_id)
        present |= set(np.unique(lab).tolist())
        instances += len(np.unique(inst[inst >= 1000]))
    names = {id2label[i].name for i in present}
    things = names & {"person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"}
    stuff = names & {"road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                     "vegetation", "terrain", "sky"}
    assert {"person", "car"} <= things and len(things) >= 4, names
    assert {"road", "sidewalk", "building", "vegetation", "sky", "pole"} <= stuff and len(stuff) >= 8, names
    assert names & {"ego vehicle", "static", "rectification border"}, "some void pixels for evaluators to ignore"
    assert instances >= 5 * NUM


def test_perspective_farther_people_are_smaller_and_higher():
    """Among people and cars, the higher the foot point in the image, the smaller the instance."""
    heights, feet = [], []
    for i in range(4):
        _, lab, inst = synth.render_scene(SEED, "val", i, (256, 512))
        for v in np.unique(inst[(lab == 24) | (lab == 26)]):
            ys = np.nonzero(inst == v)[0]
            if len(ys) > 30:
                heights.append(ys.max() - ys.min() + 1)
                feet.append(ys.max())
    rank = lambda a: np.argsort(np.argsort(a))
    rho = np.corrcoef(rank(np.array(heights)), rank(np.array(feet)))[0, 1]
    assert len(heights) > 20 and rho > 0.5, rho


# ----------------------------------------------------------------------------- panoptic ground truth


def test_panoptic_json_lists_every_segment_of_its_png(dataset):
    with open(layout.panoptic_json(dataset, "val")) as f:
        pan = json.load(f)
    assert [im["id"] for im in pan["images"]] == _ids(dataset)
    categories = {c["id"]: c for c in pan["categories"]}
    for ann in pan["annotations"]:
        png = np.array(Image.open(layout.panoptic_dir(dataset, "val") / ann["file_name"]))
        ids = rgb_to_id(png)
        areas = dict(zip(*np.unique(ids, return_counts=True)))
        areas.pop(0, None)  # void
        segments = {s["id"]: s for s in ann["segments_info"]}
        assert set(segments) == set(areas)
        _, lab, inst, _ = _load(dataset, ann["image_id"])
        for sid, seg in segments.items():
            assert seg["area"] == areas[sid]
            assert seg["category_id"] == (sid // 1000 if sid >= 1000 else sid)
            assert seg["category_id"] in categories
            assert seg["iscrowd"] == 0  # every thing pixel belongs to an instance
            assert np.array_equal(ids == sid, inst == sid)
        evaluated = np.isin(lab, sorted(categories))
        assert np.array_equal(ids != 0, evaluated), "void in the PNG is exactly the ignoreInEval labels"


# ----------------------------------------------------------------------------- command line


def test_cli_writes_split_and_contact_sheet(tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    rc = cli.main(["synth", "--out", str(tmp_path / "d"), "--split", "train", "--num", "2", "--size", "64x128",
                   "--seed", "1", "--workers", "1", "--contact-sheet", str(sheet)])
    assert rc == 0
    assert len(layout.list_split(tmp_path / "d", "train")) == 2
    assert layout.panoptic_json(tmp_path / "d", "train").exists()
    img = np.array(Image.open(sheet))
    assert img.ndim == 3 and img.shape[1] > 256 and img.shape[0] > 2 * 128  # thumbnails + panoptic rows
    # A second split in the same root is fine; the same split again needs --overwrite.
    assert cli.main(["synth", "--out", str(tmp_path / "d"), "--split", "val", "--num", "1", "--size", "64x128",
                     "--workers", "1"]) == 0
    assert len(layout.list_split(tmp_path / "d", "train")) == 2
    capsys.readouterr()
    args = ["synth", "--out", str(tmp_path / "d"), "--split", "train", "--num", "1", "--size", "64x128", "--workers", "1"]
    assert cli.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(args + ["--overwrite"]) == 0
    assert len(layout.list_split(tmp_path / "d", "train")) == 1  # the old scenes are gone, not mixed in
    with open(layout.panoptic_json(tmp_path / "d", "train")) as f:
        assert len(json.load(f)["images"]) == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--size", "1024"], "HEIGHTxWIDTH"),
        (["--size", "axb"], "HEIGHTxWIDTH"),
        (["--size", "16x2048"], "between 32 and 8192"),
        (["--num", "0"], "--num"),
        (["--num", "-3"], "--num"),
        (["--seed", "-1"], "--seed"),
        (["--workers", "0"], "--workers"),
        (["--contact-sheet", "sheet.jpg"], ".png"),
    ],
)
def test_cli_refuses_bad_arguments(tmp_path, capsys, extra, message):
    args = {"--out": str(tmp_path / "d"), "--split": "val", "--num": "1", "--size": "64x128"}
    for key, value in zip(extra[::2], extra[1::2]):
        args[key] = value
    argv = ["synth"] + [x for kv in args.items() for x in kv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_cli_refuses_an_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["synth", "--out", str(f), "--split", "val", "--num", "1", "--size", "64x128"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_cli_rejects_unknown_split(tmp_path):
    with pytest.raises(SystemExit) as exc:  # argparse's choices, also exit status 2
        cli.main(["synth", "--out", str(tmp_path), "--split", "test2", "--num", "1"])
    assert exc.value.code == 2


def test_help_mentions_the_layout(capsys):
    with pytest.raises(SystemExit):
        cli.main(["synth", "--help"])
    out = capsys.readouterr().out
    for word in ("--out", "--split", "--num", "--size", "--seed", "--workers", "--contact-sheet", "instanceIds"):
        assert word in out
