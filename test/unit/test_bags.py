"""rosbag2 bags of camera frames (pisr_ros.evaluation.bags, `pisr-ros make-bag`): round trips in
both storage formats, raw and JPEG, the frames map, and the errors a user meets."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from pisr_ros import cli
from pisr_ros.data import synth
from pisr_ros.errors import UsageError
from pisr_ros.evaluation import bags
from pisr_ros.image_files import find_images

SIZE = (128, 256)


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs")
    synth.generate(root, "val", 3, SIZE, seed=31, workers=1)
    return root


@pytest.fixture(scope="module")
def images(cs_root):
    return find_images(cs_root / "leftImg8bit" / "val")


@pytest.mark.parametrize("fmt", bags.FORMATS)
@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "jpeg"])
def test_round_trip(images, tmp_path, fmt, compressed):
    out = tmp_path / "bag"
    frame_map = bags.write_image_bag(images, out, topic="/front/image_raw", rate_hz=10, fmt=fmt,
                                     compressed=compressed, frame_id="cam_optical")
    topic = "/front/image_raw/compressed" if compressed else "/front/image_raw"
    assert frame_map.topic == topic
    assert (out / "metadata.yaml").is_file()
    assert (out / f"bag.{'mcap' if fmt == 'mcap' else 'db3'}").is_file()

    frames = list(bags.read_image_frames(out, topic))
    assert len(frames) == len(images) == 3
    stamps = [f.stamp_ns for f in frames]
    assert stamps == [bags.DEFAULT_START_NS + i * 100_000_000 for i in range(3)]  # 10 Hz
    for frame, (image_id, path) in zip(frames, images):
        stamp, header, image = frame  # unpacks as (stamp_ns, header, bgr)
        assert header.frame_id == "cam_optical"
        assert bags.stamp_ns(header) == stamp
        expected = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert image.shape == expected.shape and image.dtype == np.uint8
        if compressed:
            assert cv2.PSNR(image, expected) > 30  # JPEG at quality 95 of noisy synthetic scenes: ~33 dB
        else:
            assert np.array_equal(image, expected)
        assert frame_map.by_stamp[stamp] == image_id

    # The bag time is the header stamp; the message type is what the topic says.
    with Reader(out) as reader:
        (conn,) = reader.connections
        assert conn.msgtype == (bags.COMPRESSED_TYPE if compressed else bags.IMAGE_TYPE)
        assert [t for _, t, _ in reader.messages()] == stamps

    # The frames map, in the JSON inside the bag and in the metadata's custom_data.
    doc = json.loads((out / bags.FRAMES_FILE).read_text())
    assert doc["format"] == bags.FRAMES_FORMAT and doc["split"] == "val" and doc["rate_hz"] == 10
    assert [(f["stamp_ns"], f["image_id"]) for f in doc["frames"]] == list(zip(stamps, [i for i, _ in images]))
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert json.loads(meta["custom_data"][bags.METADATA_KEY]) == doc
    (out / bags.FRAMES_FILE).unlink()
    assert bags.read_frame_map(out).by_stamp == frame_map.by_stamp  # from the metadata alone


def test_make_bag_cli_rate_start_and_force(cs_root, tmp_path, capsys):
    out = tmp_path / "b"
    args = ["make-bag", "--images", str(cs_root / "leftImg8bit" / "val"), "--out", str(out),
            "--rate", "4", "--start", "12.5", "--format", "sqlite3", "--topic", "/rear/image_raw"]
    assert cli.main(args) == 0
    stamps = [s for s, *_ in bags.read_raw_messages(out, "/rear/image_raw")]
    assert stamps == [12_500_000_000, 12_750_000_000, 13_000_000_000]  # 4 Hz from 12.5 s
    assert "3 frames" in capsys.readouterr().out

    assert cli.main(args) == 2  # never overwrites without --force
    assert "exists; pass --force" in capsys.readouterr().err
    assert cli.main(args[:-2] + ["--force"]) == 0  # replaced, now on the default topic
    assert set(bags.bag_topics(out)) == {"/front/image_raw"}

    not_a_bag = tmp_path / "data"
    not_a_bag.mkdir()
    (not_a_bag / "keep.txt").write_text("mine")
    assert cli.main(["make-bag", "--images", str(cs_root), "--out", str(not_a_bag), "--force"]) == 2
    assert "not a rosbag2 folder" in capsys.readouterr().err
    assert (not_a_bag / "keep.txt").read_text() == "mine"


def test_make_bag_cli_errors(cs_root, tmp_path, capsys):
    assert cli.main(["make-bag", "--images", str(tmp_path / "none"), "--out", str(tmp_path / "b")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli.main(["make-bag", "--images", str(cs_root), "--out", str(tmp_path / "b"), "--rate", "0"]) == 2
    assert "positive" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_reading_errors_name_what_is_there(images, tmp_path):
    with pytest.raises(UsageError, match="no bag at"):
        list(bags.read_image_frames(tmp_path / "missing", "/front/image_raw"))

    bag = tmp_path / "bag"
    bags.write_image_bag(images[:1], bag)
    with pytest.raises(UsageError, match=r"no topic /rear/image_raw; it has: /front/image_raw \(sensor_msgs/msg/Image, 1 msgs\)"):
        list(bags.read_image_frames(bag, "/rear/image_raw"))
    with pytest.raises(UsageError, match=r"expected /rear/image_raw or /rear/image_raw/compressed; it has: /front/image_raw"):
        bags.camera_image_topic(bag, "/rear")
    assert bags.camera_image_topic(bag, "/front/")[:2] == ("/front/image_raw", bags.IMAGE_TYPE)

    # A topic of another type.
    other = tmp_path / "strings"
    store = bags.typestore()
    writer = Writer(other, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conn = writer.add_connection("/front/image_raw", "std_msgs/msg/String", typestore=store)
    msg = store.types["std_msgs/msg/String"](data="hello")
    writer.write(conn, 1, store.serialize_cdr(msg, "std_msgs/msg/String"))
    writer.close()
    with pytest.raises(UsageError, match="holds std_msgs/msg/String, not sensor_msgs/msg/Image"):
        list(bags.read_image_frames(other, "/front/image_raw"))
    with pytest.raises(UsageError, match="no frames map.*--frames"):
        bags.read_frame_map(other)

    # A frames map given explicitly wins; a broken one is named.
    custom = tmp_path / "frames.json"
    custom.write_text(json.dumps({"frames": [{"stamp_ns": 1, "image_id": "x"}]}))
    assert bags.read_frame_map(other, custom).by_stamp == {1: "x"}
    custom.write_text(json.dumps({"frames": [{"stamp_ns": "1", "image_id": "x"}]}))
    with pytest.raises(UsageError, match="integer 'stamp_ns'"):
        bags.read_frame_map(other, custom)


def test_bare_storage_file_reads_too(images, tmp_path):
    bag = tmp_path / "bag"
    bags.write_image_bag(images[:2], bag, fmt="mcap")
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(bag / "bag.mcap", loose / "bag.mcap")
    shutil.copy(bag / bags.FRAMES_FILE, loose / bags.FRAMES_FILE)
    frames = list(bags.read_image_frames(loose / "bag.mcap", "/front/image_raw"))
    assert len(frames) == 2
    assert bags.read_frame_map(loose / "bag.mcap").by_stamp[frames[1].stamp_ns] == images[1][0]
