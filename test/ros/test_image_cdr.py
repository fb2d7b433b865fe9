"""Serialized sensor_msgs images (pisr_ros.ros.image_cdr) against rclpy's own serializer."""
import struct

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from pisr_ros.image_decode import MalformedImage, image_to_array
from pisr_ros.ros.image_cdr import image_cdr, parse_image

RNG = np.random.default_rng(0)


def _header(frame_id, sec=12, nanosec=345):
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    return header


# Frame ids of every length modulo 4 move the following fields across alignment boundaries.
CASES = [(shape, encoding, dtype, frame_id)
         for shape, encoding, dtype in (((5, 7), "32SC1", np.int32), ((5, 7), "mono8", np.uint8),
                                        ((3, 5, 3), "bgr8", np.uint8), ((1, 1), "mono8", np.uint8))
         for frame_id in ("", "c", "ca", "cam", "camera_optical_frame")]


@pytest.mark.parametrize("shape, encoding, dtype, frame_id", CASES)
def test_written_images_deserialize_to_the_array_and_header(shape, encoding, dtype, frame_id):
    array = RNG.integers(-1000 if dtype == np.int32 else 0, 256, shape).astype(dtype)
    header = _header(frame_id, sec=-3)
    data = image_cdr(array, encoding, header)
    msg = deserialize_message(data, Image)
    assert msg.header == header
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step) == (
        shape[0], shape[1], encoding, 0, array.strides[0])
    assert bytes(msg.data) == array.tobytes()
    # Same size as rclpy's own serialization (which leaves its padding bytes uninitialised, so
    # the bytes themselves are compared through deserialization above).
    reference = Image(header=header, height=shape[0], width=shape[1], encoding=encoding, step=array.strides[0])
    reference.data = array.tobytes()
    assert len(data) == len(serialize_message(reference))


@pytest.mark.parametrize("shape, encoding, dtype, frame_id", CASES)
def test_parsed_images_have_the_fields_rclpy_wrote(shape, encoding, dtype, frame_id):
    array = RNG.integers(0, 256, shape).astype(dtype)
    msg = Image(header=_header(frame_id), height=shape[0], width=shape[1], encoding=encoding,
                step=array.strides[0], is_bigendian=0)
    msg.data = array.tobytes()
    raw = parse_image(serialize_message(msg))
    assert (raw.header.stamp.sec, raw.header.stamp.nanosec, raw.header.frame_id) == (12, 345, frame_id)
    assert (raw.height, raw.width, raw.encoding, raw.is_bigendian, raw.step) == (
        msg.height, msg.width, msg.encoding, 0, msg.step)
    assert bytes(raw.data) == array.tobytes()


def test_a_parsed_frame_decodes_without_copying_its_pixels():
    bgr = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    serialized = image_cdr(bgr, "bgr8", _header("cam"))
    image, order = image_to_array(parse_image(serialized), 1 << 20)
    assert order == "bgr" and np.array_equal(image, bgr)
    assert np.shares_memory(image, np.frombuffer(serialized, np.uint8))


def test_big_endian_cdr_is_read_too():
    # Hand-written: encapsulation 00 00, then the fields big-endian.
    fields = (struct.pack(">iI", 7, 8) + struct.pack(">I", 2) + b"c\x00\x00\x00"
              + struct.pack(">II", 1, 2) + struct.pack(">I", 6) + b"mono8\x00" + b"\x00"
              + b"\x00" + struct.pack(">I", 2) + struct.pack(">I", 2) + b"\x05\x06")
    raw = parse_image(b"\x00\x00\x00\x00" + fields)
    assert (raw.header.stamp.sec, raw.header.frame_id, raw.height, raw.width, raw.encoding, raw.step) == (
        7, "c", 1, 2, "mono8", 2)
    assert bytes(raw.data) == b"\x05\x06"


@pytest.mark.parametrize("cut", [0, 3, 6, 13, 30, -1])
def test_truncated_or_foreign_bytes_are_refused_as_cdr(cut):
    serialized = image_cdr(np.zeros((2, 3), np.uint8), "mono8", _header("cam"))
    with pytest.raises(MalformedImage) as err:
        parse_image(serialized[:cut])
    assert err.value.reason == "cdr"
    with pytest.raises(MalformedImage, match="not plain CDR"):
        parse_image(b"\x00\x07\x00\x00" + serialized[4:])
    with pytest.raises(MalformedImage, match="NUL-terminated"):
        parse_image(serialized[:16] + b"camx" + serialized[20:])
