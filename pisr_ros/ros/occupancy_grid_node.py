"""occupancy_grid_node: a semantic occupancy grid from panoptic label images (camera-only, flat ground).

Subscribes (relative names, so the node lives in the camera's namespace):
  panoptic/semantic  sensor_msgs/Image, mono8 trainIds (255 void)
  camera_info        sensor_msgs/CameraInfo of the camera the labels come from
  odom               nav_msgs/Odometry, only with use_odom: true
Publishes:
  panoptic/grid           nav_msgs/OccupancyGrid: 0..100, -1 unknown; identity orientation,
                          info.origin at the outer corner of cell (0, 0)
  panoptic/semantic_grid  sensor_msgs/Image mono8 of the same cells: pixel (row i, column j) is
                          grid cell i * width + j, i.e. row i along +y and column j along +x of
                          the grid frame; the argmax trainId, 255 unknown
  /diagnostics            rates, update time, refused inputs by reason, odometry gaps
                          (ros/grid_diagnostics.py)
Both carry the label image's stamp; frame_id is base_frame, or the odometry frame with use_odom.
Parameters: config/occupancy_grid.yaml (see docs/occupancy_grid.md); the library does the work
(pisr_ros.grid), this node only converts messages and keeps counts.
"""
from __future__ import annotations

import array
import bisect
import math
import sys
import time
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid, Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from pisr_ros.grid.camera import CameraModel
from pisr_ros.grid.config import PARAMETERS, GridConfig, config_from_params
from pisr_ros.grid.pipeline import GridBuilder, GridFrame, Pose2D
from pisr_ros.ros.grid_diagnostics import GridHealth
from pisr_ros.ros.node_main import StartError, run
from pisr_ros.ros.parameters import declare

# The executable's name, as panoptic_node's ROS name is its executable's: `ros2 param list
# /<camera>/occupancy_grid_node` finds it under the name `ros2 run` and the docs use.
NODE_NAME = "occupancy_grid_node"
# Latest frame wins: a best-effort subscription (matches reliable and best-effort publishers)
# that keeps one message, so a slow grid update never works through a backlog.
SENSOR_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
ODOM_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
OUT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
LABEL_ENCODINGS = ("mono8", "8UC1")
# Label and camera_info sizes whose scale factors differ by less than this share one aspect ratio.
ASPECT_TOLERANCE = 0.01
LOG_EVERY_S = 5.0


