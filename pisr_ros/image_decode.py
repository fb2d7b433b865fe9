"""Camera image messages (sensor_msgs Image / CompressedImage, or rosbags' copies of them) to
numpy, with cv_bridge's encoding semantics.

ROS 2's cv_bridge cannot be installed here (and the PyPI package of that name is an unrelated
ROS 1 port), so the few conversions the project needs live here. As in cv_bridge: rows may be
padded (``step`` >= width * channels), the colour order is the encoding's, and 8-bit data has
no byte order. Messages are read by their fields only, so the node's rclpy messages and the
bag reader's rosbags messages go through the same code. Every check raises
``MalformedImage`` with a short reason that the node counts; nothing here trusts a message's
size fields before checking them.
"""
from __future__ import annotations

import cv2
import numpy as np

from pisr_ros.image_header import HeaderError, declared_size

# encoding -> (channels, colour order the Predictor is told, cv2 conversion to 3 channels)
ENCODINGS: dict[str, tuple[int, str, int | None]] = {
    "bgr8": (3, "bgr", None),
    "rgb8": (3, "rgb", None),
    "mono8": (1, "bgr", cv2.COLOR_GRAY2BGR),
    "bgra8": (4, "bgr", cv2.COLOR_BGRA2BGR),
    "rgba8": (4, "rgb", cv2.COLOR_RGBA2RGB),
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class MalformedImage(ValueError):
    """A message that cannot be an image; ``reason`` is a short key for counting."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def check_image_msg(msg, max_pixels: int) -> None:
    """Raise ``MalformedImage`` unless ``msg`` describes an image its data holds. O(1): the
    node runs it on every arrival, before latest-frame-wins can drop the message."""
    if msg.encoding not in ENCODINGS:
        raise MalformedImage("encoding", f"{msg.encoding!r} is not one of {', '.join(ENCODINGS)}")
    channels = ENCODINGS[msg.encoding][0]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise MalformedImage("empty", f"{w}x{h} image")
    if h * w > max_pixels:
        raise MalformedImage("too_large", f"{w}x{h} is more than max_image_pixels ({max_pixels})")
    if step < w * channels:
        raise MalformedImage("step", f"step {step} < width {w} x {channels} channels ({msg.encoding})")
    if len(msg.data) < step * h:
        raise MalformedImage("truncated", f"{len(msg.data)} bytes, {step * h} expected ({h} rows of step {step})")


def image_to_array(msg, max_pixels: int) -> tuple[np.ndarray, str]:
    """(HxWx3 uint8 array, "bgr" or "rgb") of a raw image. The array is a view of the
    message's buffer where the encoding allows (bgr8/rgb8 without padding)."""
    check_image_msg(msg, max_pixels)
    channels, order, conversion = ENCODINGS[msg.encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(msg.data, np.uint8)
    image = data[: step * h].reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if conversion is not None:
        image = cv2.cvtColor(np.ascontiguousarray(image), conversion)
    return image, order


def check_compressed_msg(msg, max_pixels: int) -> None:
    """Everything but decoding: the format, and the size the JPEG or PNG header declares
    (``image_header``), so that a small message claiming a huge image is refused before a
    decoder allocates its bitmap. Reads only the header: the node runs it on every arrival."""
    # image_transport writes "jpeg" or e.g. "bgr8; jpeg compressed bgr8".
    fmt = msg.format.lower()
    if not any(f in fmt for f in COMPRESSED_FORMATS):
        raise MalformedImage("format", f"compressed format {msg.format!r} is not jpeg or png")
    if len(msg.data) == 0:
        raise MalformedImage("empty", "no compressed data")
    try:
        _, w, h = declared_size(msg.data)
    except HeaderError as exc:
        # cv2 would decode other formats too (TIFF, WebP, ...): only JPEG and PNG get that far.
        raise MalformedImage("corrupt", f"{msg.format} data ({len(msg.data)} bytes): {exc}") from exc
    if h * w > max_pixels:
        raise MalformedImage("too_large", f"{w}x{h} (declared by the {msg.format} header) is more than "
                                          f"max_image_pixels ({max_pixels})")


def compressed_to_array(msg, max_pixels: int) -> tuple[np.ndarray, str]:
    """(HxWx3 uint8 BGR array, "bgr") of a JPEG or PNG CompressedImage."""
    check_compressed_msg(msg, max_pixels)
    data = np.frombuffer(msg.data, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise MalformedImage("corrupt", f"{msg.format} data ({data.size} bytes) does not decode")
    if image.shape[0] * image.shape[1] > max_pixels:  # the header said otherwise: never trust it alone
        raise MalformedImage("too_large", f"{image.shape[1]}x{image.shape[0]} is more than max_image_pixels ({max_pixels})")
    return image, "bgr"
