"""rosbag2 files of camera images, written and read with ``rosbags`` (no ROS installation, no rclpy).

A bag that ``pisr-ros make-bag`` writes is a rosbag2 folder (``metadata.yaml`` and one ``.mcap``
or ``.db3`` file) that ``ros2 bag play`` plays, holding one topic of ``sensor_msgs/msg/Image``
(``bgr8``) or ``sensor_msgs/msg/CompressedImage`` (JPEG, format ``"bgr8; jpeg compressed bgr8"``
as image_transport writes it). Message ``i`` has the header stamp (and the bag time)
``start + i / rate``, and the header ``frame_id`` given.

The *frames map* says which Cityscapes image each message shows, by header stamp, so that the
replayed frames (and the node's outputs, which carry the input header) pair with the ground
truth. It is stored twice:

- ``<bag>/pisr_ros_frames.json`` (``FRAMES_FILE``, inside the bag folder; for a bag given as a
  bare ``.mcap``/``.db3`` file, beside that file), the copy a user can read and edit, and
- the bag's ``metadata.yaml`` ``custom_data`` under the key ``pisr_ros.frames`` (``METADATA_KEY``),
  so that the map travels with a bag whose folder lost the JSON file.

Readers take the JSON file first, then the metadata. The JSON document::

    {"format": "pisr_ros.frames/1", "topic": "/front/image_raw",
     "msgtype": "sensor_msgs/msg/Image", "frame_id": "camera_optical_frame",
     "rate_hz": 10.0, "start_ns": 1700000000000000000, "split": "val",
     "frames": [{"stamp_ns": 1700000000000000000, "image_id": "frankfurt_000000_000294"}, ...]}

``split`` is the Cityscapes split the images came from (``leftImg8bit/<split>/...``), or null.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from pisr_ros.errors import UsageError
from pisr_ros.image_decode import MalformedImage, image_to_array

FRAMES_FILE = "pisr_ros_frames.json"
METADATA_KEY = "pisr_ros.frames"
FRAMES_FORMAT = "pisr_ros.frames/1"
FORMATS = ("mcap", "sqlite3")
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
#: The format string image_transport's compressed publisher writes for bgr8 JPEG.
JPEG_FORMAT = "bgr8; jpeg compressed bgr8"
#: Default stamp of the first frame: 2023-11-14T22:13:20Z. Fixed, so that the same command
#: writes the same bag; any stamp works, since frames pair with labels through the frames map.
DEFAULT_START_NS = 1_700_000_000 * 10**9
DEFAULT_TOPIC = "/front/image_raw"
DEFAULT_FRAME_ID = "camera_optical_frame"

# Raw encodings read back: encoding -> (channels, cv2 conversion to BGR or None).
# Bags are the user's own recordings: no size limit beyond the message's own consistency.
MAX_PIXELS = 1 << 40


# ---------------------------------------------------------------------------------------------
# The frames map


@dataclass(frozen=True)
class Frame:
    stamp_ns: int
    image_id: str


@dataclass
class FrameMap:
    """Which image each message of a bag shows, by header stamp (see the module docstring)."""

    frames: list[Frame]
    topic: str | None = None
    msgtype: str | None = None
    frame_id: str | None = None
    rate_hz: float | None = None
    start_ns: int | None = None
    split: str | None = None
    source: str = ""  # where it was read from, for messages
    by_stamp: dict[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_stamp = {}
        seen: dict[str, int] = {}
        for f in self.frames:
            if f.stamp_ns in self.by_stamp:
                raise UsageError(f"{self.source or 'frames map'}: two frames have the stamp {f.stamp_ns} ns")
            if f.image_id in seen:
                raise UsageError(f"{self.source or 'frames map'}: image {f.image_id!r} appears at two stamps "
                                 f"({seen[f.image_id]} and {f.stamp_ns} ns); each labelled image may be shown once")
            self.by_stamp[f.stamp_ns] = f.image_id
            seen[f.image_id] = f.stamp_ns

    def to_json(self) -> dict:
        return {"format": FRAMES_FORMAT, "topic": self.topic, "msgtype": self.msgtype, "frame_id": self.frame_id,
                "rate_hz": self.rate_hz, "start_ns": self.start_ns, "split": self.split,
                "frames": [{"stamp_ns": f.stamp_ns, "image_id": f.image_id} for f in self.frames]}

    @classmethod
    def from_json(cls, doc: Any, source: str) -> FrameMap:
        if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list):
            raise UsageError(f"{source}: not a frames map (a JSON object with a 'frames' list, as "
                             f"`pisr-ros make-bag` writes into {FRAMES_FILE})")
        frames = []
        for i, f in enumerate(doc["frames"]):
            stamp = f.get("stamp_ns") if isinstance(f, dict) else None
            image_id = f.get("image_id") if isinstance(f, dict) else None
            if isinstance(stamp, bool) or not isinstance(stamp, int) or not isinstance(image_id, str) or not image_id:
                raise UsageError(f"{source}: frame {i} needs an integer 'stamp_ns' and a string 'image_id', got {f!r}")
            frames.append(Frame(stamp, image_id))
        rate = doc.get("rate_hz")
        return cls(frames, topic=doc.get("topic"), msgtype=doc.get("msgtype"), frame_id=doc.get("frame_id"),
                   rate_hz=float(rate) if isinstance(rate, (int, float)) else None, start_ns=doc.get("start_ns"),
                   split=doc.get("split"), source=source)


def bag_folder(bag: str | Path) -> Path:
    """The folder of a bag: the bag itself, or the folder of a bare .mcap/.db3 file."""
    bag = Path(bag)
    return bag if bag.is_dir() else bag.parent


def frames_json_path(bag: str | Path) -> Path:
    return bag_folder(bag) / FRAMES_FILE


def read_frame_map(bag: str | Path, frames_json: str | Path | None = None) -> FrameMap:
    """The frames map of ``bag``: ``frames_json`` when given, else ``<bag>/pisr_ros_frames.json``,
    else the ``pisr_ros.frames`` entry of the bag's metadata custom_data."""
    bag = Path(bag)
    candidates = [Path(frames_json)] if frames_json else [frames_json_path(bag)]
    for path in candidates:
        if path.is_file():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise UsageError(f"{path}: cannot read the frames map: {exc}") from None
            return FrameMap.from_json(doc, str(path))
        if frames_json:
            raise UsageError(f"--frames {path}: no such file")
    text = _custom_data(bag).get(METADATA_KEY)
    if text:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{bag}/metadata.yaml: custom_data {METADATA_KEY} is not JSON: {exc}") from None
        return FrameMap.from_json(doc, f"{bag_folder(bag) / 'metadata.yaml'} (custom_data {METADATA_KEY})")
    raise UsageError(
        f"{bag}: no frames map (neither {frames_json_path(bag)} nor custom_data {METADATA_KEY!r} in its "
        "metadata.yaml), so its stamps cannot be matched to labels. Bags made by `pisr-ros make-bag` have "
        "one; for another bag, write a JSON {\"frames\": [{\"stamp_ns\": ..., \"image_id\": ...}, ...]} "
        "and pass it with --frames"
    )


