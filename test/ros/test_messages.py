"""The package's messages travel through rclpy and DDS intact."""
import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from pisr_ros.msg import PanopticInstance, PanopticInstanceArray, PanopticLabelInfo
from pisr_ros.panoptic import LABEL_DIVISOR, segments_of
from pisr_ros.ros.messages import instance_array_msg, instance_msg, label_info_msg
from pisr_ros.taxonomy import CLASSES

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def contents(msg, ros_type=""):
    """What a message holds, as plain values: nested messages as dicts, arrays and sequences as
    lists, float32 fields rounded to float32 (a message built in Python holds float64 until it
    travels). Unlike serialized bytes, this leaves out the padding rclpy's serializer leaves
    uninitialised (see test_image_cdr.py)."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {name: contents(getattr(msg, name), kind) for name, kind in msg.get_fields_and_field_types().items()}
    if ros_type.startswith("sequence<") or ros_type.endswith("]"):
        element = ros_type.removeprefix("sequence<").split(",")[0].rstrip(">").split("[")[0]
        return [contents(v, element) for v in msg]
    if ros_type == "float":
        return float(np.float32(msg))
    return msg


def _id_map(rng, h=48, w=64):
    m = np.full((h, w), -1, np.int32)
    m[h // 2 :, :] = 0  # road
    m[: h // 4, :] = 10 * LABEL_DIVISOR  # sky
    for k in range(1, 4):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        m[y : y + 8, x : x + 8] = 13 * LABEL_DIVISOR + k  # cars
    m[5:9, 40:47] = 11 * LABEL_DIVISOR + 1  # a person
    return m


def _roundtrip(ros_node, spin_until, msg_type, topic, message, qos=RELIABLE):
    received = []
    pub = ros_node.create_publisher(msg_type, topic, qos)
    ros_node.create_subscription(msg_type, topic, received.append, qos)
    # Publish until the subscription has matched and something arrived.
    assert spin_until(lambda: received or pub.publish(message) or False, timeout=15)
    return received[0]


def test_contents_tell_messages_apart():
    sent = label_info_msg(Header(frame_id="front_camera_optical_frame"))
    same = label_info_msg(Header(frame_id="front_camera_optical_frame"))
    assert contents(same) == contents(sent)
    same.colors[3].g = float(np.float32(same.colors[3].g))  # what float32 transport makes of it
    assert contents(same) == contents(sent)
    for change in (lambda m: setattr(m.colors[3], "g", m.colors[3].g + 1e-3),
                   lambda m: m.class_names.__setitem__(0, "street"),
                   lambda m: setattr(m.header.stamp, "nanosec", 1)):
        other = label_info_msg(Header(frame_id="front_camera_optical_frame"))
        change(other)
        assert contents(other) != contents(sent)


def test_instance_roundtrip(ros_node, spin_until, unique_ns):
    seg = segments_of(_id_map(np.random.default_rng(0)))[-1]
    sent = instance_msg(seg)
    got = _roundtrip(ros_node, spin_until, PanopticInstance, f"{unique_ns}/instance", sent)
    assert contents(got) == contents(sent)
    assert got.id == seg.id and got.class_name == CLASSES[seg.class_id].name
    assert (got.bbox.x_offset, got.bbox.y_offset, got.bbox.width, got.bbox.height) == seg.bbox


def test_instance_array_roundtrip(ros_node, spin_until, unique_ns):
    id_map = _id_map(np.random.default_rng(1))
    header = Header(frame_id="front_camera_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 1234, 5678
    sent = instance_array_msg(segments_of(id_map), header, *id_map.shape)
    got = _roundtrip(ros_node, spin_until, PanopticInstanceArray, f"{unique_ns}/instances", sent)
    assert contents(got) == contents(sent)
    assert got.header.stamp.sec == 1234 and got.header.frame_id == "front_camera_optical_frame"
    # One entry per non-void id, with areas that are pixel counts.
    ids, counts = np.unique(id_map[id_map >= 0], return_counts=True)
    assert [i.id for i in got.instances] == ids.tolist()
    assert [i.area for i in got.instances] == counts.tolist()
    assert {i.is_thing for i in got.instances} == {True, False}


def test_label_info_reaches_late_subscriber(ros_node, spin_until, unique_ns):
    sent = label_info_msg(Header(frame_id="front_camera_optical_frame"))
    pub = ros_node.create_publisher(PanopticLabelInfo, f"{unique_ns}/label_info", LATCHED)
    pub.publish(sent)
    spin_until(lambda: False, timeout=0.3)  # the publisher holds it; nobody listens yet
    received = []
    ros_node.create_subscription(PanopticLabelInfo, f"{unique_ns}/label_info", received.append, LATCHED)
    assert spin_until(lambda: received, timeout=15)
    got = received[0]
    assert contents(got) == contents(sent)
    assert list(got.class_ids) == list(range(19)) and got.label_divisor == LABEL_DIVISOR
    assert [n for n, t in zip(got.class_names, got.is_thing) if t] == [
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"
    ]
    assert abs(got.colors[0].r - 128 / 255) < 1e-6  # road is (128, 64, 128)
