"""occupancy_grid_node over rclpy: CameraInfo and label images in, OccupancyGrid and class image out.

The scene is the one of test/unit/test_grid_geometry.py: a camera 1.5 m up, 1 m ahead of
base_link, pitched 0.1 rad down, over road with one car whose front face is 8.1 m ahead.
"""
import math
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from nav_msgs.msg import OccupancyGrid, Odometry
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from pisr_ros.grid.camera import CameraModel, CameraPose
from pisr_ros.grid.render import Box, render_camera
from pisr_ros.panoptic import resize_nearest
from pisr_ros.ros.occupancy_grid_node import OccupancyGridNode, main
from pisr_ros.taxonomy import VOID_TRAIN_ID, by_name

ROOT = Path(__file__).resolve().parents[2]
ROAD, CAR = by_name("road").train_id, by_name("car").train_id
K = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
W, H = 640, 480
GRID = {"resolution": 0.2, "size_x": 24.0, "size_y": 16.0, "offset_x": 8.0, "offset_y": 0.0, "max_range": 15.0,
        "camera.x": 1.0, "camera.z": 1.5, "camera.pitch": 0.1}
POSE = CameraPose(1.0, 0.0, 1.5, 0.0, 0.1, 0.0)
CAR_BOX = Box(8.1, 12.5, -0.7, 1.1, 1.4, CAR)
QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
# (x, y) in base_link -> what the grid must say there, as nav2 reads it
CELLS = {
    (6.1, 0.1): ("free", ROAD),  # road in front of the car
    (8.1, 0.1): ("occupied", CAR),  # the car's contact edge
    (8.1, -0.5): ("occupied", CAR),
    (11.1, 0.1): ("unknown", VOID_TRAIN_ID),  # hidden behind the car
    (-2.0, 0.1): ("unknown", VOID_TRAIN_ID),  # behind the camera
    (4.1, 7.1): ("unknown", VOID_TRAIN_ID),  # outside the field of view
}


def nav2_reading(value: int) -> str:
    """How nav2 reads one OccupancyGrid value: nav2_map_server's trinary thresholds (free_thresh
    0.196, occupied_thresh 0.65), -1 unknown. Reference data of the test, not the code's."""
    if value < 0:
        return "unknown"
    return "occupied" if value / 100 > 0.65 else "free" if value / 100 < 0.196 else "unknown"


def _labels(x=0.0, y=0.0, boxes=(CAR_BOX,)):
    return render_camera(CameraModel(np.reshape(K, (3, 3)), [], "", W, H, POSE), boxes, x=x, y=y)


