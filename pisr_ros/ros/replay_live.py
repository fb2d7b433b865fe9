"""Live replay: a bag's camera frames played through rclpy to panoptic_node, and its labels
recorded as they come back (``pisr-ros replay-eval --live``).

The node is started here as users start it (or an already running one is used with
``attach``). Frames are published as the bag's own CDR bytes on the bag's topic; a frame whose
labels never come back is dropped, and stays in ``sent_stamps`` so the report counts it.
Id maps are spilled to .npy files as they arrive, so a long bag does not live in memory.
"""
from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pisr_ros.errors import UsageError
from pisr_ros.evaluation.bags import read_raw_messages
from pisr_ros.evaluation.replay.handoff import FrameResult, ReplayOutput
from pisr_ros.ros.node_process import NodeProcess

READY_TIMEOUT_S = 120.0  # model loading and discovery, on a busy 2-core machine
ATTACH_TIMEOUT_S = 15.0  # a running node is found by discovery alone
SETTLE_S = 10.0  # after the last frame: how long outstanding results may take


def run_live(bag, topic: str, msgtype: str, camera: str, *, rate: float | None, attach: bool = False,
             node_params: dict[str, str] | None = None, total: int | None = None,
             overlays_dir: str | Path | None = None, overlays: int = 0, progress: bool = True) -> ReplayOutput:
    """Play ``topic`` of ``bag`` to panoptic_node in ``camera``'s namespace and record its labels.

    ``rate``: playback speed as a factor of the recorded rate, or None for as fast as the node
    takes frames (the next is sent when the previous result is back, so none is dropped).
    ``overlays``: also subscribe the node's overlay and save the first that many as PNGs in
    ``overlays_dir`` (the node draws overlays only while somebody subscribes, at some cost).
    """
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from tqdm import tqdm

    from pisr_ros.msg import PanopticLabelInfo
    from pisr_ros.ros.image_cdr import parse_image

    compressed = msgtype.endswith("CompressedImage")
    node = None
    if not attach:
        params = {"input_transport": "compressed" if compressed else "raw",
                  # Replay is loss-free end to end: a lost frame would be the link's fault, not the node's.
                  "reliability": "reliable"}
        params.update(node_params or {})
        node = NodeProcess("panoptic_node", camera, params)
    context = rclpy.context.Context()
    rclpy.init(context=context)
    ros = rclpy.create_node("replay_eval", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(ros)
    spill = tempfile.TemporaryDirectory(prefix="pisr_ros_replay_")
    sent_at: dict[int, float] = {}
    received: dict[int, tuple[Path, float]] = {}
    ready: list = []
    reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    ns = camera.rstrip("/")

    def on_labels(serialized: bytes) -> None:
        # Serialized, so that 8 MB of labels are not deserialized only to be saved.
        now = time.perf_counter()
        msg = parse_image(serialized)
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if stamp not in sent_at or stamp in received:
            return
        ids = np.frombuffer(msg.data, np.int32, count=msg.height * msg.width).reshape(msg.height, msg.width)
        path = Path(spill.name) / f"{stamp}.npy"
        np.save(path, ids)
        received[stamp] = (path, now - sent_at[stamp])

    ros.create_subscription(Image, f"{ns}/panoptic/labels", on_labels, reliable, raw=True)
    if overlays > 0:
        import cv2

        Path(overlays_dir).mkdir(parents=True, exist_ok=True)
        saved: list[int] = []

        def on_overlay(msg: Image) -> None:
            if len(saved) < overlays and msg.encoding == "bgr8":
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                picture = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 3]
                cv2.imwrite(str(Path(overlays_dir) / f"overlay_{stamp}.png"), picture.reshape(msg.height, msg.width, 3))
                saved.append(stamp)

        overlay_sub = ros.create_subscription(Image, f"{ns}/panoptic/overlay", on_overlay, reliable)
    else:
        overlay_sub = None
    ros.create_subscription(PanopticLabelInfo, f"{ns}/panoptic/label_info", ready.append, latched)
    pub = ros.create_publisher(CompressedImage if compressed else Image, topic,
                               QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                          reliability=ReliabilityPolicy.RELIABLE))

    def spin_until(predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            executor.spin_once(timeout_sec=0.01)
            if node is not None and not node.running():
                raise UsageError(f"panoptic_node exited (status {node.proc.returncode}):\n{node.output()[-2000:]}")
        return predicate()

    out = ReplayOutput(results={}, sent_stamps=[], mode="live")
    try:
        # The node is up when its transient-local label info arrives and it subscribes to the topic.
        timeout = READY_TIMEOUT_S if node else ATTACH_TIMEOUT_S

        def matched() -> bool:
            # The overlay subscription must be matched too: the node draws overlays only for a
            # subscriber it has discovered, and the first frames would otherwise go without.
            return bool(ready) and pub.get_subscription_count() > 0 and (
                overlay_sub is None or overlay_sub.get_publisher_count() > 0)

        if not spin_until(matched, timeout):
            what = "the node did not come up" if node else f"no panoptic_node answers in {camera}"
            raise UsageError(f"{what} within {timeout:.0f} s"
                             + (f"; its log:\n{node.output()[-2000:]}" if node else
                                " (start one, or leave out --attach to let replay-eval start it)"))
        first_bag_time = None
        t0 = time.perf_counter()
        bar = tqdm(total=total, desc="replay (live)", unit="frame", disable=not progress)
        for stamp, bag_time, _, cdr in read_raw_messages(bag, topic):
            if rate is not None:
                first_bag_time = bag_time if first_bag_time is None else first_bag_time
                due = t0 + (bag_time - first_bag_time) * 1e-9 / rate
                spin_until(lambda: time.perf_counter() >= due, max(0.0, due - time.perf_counter()) + 1.0)
            out.sent_stamps.append(stamp)
            sent_at[stamp] = time.perf_counter()
            pub.publish(cdr)  # the bag's CDR bytes, as a player publishes them
            if rate is None:
                # As fast as the node takes them: wait for this result (or give up on it).
                spin_until(lambda: stamp in received, SETTLE_S)
            bar.update()
        bar.close()
        spin_until(lambda: all(s in received for s in out.sent_stamps)
                   and (overlays <= 0 or len(saved) >= min(overlays, len(received))), SETTLE_S)
        if overlays > 0 and len(saved) < min(overlays, len(received)):
            print(f"note: {len(saved)} of {overlays} overlays arrived", file=sys.stderr)
        last = max((sent_at[s] + received[s][1] for s in received), default=t0)
        out.wall_s = max(last - t0, 1e-9)
        out.description = ("panoptic_node started by replay-eval" if node else f"running panoptic_node in {camera}")
        if node is not None and node_params:
            out.description += " (" + ", ".join(f"{k}={v}" for k, v in node_params.items()) + ")"
    finally:
        executor.shutdown()
        ros.destroy_node()
        rclpy.shutdown(context=context)
        if node is not None:
            node.stop()

    def results() -> Iterator[tuple[int, FrameResult]]:
        try:
            for stamp in out.sent_stamps:
                if stamp in received:
                    path, latency = received[stamp]
                    yield stamp, FrameResult(np.load(path), latency)
        finally:
            spill.cleanup()

    out.results = results()
    return out
