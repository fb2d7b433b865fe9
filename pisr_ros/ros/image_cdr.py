"""sensor_msgs Image as serialized CDR, written and read with numpy.

``panoptic_node`` publishes its image outputs as serialized messages (``Publisher.publish``
takes bytes): the array is copied once into the message, instead of once into a Python
message, again into rclpy's C message and again by its serializer. Recorders that need only a
frame's header or a view of its pixels (``bench-node``, ``replay-eval --live``) read the
serialized labels with ``parse_image`` (``raw=True`` subscriptions) and skip deserializing 8 MB.

The node's camera input stays an ordinary subscription: taking the frames serialized was
measured slower (docs/panoptic_node.md).

The layout is plain CDR (XCDR1) as ROS 2's rmw implementations write it: a 4-byte
encapsulation header (``00 01`` little-endian, ``00 00`` big-endian, then two option bytes),
then the fields in order, each aligned to its size counted from the end of that header;
strings are a uint32 length including the terminating NUL, then the bytes and the NUL.
Malformed input raises ``MalformedImage("cdr", ...)``. No rclpy import here: the tests compare
against rclpy's serializer.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from pisr_ros.image_decode import MalformedImage

_LITTLE = b"\x00\x01"
_BIG = b"\x00\x00"
_ENCAPSULATION_LE = b"\x00\x01\x00\x00"


@dataclass(frozen=True)
class Stamp:
    sec: int
    nanosec: int


@dataclass(frozen=True)
class Header:
    stamp: Stamp
    frame_id: str


@dataclass(frozen=True)
class RawImage:
    """The fields of a sensor_msgs/Image; ``data`` is a view into the serialized message."""

    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


class _Reader:
    def __init__(self, buf):
        self.buf = memoryview(buf).cast("B")
        if len(self.buf) < 4:
            raise MalformedImage("cdr", f"{len(self.buf)} bytes: shorter than a CDR header")
        kind = bytes(self.buf[:2])
        if kind not in (_LITTLE, _BIG):
            raise MalformedImage("cdr", f"encapsulation {kind.hex()} is not plain CDR")
        self.order = "<" if kind == _LITTLE else ">"
        self.pos = 0  # counted from the end of the encapsulation header, as alignment is

    def _take(self, n: int, what: str) -> memoryview:
        start = 4 + self.pos
        if start + n > len(self.buf):
            raise MalformedImage("cdr", f"message ends inside {what} ({len(self.buf)} bytes)")
        self.pos += n
        return self.buf[start:start + n]

    def _word(self, code: str, what: str) -> int:
        self.pos += -self.pos % 4
        return struct.unpack(self.order + code, self._take(4, what))[0]

    def uint32(self, what: str) -> int:
        return self._word("I", what)

    def int32(self, what: str) -> int:
        return self._word("i", what)

    def uint8(self, what: str) -> int:
        return self._take(1, what)[0]

    def string(self, what: str) -> str:
        n = self.uint32(what)
        raw = self._take(n, what)
        if n == 0 or raw[-1] != 0:
            raise MalformedImage("cdr", f"{what} is not a NUL-terminated string")
        try:
            return bytes(raw[:-1]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedImage("cdr", f"{what} is not UTF-8") from exc

    def octets(self, what: str) -> memoryview:
        return self._take(self.uint32(what), what)

    def header(self) -> Header:
        sec = self.int32("header.stamp")
        nanosec = self.uint32("header.stamp")
        return Header(Stamp(sec, nanosec), self.string("header.frame_id"))


def parse_image(buf) -> RawImage:
    """A serialized sensor_msgs/Image as a ``RawImage`` (no copy of the pixels)."""
    r = _Reader(buf)
    header = r.header()
    height, width = r.uint32("height"), r.uint32("width")
    encoding = r.string("encoding")
    is_bigendian = r.uint8("is_bigendian")
    step = r.uint32("step")
    return RawImage(header, height, width, encoding, is_bigendian, step, r.octets("data"))


class _Writer:
    def __init__(self):
        self.parts: list = [_ENCAPSULATION_LE]
        self.pos = 0

    def _put(self, raw) -> None:
        self.parts.append(raw)
        self.pos += len(raw)

    def _align(self, n: int) -> None:
        pad = -self.pos % n
        if pad:
            self._put(b"\x00" * pad)

    def _word(self, code: str, value: int) -> None:
        self._align(4)
        self._put(struct.pack("<" + code, value))

    def uint32(self, value: int) -> None:
        self._word("I", value)

    def int32(self, value: int) -> None:
        self._word("i", value)

    def uint8(self, value: int) -> None:
        self._put(bytes((value,)))

    def string(self, value: str) -> None:
        raw = value.encode("utf-8") + b"\x00"
        self.uint32(len(raw))
        self._put(raw)

    def octets(self, data: memoryview) -> None:
        self.uint32(len(data))
        self._put(data)

    def header(self, header) -> None:
        self.int32(int(header.stamp.sec))
        self.uint32(int(header.stamp.nanosec))
        self.string(header.frame_id)

    def bytes(self) -> bytes:
        return b"".join(self.parts)  # the one copy of the pixels


def image_cdr(array: np.ndarray, encoding: str, header) -> bytes:
    """``array`` (HxW or HxWxC) as a serialized sensor_msgs/Image with ``header`` (anything
    with ``stamp.sec``, ``stamp.nanosec`` and ``frame_id``). Little-endian, like the array
    on every platform ROS 2 supports."""
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        raise ValueError("image_cdr writes little-endian images; convert the array first")
    h, w = array.shape[:2]
    out = _Writer()
    out.header(header)
    out.uint32(h)
    out.uint32(w)
    out.string(encoding)
    out.uint8(0)
    out.uint32(array.strides[0])
    out.octets(memoryview(array.reshape(-1)).cast("B"))
    return out.bytes()