def _image(labels, stamp=(100, 500_000_000), encoding="mono8"):
    msg = Image(height=labels.shape[0], width=labels.shape[1], encoding=encoding, step=labels.shape[1],
                data=np.ascontiguousarray(labels).tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id = "front_camera_optical_frame"
    return msg


def _info(k=K):
    msg = CameraInfo(width=W, height=H, distortion_model="plumb_bob", d=[0.0] * 5, k=k)
    msg.header.frame_id = "front_camera_optical_frame"
    return msg


def _cell(grid: OccupancyGrid, x, y):
    i = int((y - grid.info.origin.position.y) // grid.info.resolution)
    j = int((x - grid.info.origin.position.x) // grid.info.resolution)
    return i * grid.info.width + j


class Rig:
    """A grid node in its own namespace plus the test node's publishers and subscriptions."""

    def __init__(self, ros_node, spin_until, **params):
        self.ns = f"/t{uuid.uuid4().hex[:10]}"
        overrides = [Parameter(k, value=v) for k, v in {**GRID, **params}.items()]
        self.node = OccupancyGridNode(context=ros_node.context, namespace=self.ns, parameter_overrides=overrides)
        ros_node.executor_for_test.add_node(self.node)
        self.spin_until = spin_until
        self.info_pub = ros_node.create_publisher(CameraInfo, f"{self.ns}/camera_info", QOS)
        self.label_pub = ros_node.create_publisher(Image, f"{self.ns}/panoptic/semantic", QOS)
        self.odom_pub = ros_node.create_publisher(Odometry, f"{self.ns}/odom", QOS)
        self.grids, self.semantic = [], []
        ros_node.create_subscription(OccupancyGrid, f"{self.ns}/panoptic/grid", self.grids.append, QOS)
        ros_node.create_subscription(Image, f"{self.ns}/panoptic/semantic_grid", self.semantic.append, QOS)

    def feed_until_grid(self, label_msg, info_msg=None, odom_msg=None, timeout=15.0) -> bool:
        """Publish (until the node answers, as discovery takes a moment) and wait for a new grid."""
        seen = len(self.grids)

        def step():
            if len(self.grids) > seen and len(self.semantic) >= len(self.grids):
                return True
            if odom_msg is not None:
                self.odom_pub.publish(odom_msg)
            if info_msg is not None:
                self.info_pub.publish(info_msg)
            self.label_pub.publish(label_msg)
            return False

        return self.spin_until(step, timeout=timeout)

    def settle(self, seconds=0.5):
        """Let messages still in flight arrive, so that a check for "no new grid" sees only its own."""
        self.spin_until(lambda: False, timeout=seconds)

    def close(self, ros_node):
        ros_node.executor_for_test.remove_node(self.node)
        self.node.destroy_node()


@pytest.fixture
def rig(ros_node, spin_until):
    made = []

    def make(**params):
        made.append(Rig(ros_node, spin_until, **params))
        return made[-1]

    yield make
    for r in made:
        r.close(ros_node)


def _check_cells(grid, sem, cells=CELLS, origin=(0.0, 0.0)):
    data = np.array(grid.data, np.int8)
    classes = np.frombuffer(bytes(sem.data), np.uint8)
    for (x, y), (state, cls) in cells.items():
        k = _cell(grid, x + origin[0], y + origin[1])
        assert (nav2_reading(data[k]), classes[k]) == (state, cls), f"cell at ({x}, {y}): {data[k]}"


def test_publishes_the_grid_of_a_known_scene(rig):
    r = rig()
    assert r.feed_until_grid(_image(_labels()), _info())
    grid, sem = r.grids[-1], r.semantic[-1]
    assert (grid.header.stamp.sec, grid.header.stamp.nanosec) == (100, 500_000_000)
    assert grid.header.frame_id == "base_link" and sem.header.frame_id == "base_link"
    assert (sem.header.stamp.sec, sem.header.stamp.nanosec) == (100, 500_000_000)
    info = grid.info
    assert (info.width, info.height) == (120, 80) and info.resolution == pytest.approx(0.2)
    assert (info.origin.position.x, info.origin.position.y, info.origin.position.z) == (-4.0, -8.0, 0.0)
    q = info.origin.orientation
    assert (q.x, q.y, q.z, q.w) == (0.0, 0.0, 0.0, 1.0)
    assert (sem.width, sem.height, sem.encoding, sem.step) == (120, 80, "mono8", 120)
    assert len(grid.data) == 120 * 80 and len(sem.data) == 120 * 80
    _check_cells(grid, sem)
    assert {nav2_reading(v) for v in np.unique(np.array(grid.data))} == {"unknown", "free", "occupied"}
    assert r.node.stats["published"] >= 1 and r.node.stats["refused"] == 0


def test_waits_for_camera_info(rig, spin_until):
    r = rig()
    labels = _image(_labels())

    def feed_labels():
        r.label_pub.publish(labels)
        return False

    spin_until(lambda: r.node.stats["waiting"] >= 3 or feed_labels(), timeout=15)
    assert r.node.stats["waiting"] >= 3 and not r.grids
    assert r.feed_until_grid(labels, _info())


def test_bad_input_is_counted_and_survived(rig, spin_until):
    r = rig()
    labels = _labels()
    # A camera without calibration: K all zeros. Refused with the reason, frame skipped.
    zero = _info(k=[0.0] * 9)
    assert not r.feed_until_grid(_image(labels), zero, timeout=3.0)
    assert r.node.stats["refused"] >= 1 and "all zeros" in r.node._camera
    # Malformed label images: wrong encoding, and fewer bytes than the size says.
    assert not r.feed_until_grid(_image(labels, encoding="rgb8"), _info(), timeout=2.0)
    short = _image(labels)
    short.data = short.data[: len(short.data) // 2]
    assert not r.feed_until_grid(short, _info(), timeout=2.0)
    assert r.node.stats["malformed"] >= 2
    # Labels at half the camera's resolution: same aspect, so the camera is rescaled.
    assert r.feed_until_grid(_image(resize_nearest(labels, (H // 2, W // 2))), _info())
    _check_cells(r.grids[-1], r.semantic[-1])
    # A different aspect cannot be a resized camera image: refused.
    r.settle()
    refused = r.node.stats["refused"]
    assert not r.feed_until_grid(_image(resize_nearest(labels, (240, 300))), _info(), timeout=2.0)
    assert r.node.stats["refused"] > refused and "aspect" in r.node._camera
    assert r.node.stats["errors"] == 0


def test_parameters_are_checked_when_set(rig):
    r = rig()
    bad = r.node.set_parameters([Parameter("p_miss", value=0.45), Parameter("p_hit", value=0.3)])
    assert not bad[1].successful and "p_hit" in bad[1].reason
    not_whole = r.node.set_parameters([Parameter("resolution", value=0.35)])  # 24 m / 0.35 m
    assert not not_whole[0].successful and "whole number" in not_whole[0].reason
    assert not r.node.set_parameters([Parameter("use_odom", value=True)])[0].successful  # set at start only
    assert r.node.set_parameters([Parameter("resolution", value=0.25)])[0].successful
    assert r.feed_until_grid(_image(_labels()), _info())
    assert r.grids[-1].info.resolution == pytest.approx(0.25) and r.grids[-1].info.width == 96


def test_fuses_in_odom_with_a_window_that_follows_the_robot(rig):
    r = rig(use_odom=True)
    rx, ry = 100.0, 50.0
    odom = Odometry()
    odom.header.frame_id, odom.child_frame_id = "odom", "base_link"
    odom.header.stamp.sec, odom.header.stamp.nanosec = 100, 500_000_000
    odom.pose.pose.position.x, odom.pose.pose.position.y = rx, ry
    odom.pose.pose.orientation.w = 1.0
    box = Box(rx + 8.1, rx + 12.5, ry - 0.7, ry + 1.1, 1.4, CAR)
    assert r.feed_until_grid(_image(_labels(rx, ry, (box,))), _info(), odom)
    grid, sem = r.grids[-1], r.semantic[-1]
    assert grid.header.frame_id == "odom"
    assert (grid.info.origin.position.x, grid.info.origin.position.y) == pytest.approx((rx + 8.0 - 12.0, ry - 8.0))
    _check_cells(grid, sem, origin=(rx, ry))
    # A label image whose stamp has no odometry near it is skipped and counted.
    r.settle()
    assert not r.feed_until_grid(_image(_labels(rx, ry, (box,)), stamp=(200, 0)), _info(), timeout=2.0)
    assert r.node.stats["no_odometry"] >= 1


def _odometry(x, y, stamp=(100, 500_000_000), q=(0.0, 0.0, 0.0, 1.0)):
    odom = Odometry()
    odom.header.frame_id, odom.child_frame_id = "odom", "base_link"
    odom.header.stamp.sec, odom.header.stamp.nanosec = stamp
    odom.pose.pose.position.x, odom.pose.pose.position.y = x, y
    o = odom.pose.pose.orientation
    o.x, o.y, o.z, o.w = q
    return odom


def test_non_finite_odometry_is_refused_and_counted(rig, spin_until):
    """NaN / inf positions and a NaN quaternion are refused with the reason, counted; no grid is
    made from them (before: a raw ValueError, or a grid published from a NaN heading)."""
    r = rig(use_odom=True)
    labels = _image(_labels(100.0, 50.0, ()))
    bad = [_odometry(math.nan, 50.0), _odometry(100.0, math.inf), _odometry(100.0, 50.0, q=(0.0, 0.0, math.nan, 1.0))]
    for odom in bad:
        assert not r.feed_until_grid(labels, _info(), odom, timeout=1.5)
    assert r.node.stats["odometry_nonfinite"] >= 3 and r.node.stats["errors"] == 0
    assert r.node.stats["no_odometry"] >= 1  # the label images had no usable odometry
    zero = _odometry(100.0, 50.0, q=(0.0, 0.0, 0.0, 0.0))
    assert not r.feed_until_grid(labels, _info(), zero, timeout=1.5)
    assert r.node.stats["odometry_invalid"] >= 1
    assert r.feed_until_grid(labels, _info(), _odometry(100.0, 50.0))  # good odometry still works


def test_diagnostics_report_rates_update_time_refusals_and_odometry_gaps(ros_node, rig, spin_until):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    r = rig(use_odom=True, diagnostics_period=0.2)
    name = f"{r.ns}/occupancy_grid_node: occupancy grid"
    reports = []
    ros_node.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: reports.extend(s for s in m.status if s.name == name), 10)
    labels = _image(_labels(100.0, 50.0, ()))
    # Two good frames, odometry with a gap of 3 s (> 2 x odom_tolerance), one NaN pose, one
    # malformed label image.
    assert r.feed_until_grid(labels, _info(), _odometry(100.0, 50.0))
    later = _image(_labels(100.0, 50.0, ()), stamp=(103, 500_000_000))
    assert r.feed_until_grid(later, _info(), _odometry(100.0, 50.0, stamp=(103, 500_000_000)))
    r.odom_pub.publish(_odometry(math.nan, 50.0, stamp=(104, 0)))
    r.label_pub.publish(_image(_labels(100.0, 50.0, ()), encoding="rgb8"))

    def values():
        return {kv.key: kv.value for kv in reports[-1].values} if reports else {}

    assert spin_until(lambda: int(values().get("refused_malformed", 0)) >= 1
                      and int(values().get("refused_odometry_nonfinite", 0)) >= 1, timeout=10), values()
    v = values()
    assert int(v["grids_published"]) >= 2 and int(v["label_images"]) >= 3
    assert int(v["odometry_gaps"]) >= 1 and int(v["odometry_messages"]) >= 3
    assert float(v["update_p50_ms"]) > 0.0 and float(v["update_max_ms"]) >= float(v["update_p50_ms"])
    assert float(v["input_rate_hz"]) > 0.0 and v["mode"] == "odometry"
    assert int(v["input_publishers"]) >= 1 and v["label_images_lost"] == "0"  # the rig's publisher, reliable
    assert any(s.level == DiagnosticStatus.WARN and "malformed" in s.message for s in reports)
    # Nothing refused since the report before: the status recovers.
    count = len(reports)
    assert spin_until(lambda: len(reports) > count + 1, timeout=10)
    assert reports[-1].level == DiagnosticStatus.OK, reports[-1].message


def test_ros_name_is_the_executables_and_parameters_carry_the_tables_descriptors(rig):
    """`ros2 param list /<camera>/occupancy_grid_node`: the name `ros2 run`, the launch file and
    the docs use; `ros2 param describe` shows the table's description, range and read-only flag."""
    r = rig()
    assert r.node.get_fully_qualified_name() == f"{r.ns}/occupancy_grid_node"
    pitch, odom, car = (r.node.describe_parameter(n) for n in ("camera.pitch", "use_odom", "classes.car.effect"))
    assert "positive looks down" in pitch.description and not pitch.read_only
    assert pitch.floating_point_range[0].from_value == pytest.approx(-np.pi)
    assert odom.read_only and "one of: free, occupied, ignore" == car.additional_constraints


def test_main_refuses_invalid_parameters_at_start():
    assert main(["--ros-args", "-p", "p_miss:=0.7"]) == 2  # outside the declared range
    assert main(["--ros-args", "-p", "size_x:=40.05"]) == 2  # not a whole number of cells
    assert main(["--ros-args", "-p", "camera.z:=0.0"]) == 2  # ground not below the camera


def test_runs_as_a_process_with_the_shipped_config(ros_node, spin_until):
    ns = f"/t{uuid.uuid4().hex[:10]}"
    cmd = [sys.executable, "-m", "pisr_ros.ros.occupancy_grid_node", "--ros-args", "-r", f"__ns:={ns}",
           "--params-file", str(ROOT / "config" / "occupancy_grid.yaml"),
           "-p", "camera.x:=1.0", "-p", "camera.z:=1.5", "-p", "camera.pitch:=0.1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    try:
        grids = []
        ros_node.create_subscription(OccupancyGrid, f"{ns}/panoptic/grid", grids.append, QOS)
        info_pub = ros_node.create_publisher(CameraInfo, f"{ns}/camera_info", QOS)
        label_pub = ros_node.create_publisher(Image, f"{ns}/panoptic/semantic", QOS)
        # the car moved by half a 0.1 m cell, so that its front edge lies inside one cell
        labels, info = _image(_labels(boxes=(Box(8.15, 12.55, -0.65, 1.15, 1.4, CAR),))), _info()

        def step():
            if grids or proc.poll() is not None:
                return True
            info_pub.publish(info)
            label_pub.publish(labels)
            return False

        assert spin_until(step, timeout=30) and grids, "no grid from the node process"
        grid = grids[-1]
        assert grid.header.frame_id == "base_link"
        assert (grid.info.width, grid.info.height) == (400, 400) and grid.info.resolution == pytest.approx(0.1)
        assert (grid.info.origin.position.x, grid.info.origin.position.y) == (-10.0, -20.0)
        data = np.array(grid.data, np.int8)
        # the shipped config's grid as nav2 reads it
        assert nav2_reading(data[_cell(grid, 6.05, 0.05)]) == "free"
        assert nav2_reading(data[_cell(grid, 8.15, 0.05)]) == "occupied"
        assert data[_cell(grid, 11.05, 0.05)] == -1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