def _stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _yaw(q) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def odometry_problem(msg: Odometry) -> tuple[str, str] | None:
    """(counter, reason) when the message's pose cannot place a frame, else None."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    position, quaternion = (p.x, p.y, p.z), (q.x, q.y, q.z, q.w)
    if not all(math.isfinite(v) for v in position):
        return "odometry_nonfinite", f"non-finite position {position}"
    if not all(math.isfinite(v) for v in quaternion):
        return "odometry_nonfinite", f"non-finite orientation quaternion {quaternion}"
    if math.sqrt(sum(v * v for v in quaternion)) < 1e-6:
        return "odometry_invalid", f"orientation quaternion {quaternion} has no length, so no heading"
    return None


class OdometryBuffer:
    """Recent robot poses by stamp, so a label image (which lags its odometry) gets its own pose."""

    def __init__(self, span: int = 400):
        self._t: deque[float] = deque(maxlen=span)
        self._pose: deque[Pose2D] = deque(maxlen=span)
        self.frame_id = "odom"

    def add(self, msg: Odometry) -> float | None:
        """Keep the message's pose (checked finite by the caller); returns the gap in seconds to
        the message before, None for the first one or after time went back."""
        t = _stamp_s(msg.header.stamp)
        if self._t and t < self._t[-1]:  # time went back (a bag restarted): start over
            self._t.clear()
            self._pose.clear()
        gap = t - self._t[-1] if self._t else None
        p = msg.pose.pose
        self._t.append(t)
        self._pose.append(Pose2D(p.position.x, p.position.y, _yaw(p.orientation)))
        self.frame_id = msg.header.frame_id or "odom"
        return gap

    def at(self, t: float, tolerance: float) -> Pose2D | None:
        """The pose at ``t``: interpolated between the samples around it, else the nearest sample
        within ``tolerance`` seconds, else None."""
        if not self._t:
            return None
        times = list(self._t)
        k = bisect.bisect_left(times, t)
        if 0 < k < len(times):
            t0, t1 = times[k - 1], times[k]
            if t1 - t0 <= 2.0 * tolerance:
                a, b = self._pose[k - 1], self._pose[k]
                w = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
                dyaw = math.atan2(math.sin(b.yaw - a.yaw), math.cos(b.yaw - a.yaw))
                return Pose2D(a.x + w * (b.x - a.x), a.y + w * (b.y - a.y), a.yaw + w * dyaw)
        nearest = min(range(max(0, k - 1), min(len(times), k + 1)), key=lambda i: abs(times[i] - t))
        return self._pose[nearest] if abs(times[nearest] - t) <= tolerance else None


class OccupancyGridNode(Node):
    """Raises StartError (with the reason) when its parameters are invalid at start."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        values = declare(self, PARAMETERS)
        try:
            self.config: GridConfig = config_from_params(values)
        except ValueError as exc:  # a rule between parameters (whole cells, pose, clamps)
            raise StartError(str(exc)) from exc
        self.builder = GridBuilder(self.config)
        #: What happened to the label images: frames, published, waiting, refused, malformed, ...
        self.stats: Counter[str] = Counter()
        self._info: CameraInfo | None = None
        self._camera_key: tuple | None = None
        self._camera: CameraModel | str | None = None  # the model, or why there is none
        self._last_stamp: float | None = None
        self._odom = OdometryBuffer()
        self.health = GridHealth()
        self._warn_nav2_reading(self.config)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.grid_pub = self.create_publisher(OccupancyGrid, "panoptic/grid", OUT_QOS)
        self.semantic_pub = self.create_publisher(Image, "panoptic/semantic_grid", OUT_QOS)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, SENSOR_QOS)
        # Matches are logged and publishers counted in /diagnostics: a grid that never updates
        # because no publisher was ever matched looks, from outside, like one that gets no frames.
        events = SubscriptionEventCallbacks(matched=self._on_matched, message_lost=self._on_lost)
        self.labels_sub = self.create_subscription(Image, "panoptic/semantic", self._on_labels, SENSOR_QOS,
                                                   event_callbacks=events)
        if self.config["use_odom"]:
            self.create_subscription(Odometry, "odom", self._on_odometry, ODOM_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.config["diagnostics_period"], self._publish_diagnostics)
        layout = self.config.layout()
        self.get_logger().info(
            f"grid {layout.width}x{layout.height} cells of {layout.resolution} m in "
            f"{'odometry (window follows the robot)' if self.config['use_odom'] else self.config['base_frame']}; "
            f"listening on {self.resolve_topic_name('panoptic/semantic')}")

    # ------------------------------------------------------------------ parameters
    def _parameter_values(self, overrides=()) -> dict:
        values = {p.name: self.get_parameter(p.name).value for p in PARAMETERS}
        values.update({p.name: p.value for p in overrides if p.name in PARAMETERS})  # not use_sim_time
        return values

    def _on_set_parameters(self, params) -> SetParametersResult:
        try:
            config = config_from_params(self._parameter_values(params))
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        # A new geometry or fusion setting starts a new grid: old cells would not mean the same.
        self.config = config
        self.builder = GridBuilder(config)
        self._camera_key = None
        self._warn_nav2_reading(config)
        self.get_logger().info(f"parameters changed ({', '.join(p.name for p in params)}); the grid starts over")
        return SetParametersResult(successful=True)

    def _warn_nav2_reading(self, config: GridConfig) -> None:
        problem = config.fusion().nav2_reading_problem()
        if problem:
            self.get_logger().warning(problem)

    # ------------------------------------------------------------------ input
    def _on_matched(self, info) -> None:
        self.get_logger().info(f"{info.current_count} publisher(s) of {self.labels_sub.topic_name} matched")

    def _on_lost(self, info) -> None:
        # Best effort: a label image with a fragment missing never arrives; the reader sees the gap.
        self.stats["lost"] += info.total_count_change
        self.get_logger().warning(f"{self.stats['lost']} label images lost in transport so far (best-effort "
                                  f"{self.labels_sub.topic_name})", throttle_duration_sec=LOG_EVERY_S)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._info = msg

    def _on_odometry(self, msg: Odometry) -> None:
        self.stats["odometry"] += 1
        problem = odometry_problem(msg)
        if problem is not None:
            counter, reason = problem
            self.stats[counter] += 1
            self.get_logger().warning(
                f"odometry refused ({self.stats[counter]} so far): {reason} in "
                f"{self.resolve_topic_name('odom')}; skipped (label images use the odometry around it)",
                throttle_duration_sec=LOG_EVERY_S)
            return
        gap = self._odom.add(msg)
        if gap is not None:
            self.health.odometry_gap(gap)
            # Farther apart than this, odometry cannot be interpolated for a stamp between them.
            if gap > 2.0 * self.config["odom_tolerance"]:
                self.stats["odometry_gaps"] += 1

    def _refuse(self, what: str, reason: str) -> None:
        self.stats[what] += 1
        self.get_logger().warning(f"label image skipped ({what}, {self.stats[what]} so far): {reason}",
                                  throttle_duration_sec=LOG_EVERY_S)

    def _decode(self, msg: Image) -> np.ndarray | None:
        """The label image as (H, W) uint8, or None (counted and logged) when the message is malformed."""
        h, w, step = msg.height, msg.width, msg.step
        if msg.encoding not in LABEL_ENCODINGS:
            self._refuse("malformed", f"encoding {msg.encoding!r}; panoptic/semantic must be mono8 trainIds")
            return None
        if h == 0 or w == 0 or step < w or len(msg.data) < step * h:
            self._refuse("malformed", f"{w}x{h} image with step {step} and {len(msg.data)} bytes of data")
            return None
        data = np.frombuffer(msg.data, np.uint8, count=step * h).reshape(h, step)
        return data[:, :w] if step != w else data

    def _camera_for(self, height: int, width: int) -> CameraModel | str:
        """The camera model sized like the labels, or the reason there is none; cached."""
        info = self._info
        key = (tuple(info.k), tuple(info.d), info.distortion_model, info.width, info.height,
               info.roi.width, info.roi.height, height, width)
        if key == self._camera_key:
            return self._camera
        self._camera_key = key
        try:
            roi = info.roi
            if roi.width and roi.height and (roi.width, roi.height) != (info.width, info.height):
                raise ValueError(f"camera_info has a region of interest ({roi.width}x{roi.height}); "
                                 "cropped images are not supported: publish labels of the full image")
            camera = CameraModel(np.asarray(info.k), np.asarray(info.d), info.distortion_model,
                                 info.width, info.height, self.config.pose)
            if (width, height) != (camera.width, camera.height):
                sx, sy = width / camera.width, height / camera.height
                if abs(sx - sy) > ASPECT_TOLERANCE * max(sx, sy):
                    raise ValueError(
                        f"label image {width}x{height} and camera_info {camera.width}x{camera.height} differ in "
                        "aspect ratio, so the labels cannot be a resized camera image; publish labels at the "
                        "camera's resolution or a uniformly scaled one")
                camera = camera.scaled(width, height)
            self._camera = camera
            if self.builder.set_camera(camera) and self.builder.lookup.empty:
                self.get_logger().warning("no grid cell is in view of the camera: check camera.* (pose), "
                                          "max_range and the grid's size and offset")
        except ValueError as exc:
            self._camera = str(exc)
        return self._camera

    def _on_labels(self, msg: Image) -> None:
        self.stats["frames"] += 1
        self.health.frame_in()
        try:
            self._handle(msg)
        except Exception as exc:  # the node must not die on one bad frame; say what happened
            self.stats["errors"] += 1
            self.get_logger().error(f"label image skipped after an error ({self.stats['errors']} so far): {exc!r}",
                                    throttle_duration_sec=LOG_EVERY_S)

    def _handle(self, msg: Image) -> None:
        labels = self._decode(msg)
        if labels is None:
            return
        if self._info is None:
            self.stats["waiting"] += 1
            self.get_logger().info(f"waiting for {self.resolve_topic_name('camera_info')}: no grid until it arrives",
                                   once=True)
            return
        camera = self._camera_for(*labels.shape)
        if isinstance(camera, str):
            self._refuse("refused", camera)
            return
        stamp = _stamp_s(msg.header.stamp)
        pose = None
        if self.config["use_odom"]:
            pose = self._odom.at(stamp, self.config["odom_tolerance"])
            if pose is None:
                self._refuse("no_odometry", f"no odometry within {self.config['odom_tolerance']} s of the label "
                             f"stamp {stamp:.3f} on {self.resolve_topic_name('odom')}")
                return
        if self._last_stamp is not None and stamp < self._last_stamp:
            self.get_logger().warning("label stamps went back in time (a bag restarted?): the grid starts over")
            self.builder.reset()
        self._last_stamp = stamp
        started = time.perf_counter()
        frame = self.builder.process(np.ascontiguousarray(labels), stamp, pose)
        frame_id = self._odom.frame_id if self.config["use_odom"] else self.config["base_frame"]
        self._publish(frame, msg.header.stamp, frame_id)
        self.health.frame_out(time.perf_counter() - started)
        self.stats["published"] += 1

    # ------------------------------------------------------------------ output
    def _publish(self, frame: GridFrame, stamp, frame_id: str) -> None:
        layout = frame.layout
        grid = OccupancyGrid()
        grid.header.stamp = stamp
        grid.header.frame_id = frame_id
        grid.info.map_load_time = stamp
        grid.info.resolution = float(layout.resolution)
        grid.info.width, grid.info.height = layout.width, layout.height
        grid.info.origin.position.x = float(layout.origin_x)
        grid.info.origin.position.y = float(layout.origin_y)
        grid.info.origin.orientation.w = 1.0
        grid.data = array.array("b", np.ascontiguousarray(frame.occupancy).tobytes())
        self.grid_pub.publish(grid)

        sem = Image()
        sem.header = grid.header
        sem.height, sem.width = layout.height, layout.width
        sem.encoding, sem.is_bigendian, sem.step = "mono8", 0, layout.width
        sem.data = np.ascontiguousarray(frame.semantic).tobytes()
        self.semantic_pub.publish(sem)

    def _publish_diagnostics(self) -> None:
        layout = self.config.layout()
        extra = {"mode": "odometry" if self.config["use_odom"] else "ego",
                 "grid": f"{layout.width}x{layout.height} cells of {layout.resolution} m",
                 "input_topic": self.labels_sub.topic_name,
                 "input_publishers": str(self.labels_sub.get_publisher_count())}
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [self.health.status(f"{self.get_fully_qualified_name()}: occupancy grid", self.stats, extra)]
        self.diagnostics_pub.publish(array)


def main(argv: list[str] | None = None) -> int:
    """Run the node until shut down; 2 (and one line on stderr) when it cannot start.
    ``argv``: the arguments after the program name; None: sys.argv."""
    return run(NODE_NAME, lambda context: OccupancyGridNode(context=context), argv)


if __name__ == "__main__":
    sys.exit(main())