def _custom_data(bag: Path) -> dict[str, str]:
    meta = bag_folder(bag) / "metadata.yaml"
    if not meta.is_file():
        return {}
    import yaml

    try:
        doc = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{meta}: cannot read: {exc}") from None
    info = doc.get("rosbag2_bagfile_information", {}) if isinstance(doc, dict) else {}
    custom = info.get("custom_data") if isinstance(info, dict) else None
    return custom if isinstance(custom, dict) else {}


# ---------------------------------------------------------------------------------------------
# Types


@functools.lru_cache(maxsize=1)
def typestore():
    """rosbags' message types of ROS 2 Kilted (or the newest store this rosbags has)."""
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, "ROS2_KILTED", None) or Stores.LATEST
    return get_typestore(store)


def _stamp(ns: int):
    t = typestore().types["builtin_interfaces/msg/Time"]
    return t(sec=ns // 10**9, nanosec=ns % 10**9)


def stamp_ns(header) -> int:
    """Nanoseconds of a header's stamp (a rosbags ``std_msgs/msg/Header``)."""
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


def image_message(image_bgr: np.ndarray, stamp: int, frame_id: str, compressed: bool = False,
                  jpeg_quality: int = 95):
    """A rosbags Image (bgr8) or CompressedImage (JPEG) of a HxWx3 uint8 BGR image."""
    types = typestore().types
    header = types["std_msgs/msg/Header"](stamp=_stamp(stamp), frame_id=frame_id)
    if compressed:
        ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise UsageError("JPEG encoding failed")
        return types[COMPRESSED_TYPE](header=header, format=JPEG_FORMAT, data=buf.reshape(-1))
    image = np.ascontiguousarray(image_bgr)
    h, w = image.shape[:2]
    return types[IMAGE_TYPE](header=header, height=h, width=w, encoding="bgr8", is_bigendian=0,
                             step=w * 3, data=image.reshape(-1))


# ---------------------------------------------------------------------------------------------
# Writing


def split_of(path: Path) -> str | None:
    """``val`` for ``.../leftImg8bit/val/<city>/<file>``, else None."""
    parts = path.parts
    for i, part in enumerate(parts[:-2]):
        if part == "leftImg8bit":
            return parts[i + 1]
    return None


def image_topic(topic: str, compressed: bool) -> str:
    """``topic`` with ``/compressed`` appended for compressed images (image_transport's name)."""
    topic = "/" + topic.strip("/")
    if compressed and not topic.endswith("/compressed"):
        topic += "/compressed"
    return topic


def looks_like_bag(path: Path) -> bool:
    return path.is_dir() and (path / "metadata.yaml").is_file()


def write_image_bag(images: Sequence[tuple[str, str | Path]], out: str | Path, topic: str = DEFAULT_TOPIC,
                    rate_hz: float = 10.0, fmt: str = "mcap", compressed: bool = False,
                    frame_id: str = DEFAULT_FRAME_ID, *, start_ns: int = DEFAULT_START_NS,
                    jpeg_quality: int = 95, force: bool = False, progress: bool = False) -> FrameMap:
    """Write ``images`` ((image_id, path), in order) to a new rosbag2 folder ``out``; returns the
    frames map, which is also written into the bag (see the module docstring).

    ``topic`` gets ``/compressed`` appended when ``compressed``. An existing ``out`` is an error
    unless ``force``, and even then only a rosbag2 folder (one with metadata.yaml) or an empty
    folder is replaced. The bag is written to a temporary folder beside ``out`` and renamed.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    if fmt not in FORMATS:
        raise UsageError(f"bag format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not rate_hz > 0 or not np.isfinite(rate_hz):
        raise UsageError(f"rate must be a positive number of frames per second, got {rate_hz}")
    if not images:
        raise UsageError("no images to write")
    if not frame_id:
        raise UsageError("frame id must not be empty")
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not force:
            raise UsageError(f"{out} exists; pass --force to replace it")
        if not (looks_like_bag(out) or (out.is_dir() and not any(out.iterdir()))):
            raise UsageError(f"{out} exists and is not a rosbag2 folder (no metadata.yaml); "
                             "not replacing it even with --force: remove it yourself or choose another --out")
    topic = image_topic(topic, compressed)
    msgtype = COMPRESSED_TYPE if compressed else IMAGE_TYPE
    splits = {split_of(Path(p)) for _, p in images}
    frames = [Frame(start_ns + round(i * 1e9 / rate_hz), image_id) for i, (image_id, _) in enumerate(images)]
    frame_map = FrameMap(frames, topic=topic, msgtype=msgtype, frame_id=frame_id, rate_hz=float(rate_hz),
                         start_ns=start_ns, split=splits.pop() if len(splits) == 1 else None, source=str(out))
    doc = frame_map.to_json()

    out.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary parent with the final name (rosbags names the storage file after
    # the bag folder), then moved into place.
    tmp_parent = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp_parent.exists():
        shutil.rmtree(tmp_parent)
    tmp_parent.mkdir()
    tmp = tmp_parent / out.name
    store = typestore()
    plugin = StoragePlugin.MCAP if fmt == "mcap" else StoragePlugin.SQLITE3
    writer = Writer(tmp, version=Writer.VERSION_LATEST, storage_plugin=plugin)
    writer.set_custom_data(METADATA_KEY, json.dumps(doc, separators=(",", ":")))
    try:
        from tqdm import tqdm

        writer.open()
        conn = writer.add_connection(topic, msgtype, typestore=store)
        for frame, (image_id, path) in tqdm(list(zip(frames, images)), desc="make-bag", unit="frame",
                                             disable=not progress):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise UsageError(f"{path}: cannot be read as an image")
            msg = image_message(image, frame.stamp_ns, frame_id, compressed, jpeg_quality)
            writer.write(conn, frame.stamp_ns, store.serialize_cdr(msg, msgtype))
        writer.close()
        # Stored after the writer's own files; ros2 bag ignores files metadata.yaml does not list.
        (tmp / FRAMES_FILE).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    except BaseException as exc:
        if writer.storage is not None:
            try:
                writer.abort()
            except Exception:
                pass
        shutil.rmtree(tmp_parent, ignore_errors=True)
        if isinstance(exc, WriterError):
            raise UsageError(f"{out}: cannot write the bag: {exc}") from None
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    tmp_parent.rmdir()
    frame_map.source = str(frames_json_path(out))
    return frame_map


# ---------------------------------------------------------------------------------------------
# Reading


class BagImage(NamedTuple):
    stamp_ns: int  # header stamp
    header: Any  # rosbags std_msgs/msg/Header (stamp.sec, stamp.nanosec, frame_id)
    image: np.ndarray  # HxWx3 uint8 BGR


def _open_reader(bag: str | Path):
    from rosbags.rosbag2 import Reader, ReaderError

    bag = Path(bag)
    if not bag.exists():
        raise UsageError(f"no bag at {bag}: give a rosbag2 folder (with metadata.yaml) or its .mcap/.db3 "
                         "file; `pisr-ros make-bag --images DIR --out BAG` makes one from images")
    try:
        reader = Reader(bag)
        reader.open()
    except (ReaderError, FileNotFoundError) as exc:
        raise UsageError(f"{bag}: not a readable rosbag2 bag ({exc})") from None
    return reader


def bag_topics(bag: str | Path) -> dict[str, tuple[str, int]]:
    """topic -> (message type, message count) of every topic in ``bag``."""
    reader = _open_reader(bag)
    try:
        return {name: (info.msgtype or "?", info.msgcount) for name, info in sorted(reader.topics.items())}
    finally:
        reader.close()


def describe_topics(topics: dict[str, tuple[str, int]]) -> str:
    if not topics:
        return "it has no topics"
    return "it has: " + ", ".join(f"{t} ({mt}, {n} msgs)" for t, (mt, n) in topics.items())


def check_image_topic(bag: str | Path, topic: str) -> tuple[str, int]:
    """(message type, message count) of ``topic``, which must hold Image or CompressedImage."""
    topics = bag_topics(bag)
    if topic not in topics:
        raise UsageError(f"{bag}: no topic {topic}; {describe_topics(topics)}")
    msgtype, count = topics[topic]
    if msgtype not in IMAGE_TYPES:
        raise UsageError(f"{bag}: topic {topic} holds {msgtype}, not {IMAGE_TYPE} or {COMPRESSED_TYPE}")
    return msgtype, count


def camera_image_topic(bag: str | Path, camera: str, transport: str = "auto") -> tuple[str, str, int]:
    """(topic, message type, count) of a camera namespace's images in ``bag``:
    ``<camera>/image_raw`` (Image) or ``<camera>/image_raw/compressed`` (CompressedImage);
    ``transport`` is auto (raw when both are there), raw or compressed."""
    if transport not in ("auto", "raw", "compressed"):
        raise UsageError(f"transport must be auto, raw or compressed, got {transport!r}")
    base = "/" + camera.strip("/") + "/image_raw" if camera.strip("/") else "/image_raw"
    wanted = {"raw": [(base, IMAGE_TYPE)], "compressed": [(base + "/compressed", COMPRESSED_TYPE)]}
    candidates = wanted.get(transport) or wanted["raw"] + wanted["compressed"]
    topics = bag_topics(bag)
    for topic, expected in candidates:
        if topic in topics:
            msgtype, count = topics[topic]
            if msgtype != expected:
                raise UsageError(f"{bag}: topic {topic} holds {msgtype}, not {expected}")
            return topic, msgtype, count
    names = " or ".join(t for t, _ in candidates)
    raise UsageError(f"{bag}: no camera images for --camera {camera}: expected {names}; {describe_topics(topics)}")


def decode_image(msg, msgtype: str) -> np.ndarray:
    """HxWx3 uint8 BGR of a rosbags Image (8-bit encodings) or CompressedImage (JPEG/PNG)."""
    if msgtype == COMPRESSED_TYPE:
        data = np.asarray(msg.data, dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            raise UsageError(f"a CompressedImage ({msg.format!r}, {data.size} bytes) does not decode")
        return image
    try:
        image, order = image_to_array(msg, max_pixels=MAX_PIXELS)
    except MalformedImage as exc:
        raise UsageError(f"malformed Image in the bag: {exc}") from None
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if order == "rgb" else np.ascontiguousarray(image)


def _topic_messages(bag: str | Path, topic: str) -> Iterator[tuple[str, int, bytes, Any]]:
    """(message type, bag time ns, CDR bytes, deserialized message) of every message on the
    camera ``topic``, in bag order; the topic is checked first (UsageError)."""
    check_image_topic(bag, topic)
    store = typestore()
    reader = _open_reader(bag)
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, bag_time, raw in reader.messages(connections=conns):
            yield conn.msgtype, int(bag_time), raw, store.deserialize_cdr(raw, conn.msgtype)
    finally:
        reader.close()


def read_raw_messages(bag: str | Path, topic: str) -> Iterator[tuple[int, int, str, bytes]]:
    """(header stamp ns, bag time ns, message type, CDR bytes) of every message on ``topic``, in
    bag order: what a player republishes (rclpy publishes CDR bytes as they are)."""
    for msgtype, bag_time, raw, msg in _topic_messages(bag, topic):
        yield stamp_ns(msg.header), bag_time, msgtype, bytes(raw)


def read_image_frames(bag: str | Path, topic: str) -> Iterator[BagImage]:
    """(header stamp ns, header, HxWx3 uint8 BGR image) of every message on ``topic``, in bag
    order. Errors (UsageError): no bag, no such topic (the message lists the bag's topics), a
    topic that does not hold Image or CompressedImage, an image that does not decode."""
    for msgtype, _, _, msg in _topic_messages(bag, topic):
        yield BagImage(stamp_ns(msg.header), msg.header, decode_image(msg, msgtype))

