"""panoptic_node: camera images in, panoptic labels, instances and an overlay out.

    source env.sh && panoptic_node --ros-args -r __ns:=/front --params-file config/panoptic.yaml
    ros2 run pisr_ros panoptic_node --ros-args -r __ns:=/front        (on a ROS 2 system)

In the camera's namespace it subscribes ``image_raw`` (sensor_msgs/Image) or
``image_raw/compressed`` (parameter ``input_transport``) and publishes ``panoptic/labels``
(32SC1, trainId*1000+k, -1 void), ``panoptic/semantic`` (mono8 trainIds of the same segments,
255 void), ``panoptic/instances``, ``panoptic/overlay`` (only while subscribed),
``panoptic/label_info`` (transient local, once) and ``/diagnostics``. Every output carries the
input's header unchanged.

The node is a thin shell around ``pisr_ros.inference.Predictor``. Latest frame wins: the
subscription only keeps the newest message; an inference thread takes it when free, so a
frame that a newer one replaces before inference starts is dropped and counted, never queued.
With ``pipeline`` (the default) an output thread post-processes and publishes each frame while
the inference thread runs the next one's network: at most two frames in flight, published in
the order they came.
The image outputs are written straight into serialized messages (``ros/image_cdr.py``).
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from pisr_ros.errors import UsageError
from pisr_ros.image_decode import (MalformedImage, check_compressed_msg, check_image_msg, compressed_to_array,
                                   image_to_array)
from pisr_ros.inference.model_files import find_model
from pisr_ros.msg import PanopticInstanceArray, PanopticLabelInfo
from pisr_ros.overlay import overlay
from pisr_ros.ros.diagnostics import NodeStats, stamp_latency, status
from pisr_ros.ros.image_cdr import image_cdr
from pisr_ros.ros.messages import instance_array_msg, label_info_msg
from pisr_ros.ros.transport_limits import largest_frame_line
from pisr_ros.ros.node_main import StartError, run
from pisr_ros.ros.panoptic_params import PARAMS, problem, settings_params
from pisr_ros.ros.parameters import declare

if TYPE_CHECKING:
    from pisr_ros.inference.predictor import NetworkOutput

LOG_THROTTLE_S = 5.0
# Outputs are reliable so that recorders and replay evaluation see every frame; a few frames of
# history cover a subscriber that is briefly slower than the node.
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=3, reliability=ReliabilityPolicy.RELIABLE)
INPUT_DEPTH = 4
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class _Frame:
    """A frame between the network and publishing."""

    header: Header
    arrived: float  # time.perf_counter() at arrival
    image: np.ndarray
    order: str  # bgr or rgb
    network: NetworkOutput
    network_done: float  # time.perf_counter()


def device_problem(device: str) -> str | None:
    """Why ``device`` (cpu, cuda, cuda:N) cannot run here; None when it can."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}, no GPU found"
        return f"device {device}: CUDA is not available here (torch {torch.__version__}, {build}); set device:=cpu"
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return (f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return None


class PanopticNode(Node):
    def __init__(self, **kwargs):
        super().__init__("panoptic_node", **kwargs)
        self.stats = NodeStats()
        values = declare(self, PARAMS)  # raises StartError with every refused value
        self.params = values
        if (why := device_problem(values["device"])) is not None:
            raise StartError(why)
        self.predictor = self._load_predictor(values)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.pub_labels = self.create_publisher(Image, "panoptic/labels", OUTPUT_QOS)
        self.pub_semantic = self.create_publisher(Image, "panoptic/semantic", OUTPUT_QOS)
        self.pub_instances = self.create_publisher(PanopticInstanceArray, "panoptic/instances", OUTPUT_QOS)
        self.pub_overlay = self.create_publisher(Image, "panoptic/overlay", OUTPUT_QOS)
        self.pub_label_info = self.create_publisher(PanopticLabelInfo, "panoptic/label_info", LATCHED_QOS)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_label_info.publish(label_info_msg(Header(stamp=self.get_clock().now().to_msg(), frame_id="")))

        reliability = (ReliabilityPolicy.RELIABLE if values["reliability"] == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        # A few messages of middleware history: arrivals are taken at once by a cheap callback,
        # which counts what it replaces (or rejects) before it is lost; with depth 1 the
        # middleware would drop frames where the node cannot count them. No backlog forms:
        # the node itself keeps only the newest frame.
        input_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=INPUT_DEPTH, reliability=reliability)
        # Frames the middleware lost on the way (a fragment missing over best effort) are
        # reported by the reader as gaps in the camera's sequence numbers: counted, not silent.
        lost = SubscriptionEventCallbacks(message_lost=self._on_lost)
        if values["input_transport"] == "compressed":
            self.sub = self.create_subscription(CompressedImage, "image_raw/compressed", self._on_compressed, input_qos,
                                                event_callbacks=lost)
        else:
            self.sub = self.create_subscription(Image, "image_raw", self._on_image, input_qos, event_callbacks=lost)

        self._lock = threading.Lock()
        self._pending = None  # (message, arrival time.perf_counter())
        self._wake = threading.Event()
        self._running = True
        # With ``pipeline``, the network of a frame runs while a second thread post-processes
        # and publishes the frame before; on 2 cores that uses CPU time the network's own
        # threads leave idle (docs/panoptic_node.md).
        self._handoff: queue.Queue[_Frame] | None = queue.Queue(maxsize=1) if values["pipeline"] else None
        self._output = None
        if self._handoff is not None:
            if self.predictor.backend.name != "torch":
                # Post-processing (torch) then runs beside the network; torch's own pool
                # threads would compete with the network's for the cores (2 cores: 14.2-14.8
                # frames/s with them, below the serial node; docs/panoptic_node.md).
                import torch

                torch.set_num_threads(1)
            self._output = threading.Thread(target=self._output_loop, name="panoptic_output", daemon=True)
            self._output.start()
        self._worker = threading.Thread(target=self._work, name="panoptic_inference", daemon=True)
        self._worker.start()
        self.create_timer(values["diagnostics_period"], self._publish_diagnostics)
        self.get_logger().info(f"serving {self.predictor.describe()} on {self.sub.topic_name}")
        carried, line = largest_frame_line(values["max_image_pixels"])
        (self.get_logger().info if carried else self.get_logger().warning)(line)

    # ------------------------------------------------------------------------ set-up
    def _settings_of(self, values: dict):
        """The predictor's settings with the post-processing parameters' values in ``values``."""
        return replace(self.predictor.postprocess, **{n: values[n] for n in self.settings_params.names()})

    def _load_predictor(self, values: dict):
        from pisr_ros.inference.predictor import Predictor

        try:
            path = find_model(values["model"])
        except UsageError as exc:
            raise StartError(str(exc)) from exc
        size = tuple(values["input_size"]) if list(values["input_size"]) != [0, 0] else None
        try:
            predictor = Predictor.from_file(str(path), backend=values["backend"], device=values["device"],
                                            threads=values["threads"] or None, input_size=size,
                                            keep_confidence=False)
        except UsageError as exc:
            raise StartError(str(exc)) from exc
        # The model family's settings as parameters, defaulting to the device's defaults and the
        # values tuned into the model file; a params file or -p overrides them here.
        self.settings_params = settings_params(predictor.postprocess)
        values.update(declare(self, self.settings_params))
        chosen = replace(predictor.postprocess, **{n: values[n] for n in self.settings_params.names()})
        reason = predictor.settings_problem(chosen)
        if reason:
            raise StartError(f"{path.name}: {reason}")
        predictor.postprocess = chosen
        return predictor

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        reasons = [msg for p in params
                   if (msg := problem(p.name, p.value) or self.settings_params.problem(p.name, p.value))]
        if reasons:
            return SetParametersResult(successful=False, reason="; ".join(reasons))
        values = dict(self.params, **{p.name: p.value for p in params})
        chosen = self._settings_of(values)
        # A value the declaration allows that this model file cannot serve (merge: ranking
        # without the ranking module's weights) is refused here, not on every frame.
        reason = self.predictor.settings_problem(chosen)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        # One assignment of a new settings object: the inference thread sees the old or the new one.
        self.predictor.postprocess = chosen
        self.params = values
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------ input
    def _reject(self, exc: MalformedImage, msg, taken_in: bool = False) -> None:
        self.stats.reject(exc.reason, taken_in)
        frame = getattr(msg.header, "frame_id", "")
        self.get_logger().warning(f"rejected a message (frame_id {frame!r}): {exc}",
                                  throttle_duration_sec=LOG_THROTTLE_S)

    def _on_lost(self, info) -> None:
        self.stats.lost(info.total_count_change)
        self.get_logger().warning(f"{info.total_count} frames lost by the middleware before they arrived "
                                  "(see 'Limits' in docs/panoptic_node.md)", throttle_duration_sec=LOG_THROTTLE_S)

    def _offer(self, msg) -> None:
        self.stats.frame_in()
        with self._lock:
            if self._pending is not None:
                self.stats.drop()
            self._pending = (msg, time.perf_counter())
        self._wake.set()

    def _on_image(self, msg: Image) -> None:
        try:
            check_image_msg(msg, self.params["max_image_pixels"])
        except MalformedImage as exc:
            self._reject(exc, msg)
            return
        self._offer(msg)

    def _on_compressed(self, msg: CompressedImage) -> None:
        try:
            check_compressed_msg(msg, self.params["max_image_pixels"])
        except MalformedImage as exc:
            self._reject(exc, msg)
            return
        self._offer(msg)

    # ------------------------------------------------------------------------ inference
    def _work(self) -> None:
        while self._running:
            self._wake.wait(timeout=0.5)
            with self._lock:
                pending, self._pending = self._pending, None
                self._wake.clear()
            if pending is None:
                continue
            msg, arrived = pending
            try:
                frame = self._run_network(msg, arrived)
            except MalformedImage as exc:
                self._reject(exc, msg, taken_in=True)
                continue
            except Exception as exc:  # the node must outlive any one frame
                self._failed(exc)
                continue
            if self._handoff is None:
                self._finish(frame)
                continue
            # Waits while the output thread is still busy with the frame before: at most one
            # frame in the network and one being published, never a queue.
            while self._running:
                try:
                    self._handoff.put(frame, timeout=0.5)
                    break
                except queue.Full:
                    pass

    def _output_loop(self) -> None:
        while self._running:
            try:
                frame = self._handoff.get(timeout=0.5)
            except queue.Empty:
                continue
            self._finish(frame)

    def _failed(self, exc: Exception) -> None:
        self.stats.fail()
        self.get_logger().error(f"inference failed: {type(exc).__name__}: {exc}",
                                throttle_duration_sec=LOG_THROTTLE_S)

    def _run_network(self, msg, arrived: float) -> _Frame:
        started = time.perf_counter()
        max_pixels = self.params["max_image_pixels"]
        if isinstance(msg, CompressedImage):
            image, order = compressed_to_array(msg, max_pixels)
        else:
            image, order = image_to_array(msg, max_pixels)
        decoded = time.perf_counter()
        network = self.predictor.run_network([image], order)
        self.stats.stages(wait=started - arrived, decode=decoded - started)
        return _Frame(msg.header, arrived, image, order, network, time.perf_counter())

    def _finish(self, frame: _Frame) -> None:
        try:
            self._publish(frame)
        except Exception as exc:  # the node must outlive any one frame
            self._failed(exc)

    def _publish(self, frame: _Frame) -> None:
        started = time.perf_counter()
        result = self.predictor.finish(frame.network)[0]
        finished = time.perf_counter()
        header, image = frame.header, frame.image
        h, w = image.shape[:2]
        self.pub_labels.publish(image_cdr(result.id_map, "32SC1", header))
        self.pub_semantic.publish(image_cdr(result.semantic, "mono8", header))
        self.pub_instances.publish(instance_array_msg(result.segments, header, h, w))
        published = time.perf_counter()
        if self.pub_overlay.get_subscription_count() > 0:
            bgr = image if frame.order == "bgr" else np.ascontiguousarray(image[..., ::-1])
            picture = overlay(bgr, result.semantic, result.id_map, self.params["overlay_alpha"])
            self.pub_overlay.publish(image_cdr(picture, "bgr8", header))
            self.stats.overlay()
            self.stats.stages(overlay=time.perf_counter() - published)
        # Where a frame's time goes, for diagnostics: waiting for the inference thread and
        # decoding (recorded above), the Predictor's stages, waiting for the output thread
        # (handoff), converting and publishing the outputs (the overlay, when made, above).
        self.stats.stages(handoff=started - frame.network_done, publish=published - finished,
                          **{f"predictor_{k}": v for k, v in frame.network.timings.items()})
        stamp = header.stamp.sec + header.stamp.nanosec * 1e-9
        now = self.get_clock().now().nanoseconds * 1e-9
        self.stats.frame_out(stamp_latency(stamp, now), time.perf_counter() - frame.arrived)

    # ------------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        extra = {"backend": self.predictor.backend.name, "device": str(self.predictor.device),
                 "model": str(self.predictor.info.path), "input_topic": self.sub.topic_name,
                 "network_input": "x".join(map(str, self.predictor.input_size))}
        # Who is matched to each output: a viewer or a grid node that shows nothing may simply
        # not have been discovered yet (and the overlay is drawn only while somebody subscribes).
        for name, pub in (("labels", self.pub_labels), ("semantic", self.pub_semantic),
                          ("instances", self.pub_instances), ("overlay", self.pub_overlay)):
            extra[f"subscribers_{name}"] = str(pub.get_subscription_count())
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status(f"{self.get_fully_qualified_name()}: panoptic segmentation", snap, extra)]
        self.pub_diagnostics.publish(array)

    def stop(self) -> None:
        self._running = False
        self._wake.set()
        self._worker.join(timeout=5.0)
        if self._output is not None:
            self._output.join(timeout=5.0)


def main(argv: list[str] | None = None) -> int:
    """Run the node until shut down; 2 (and one line on stderr) when it cannot start.
    ``argv``: the arguments after the program name; None: sys.argv."""
    return run("panoptic_node", lambda context: PanopticNode(context=context), argv)


if __name__ == "__main__":
    sys.exit(main())
