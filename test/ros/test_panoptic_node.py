"""panoptic_node as users run it: its own process, the shipped model, real DDS on loopback."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from pisr_ros.data.synth import render_scene
from pisr_ros.msg import PanopticInstanceArray, PanopticLabelInfo
from pisr_ros.ros.image_cdr import image_cdr
from pisr_ros.ros.node_process import NodeProcess as PackageNode

CAMERA = (256, 512)  # frames smaller than the network input: the node must give labels at this size
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class NodeProcess(PackageNode):
    """panoptic_node started as its own process (`python -m`, the package's params file) in a
    fresh namespace."""

    def __init__(self, *params: str):
        self.ns = f"/cam_{uuid.uuid4().hex[:8]}"
        overrides = dict(p.split(":=", 1) for p in ("threads:=2", *params))
        super().__init__("panoptic_node", self.ns, overrides)

    def topic(self, name: str) -> str:
        return f"{self.ns}/{name}"

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    close = PackageNode.stop


@pytest.fixture(scope="module")
def raw_node():
    node = NodeProcess()
    yield node
    node.close()


@pytest.fixture(scope="module")
def serial_node():
    """Without the pipeline: network, post-processing and publishing on one thread."""
    node = NodeProcess("pipeline:=false")
    yield node
    node.close()


@pytest.fixture(scope="module")
def compressed_node():
    node = NodeProcess("input_transport:=compressed")
    yield node
    node.close()


@pytest.fixture(scope="module")
def frame_bgr():
    return np.ascontiguousarray(render_scene(11, "val", 3, CAMERA)[0][..., ::-1])


class Client:
    """Publishers and recorders on the test node for one NodeProcess."""

    def __init__(self, ros_node, spin_until, node: NodeProcess, compressed: bool = False):
        self.ros, self.spin_until, self.node = ros_node, spin_until, node
        self.received: dict[str, list] = {"labels": [], "semantic": [], "instances": [], "overlay": []}
        self.diagnostics: list = []
        if compressed:
            self.pub = ros_node.create_publisher(CompressedImage, node.topic("image_raw/compressed"), qos_profile_sensor_data)
        else:
            self.pub = ros_node.create_publisher(Image, node.topic("image_raw"), qos_profile_sensor_data)
        for name, kind in (("labels", Image), ("semantic", Image), ("instances", PanopticInstanceArray)):
            ros_node.create_subscription(kind, node.topic(f"panoptic/{name}"), self.received[name].append, RELIABLE)
        ros_node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.sent = 0
        self.sent_headers: list[Header] = []

    def _on_diagnostics(self, msg):
        for st in msg.status:
            if st.name.startswith(f"{self.node.ns}/panoptic_node"):
                self.diagnostics.append({kv.key: kv.value for kv in st.values})

    def header(self, stamp=None) -> Header:
        self.sent += 1
        h = Header(frame_id=f"camera_optical_{self.sent}")
        h.stamp = stamp if stamp is not None else self.ros.get_clock().now().to_msg()
        self.sent_headers.append(h)
        return h

    def send_raw(self, bgr, stamp=None):
        header = self.header(stamp)
        self.pub.publish(image_cdr(bgr, "bgr8", header))
        return header

    def send_jpeg(self, bgr):
        msg = CompressedImage(header=self.header(), format="jpeg")
        msg.data = cv2.imencode(".jpg", bgr)[1].tobytes()
        self.pub.publish(msg)
        return msg.header

    def result_for(self, header, timeout=30.0):
        """(labels, semantic, instances) carrying ``header``, resending nothing."""
        def find(name):
            return next((m for m in self.received[name] if m.header == header), None)

        ok = self.spin_until(lambda: all(find(n) for n in ("labels", "semantic", "instances")), timeout)
        assert ok, f"no complete result for {header.frame_id}; node log:\n{self.node.output()[-3000:]}"
        return find("labels"), find("semantic"), find("instances")

    def first_result(self, send, timeout=60.0):
        """Send until the node answers (discovery takes a moment); the answered header."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            header = send()
            if self.spin_until(lambda: any(m.header == header for m in self.received["labels"]), 2.0):
                return header
        pytest.fail(f"the node never answered; log:\n{self.node.output()[-3000:]}")

    def latest_diagnostics(self, predicate=lambda d: True, timeout=10.0):
        start = len(self.diagnostics)
        ok = self.spin_until(lambda: any(predicate(d) for d in self.diagnostics[start:]), timeout)
        assert ok, f"no matching diagnostics; last: {self.diagnostics[-1:] }"
        return [d for d in self.diagnostics[start:] if predicate(d)][-1]

    def settled_diagnostics(self, timeout=60.0):
        """The first of two reports in a row with no frame in the node and the same counts: the
        node is idle and every frame it took in is accounted for. Waits for work, not a time."""
        keys = ("received", "processed", "dropped_frames", "rejected_messages", "inference_errors")
        start = len(self.diagnostics)

        def settled():
            got = self.diagnostics[start:]
            return any(int(a["frames_in_node"]) == 0 and all(a[k] == b[k] for k in keys)
                       for a, b in zip(got, got[1:]))

        assert self.spin_until(settled, timeout), f"the node never settled; last: {self.diagnostics[-1:]}"
        got = self.diagnostics[start:]
        return next(a for a, b in zip(got, got[1:])
                    if int(a["frames_in_node"]) == 0 and all(a[k] == b[k] for k in keys))


def _labels_array(msg) -> np.ndarray:
    return np.frombuffer(msg.data, np.int32).reshape(msg.height, msg.width)


def test_a_frame_gets_labels_semantic_and_instances_that_agree(ros_node, spin_until, raw_node, frame_bgr):
    client = Client(ros_node, spin_until, raw_node)
    header = client.first_result(lambda: client.send_raw(frame_bgr))
    labels, semantic, instances = client.result_for(header)
    assert (labels.height, labels.width, labels.encoding) == (*CAMERA, "32SC1")
    assert labels.step == CAMERA[1] * 4 and semantic.encoding == "mono8"
    assert labels.header == header and semantic.header == header and instances.header == header
    ids = _labels_array(labels)
    sem = np.frombuffer(semantic.data, np.uint8).reshape(*CAMERA)
    np.testing.assert_array_equal(sem, np.where(ids < 0, 255, ids // 1000))
    present, counts = np.unique(ids[ids >= 0], return_counts=True)
    assert [i.id for i in instances.instances] == present.tolist()  # one entry per non-void id
    assert [i.area for i in instances.instances] == counts.tolist()
    assert (instances.height, instances.width) == CAMERA
    for inst in instances.instances:
        ys, xs = np.nonzero(ids == inst.id)
        assert (inst.bbox.x_offset, inst.bbox.y_offset) == (xs.min(), ys.min())
        assert inst.class_id == inst.id // 1000


def test_the_node_with_and_without_its_pipeline_gives_the_same_outputs(ros_node, spin_until, raw_node, serial_node,
                                                                      frame_bgr):
    outputs = []
    for node in (raw_node, serial_node):
        client = Client(ros_node, spin_until, node)
        header = client.first_result(lambda: client.send_raw(frame_bgr))
        outputs.append(client.result_for(header))
    (labels_a, semantic_a, instances_a), (labels_b, semantic_b, instances_b) = outputs
    np.testing.assert_array_equal(_labels_array(labels_a), _labels_array(labels_b))
    assert bytes(semantic_a.data) == bytes(semantic_b.data)
    assert instances_a.instances == instances_b.instances


def test_overlay_is_computed_only_while_subscribed(ros_node, spin_until, raw_node, frame_bgr):
    client = Client(ros_node, spin_until, raw_node)
    client.first_result(lambda: client.send_raw(frame_bgr))
    before = int(client.latest_diagnostics()["overlays_published"])
    header = client.send_raw(frame_bgr)
    client.result_for(header)
    diag = client.latest_diagnostics()
    assert int(diag["overlays_published"]) == before  # nobody listening: none made
    assert diag["subscribers_overlay"] == "0" and int(diag["subscribers_labels"]) >= 1, diag
    overlays = []
    sub = ros_node.create_subscription(Image, raw_node.topic("panoptic/overlay"), overlays.append, RELIABLE)
    deadline = time.monotonic() + 30
    while not overlays and time.monotonic() < deadline:
        client.send_raw(frame_bgr)
        spin_until(lambda: bool(overlays), 1.0)
    assert overlays, "no overlay while subscribed"
    o = overlays[0]
    assert (o.height, o.width, o.encoding) == (*CAMERA, "bgr8")
    assert o.header in client.sent_headers  # the input's header, unchanged
    client.latest_diagnostics(lambda d: d["subscribers_overlay"] == "1")  # the node counts who is matched
    ros_node.destroy_subscription(sub)
    # Let the graph (and so the node) see the subscriber leave before the next frame.
    assert spin_until(lambda: ros_node.count_subscribers(raw_node.topic("panoptic/overlay")) == 0, 15.0)
    spin_until(lambda: False, 1.0)
    made = int(client.latest_diagnostics()["overlays_published"])
    header = client.send_raw(frame_bgr)
    client.result_for(header)
    assert int(client.latest_diagnostics()["overlays_published"]) == made


def test_label_info_reaches_a_late_subscriber(ros_node, spin_until, raw_node, frame_bgr):
    client = Client(ros_node, spin_until, raw_node)
    client.first_result(lambda: client.send_raw(frame_bgr))  # the node has been up for a while
    got = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    ros_node.create_subscription(PanopticLabelInfo, raw_node.topic("panoptic/label_info"), got.append, latched)
    assert spin_until(lambda: bool(got), 15.0)
    assert len(got[0].class_names) == 19 and got[0].label_divisor == 1000


def test_compressed_input(ros_node, spin_until, compressed_node, frame_bgr):
    client = Client(ros_node, spin_until, compressed_node, compressed=True)
    header = client.first_result(lambda: client.send_jpeg(frame_bgr))
    labels, _, instances = client.result_for(header)
    assert (labels.height, labels.width) == CAMERA and labels.header == header


def test_malformed_flood_leaves_the_node_alive_and_counted(ros_node, spin_until, raw_node, compressed_node, frame_bgr):
    raw = Client(ros_node, spin_until, raw_node)
    jpeg = Client(ros_node, spin_until, compressed_node, compressed=True)
    raw.first_result(lambda: raw.send_raw(frame_bgr))
    jpeg.first_result(lambda: jpeg.send_jpeg(frame_bgr))

    def bad(**fields):
        msg = Image(header=raw.header(), height=4, width=4, encoding="bgr8", step=12)
        msg.data = bytes(48)
        for k, v in fields.items():
            setattr(msg, k, v)
        return msg

    malformed = [
        bad(encoding="yuv422_yuy2"),          # wrong encoding
        bad(step=5),                          # step that disagrees with the width
        bad(data=bytes(20)),                  # truncated data
        bad(height=0, width=0, step=0, data=b""),  # 0x0
        bad(height=8192, width=8192, step=8192 * 3, data=bytes(48)),  # 8192x8192 claimed
    ]
    before = raw.settled_diagnostics()
    rounds = 20
    for _ in range(rounds):
        for msg in malformed:
            raw.pub.publish(msg)
            spin_until(lambda: False, 0.005)
    # Best-effort delivery may lose some of a burst, so the node's counts are checked against
    # each other, not against what was sent: malformed messages are refused on arrival (never
    # taken in, so never dropped as superseded), each under its reason.
    counted = lambda d: sum(int(d.get(f"rejected_{r}", 0)) for r in ("encoding", "step", "truncated", "empty",
                                                                      "too_large"))
    diag = raw.latest_diagnostics(lambda d: all(int(d.get(f"rejected_{r}", 0)) > int(before.get(f"rejected_{r}", 0))
                                                for r in ("encoding", "step", "truncated", "empty", "too_large")),
                                  timeout=30)
    diag = raw.settled_diagnostics()
    assert int(diag["received"]) == int(before["received"]), (before, diag)
    assert int(diag["dropped_frames"]) == int(before["dropped_frames"]), (before, diag)
    grown = int(diag["rejected_messages"]) - int(before["rejected_messages"])
    assert 0 < grown <= rounds * len(malformed) and counted(diag) - counted(before) == grown, (before, diag)
    # Corrupt JPEGs: a JPEG header, then data that does not decode. Refused only when decoding,
    # so each is sent after the one before was counted (a newer frame would supersede it).
    jpeg_before = jpeg.settled_diagnostics()
    good = cv2.imencode(".jpg", frame_bgr)[1].tobytes()
    published = 0
    for i in range(1, 6):
        msg = CompressedImage(header=jpeg.header(), format="jpeg")
        msg.data = good[:200] + bytes(300)
        want = int(jpeg_before.get("rejected_corrupt", 0)) + i
        for _ in range(5):  # resent only if best effort lost it
            jpeg.pub.publish(msg)
            published += 1
            if spin_until(lambda: any(int(d.get("rejected_corrupt", 0)) >= want for d in jpeg.diagnostics[-3:]), 5.0):
                break
        else:
            pytest.fail(f"corrupt JPEG {i} never counted; last diagnostics {jpeg.diagnostics[-1:]}")
    diag = jpeg.settled_diagnostics()
    assert 5 <= int(diag["rejected_corrupt"]) - int(jpeg_before.get("rejected_corrupt", 0)) <= published, diag
    assert int(diag["dropped_frames"]) == int(jpeg_before["dropped_frames"]), diag
    # Still alive and answering, on both transports.
    assert raw_node.proc.poll() is None and compressed_node.proc.poll() is None
    raw.result_for(raw.send_raw(frame_bgr))
    jpeg.result_for(jpeg.send_jpeg(frame_bgr))
    # Logged, but throttled: far fewer warnings than rejected messages.
    warnings = raw_node.output().count("rejected a message")
    assert 1 <= warnings < rounds * len(malformed) / 4


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real 16x16 JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    jpeg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes()
    pos = 2
    while jpeg[pos + 1] != 0xC0:
        pos += 2 + int.from_bytes(jpeg[pos + 2:pos + 4], "big")
    return jpeg[:pos + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[pos + 9:]


def test_a_decode_bomb_is_refused_without_raising_the_nodes_peak_memory(ros_node, spin_until, compressed_node,
                                                                       frame_bgr):
    """Issue 18: ~600 bytes of JPEG claiming 20000x20000 raised the node's peak RSS by ~1.5 GB."""
    client = Client(ros_node, spin_until, compressed_node, compressed=True)
    client.first_result(lambda: client.send_jpeg(frame_bgr))
    client.result_for(client.send_jpeg(frame_bgr))  # the peak of normal frames is reached
    before = client.settled_diagnostics()
    peak_before = _peak_rss_mb(compressed_node.proc.pid)
    bomb = _jpeg_declaring(20000, 20000)
    assert len(bomb) < 1000
    want = int(before.get("rejected_too_large", 0)) + 3
    for _ in range(20):
        msg = CompressedImage(header=client.header(), format="jpeg")
        msg.data = bomb
        client.pub.publish(msg)
        if spin_until(lambda: any(int(d.get("rejected_too_large", 0)) >= want for d in client.diagnostics[-3:]), 2.0):
            break
    diag = client.settled_diagnostics()
    assert int(diag["rejected_too_large"]) >= want, diag
    assert int(diag["received"]) == int(before["received"])  # refused on arrival, never taken in
    # Within one normal frame's working set: a 256x512 frame and its outputs are a few MB, the
    # bomb's bitmap would be 1.2 GB.
    grown = _peak_rss_mb(compressed_node.proc.pid) - peak_before
    assert grown < 20, (peak_before, grown)
    client.result_for(client.send_jpeg(frame_bgr))  # and still serving


def test_stamps_of_another_clock_do_not_poison_the_latency(ros_node, spin_until, raw_node, frame_bgr):
    """A bag replayed with its original stamps (a year ago) and a camera on simulated time:
    answered as usual, counted as not comparable, left out of the latency percentiles."""
    client = Client(ros_node, spin_until, raw_node)
    client.first_result(lambda: client.send_raw(frame_bgr))
    before = client.settled_diagnostics()
    now = ros_node.get_clock().now().nanoseconds // 10**9
    for sec in (now - 365 * 86400, 42, now - 365 * 86400, 42):
        stamp = Header().stamp
        stamp.sec = sec
        header = client.first_result(lambda: client.send_raw(frame_bgr, stamp=stamp))
        assert header.stamp.sec == sec
    diag = client.settled_diagnostics()
    assert int(diag["stamps_not_comparable"]) - int(before["stamps_not_comparable"]) >= 4, diag
    # Only frames stamped now are in the percentiles (first_result's retries included): well
    # under a minute, where the foreign stamps would give 1e3 to 3e13 ms.
    assert float(diag["latency_p90_ms"]) < 60_000 or diag["latency_p90_ms"] == "nan", diag
    client.result_for(client.send_raw(frame_bgr))
    diag = client.settled_diagnostics()
    assert 0 < float(diag["latency_p90_ms"]) < 60_000, diag


def test_camera_sized_frames_arrive_or_are_counted(ros_node, spin_until, raw_node, frame_bgr):
    """Issue 18: 3000x4000 and 4000x6000 bgr8 frames never reached the node over best effort and
    were counted nowhere. Each frame sent is now received, refused (too_large) or counted as lost
    in transport; the largest frame the transport carries is stated once at start-up."""
    client = Client(ros_node, spin_until, raw_node)
    client.first_result(lambda: client.send_raw(frame_bgr))
    assert raw_node.output().count("largest frame admitted: 16777216 pixels") == 1, raw_node.output()[-3000:]
    before = client.settled_diagnostics()
    sent_before = client.sent
    for h, w in ((3000, 4000), (4000, 6000), (3000, 4000), (4000, 6000)):
        client.send_raw(np.zeros((h, w, 3), np.uint8))
        spin_until(lambda: False, 0.5)
    # A small frame after them: a loss shows as a gap in the sequence numbers only once a later
    # message arrives.
    client.first_result(lambda: client.send_raw(frame_bgr), timeout=120)
    diag = client.settled_diagnostics(timeout=120)
    sent = client.sent - sent_before
    delta = {k: int(diag[k]) - int(before[k]) for k in ("received", "rejected_messages", "lost_in_transport")}
    assert sum(delta.values()) == sent, (sent, delta)
    too_large = int(diag.get("rejected_too_large", 0)) - int(before.get("rejected_too_large", 0))
    print(f"sent {sent}: {delta}, too_large {too_large}")
    # The 4000x6000 frames (24 megapixels) are refused, not lost, wherever they arrived.
    assert too_large + delta["lost_in_transport"] >= 2 and too_large == delta["rejected_messages"], (too_large, delta)


def test_frames_faster_than_the_model_are_dropped_not_queued(ros_node, spin_until, raw_node, frame_bgr):
    """Latest frame wins, checked by counts and order, not speeds: bursts of frames published
    back to back (each burst takes a few ms to send, one inference takes tens of ms on any
    machine: the ratio, not the speed, is what holds on a busy machine)."""
    client = Client(ros_node, spin_until, raw_node)
    client.first_result(lambda: client.send_raw(frame_bgr))
    before = client.settled_diagnostics()
    rss_start = raw_node.rss_mb()
    bursts, per_burst = 5, 20
    sent_headers = []
    for _ in range(bursts):
        sent_headers += [client.send_raw(frame_bgr) for _ in range(per_burst)]
        client.settled_diagnostics()  # the node is idle again before the next burst
    diag = client.settled_diagnostics()
    rss_end = raw_node.rss_mb()
    received = int(diag["received"]) - int(before["received"])
    processed = int(diag["processed"]) - int(before["processed"])
    dropped = int(diag["dropped_frames"]) - int(before["dropped_frames"])
    # Every frame the node took in was published or dropped and counted (none left pending).
    assert received == processed + dropped and int(diag["inference_errors"]) == int(before["inference_errors"])
    # Not queued: of a burst the node publishes the frame in the network, the one being
    # published and the newest; a queue would publish them all.
    assert dropped > 0 and processed <= bursts * per_burst // 2, (received, processed, dropped)
    assert spin_until(lambda: sum(m.header in sent_headers for m in client.received["labels"]) >= processed, 20)
    answered = [m for m in client.received["labels"] if m.header in sent_headers]
    assert len(answered) == processed, (len(answered), processed)
    # Published in the order they came, each once.
    order = [int(m.header.frame_id.rsplit("_", 1)[1]) for m in answered]
    assert order == sorted(order) and len(set(order)) == len(order), order
    # Memory flat: no queue of frames builds up.
    assert rss_end - rss_start < 40, (rss_start, rss_end)
    assert raw_node.proc.poll() is None


def _set(ros_node, spin_until, node: NodeProcess, name: str, value):
    client = ros_node.create_client(SetParameters, node.topic("panoptic_node/set_parameters"))
    assert client.wait_for_service(timeout_sec=20)
    if isinstance(value, float):
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    elif isinstance(value, int):
        pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    future = client.call_async(SetParameters.Request(parameters=[ParameterMsg(name=name, value=pv)]))
    assert spin_until(future.done, 20)
    return future.result().results[0]


def _offline_predictor(**settings):
    """The offline Predictor for the node's default model: its stored settings, ``settings`` over them."""
    import dataclasses

    from pisr_ros.inference.model_files import find_model
    from pisr_ros.inference.predictor import Predictor

    predictor = Predictor.from_file(str(find_model("pd_light_pisr_residual_synth.pt")), threads=2)
    predictor.postprocess = dataclasses.replace(predictor.postprocess, **settings)
    return predictor


def test_the_node_starts_with_the_settings_tuned_into_its_model(ros_node, spin_until, raw_node):
    """No params file value set: each post-processing parameter is what `tune-postprocess`
    stored in the shipped model, not the library's default."""
    import torch
    from rcl_interfaces.srv import GetParameters

    from pisr_ros.inference.model_files import find_model
    from pisr_ros.postprocess.panoptic_deeplab import PanopticDeepLabSettings

    stored = torch.load(str(find_model("pd_light_pisr_residual_synth.pt")), weights_only=True)["postprocess"]["cpu"]
    defaults = PanopticDeepLabSettings()
    assert any(getattr(defaults, k) != v for k, v in stored.items())  # else this proves nothing
    client = ros_node.create_client(GetParameters, raw_node.topic("panoptic_node/get_parameters"))
    assert client.wait_for_service(timeout_sec=20)
    names = sorted(stored)
    future = client.call_async(GetParameters.Request(names=names))
    assert spin_until(future.done, 20)
    got = {n: (v.double_value if v.type == ParameterType.PARAMETER_DOUBLE else v.integer_value)
           for n, v in zip(names, future.result().values)}
    assert got == pytest.approx(stored), (got, stored)


def test_runtime_parameters_are_validated(ros_node, spin_until, raw_node, frame_bgr):
    assert not (r := _set(ros_node, spin_until, raw_node, "center_threshold", 2.0)).successful and "0.0" in r.reason
    assert not (r := _set(ros_node, spin_until, raw_node, "nms_kernel", 4)).successful and "odd" in r.reason
    assert not (r := _set(ros_node, spin_until, raw_node, "model", "other.pt")).successful and "read-only" in r.reason
    client = Client(ros_node, spin_until, raw_node)

    def node_things():
        header = client.first_result(lambda: client.send_raw(frame_bgr))
        return [(i.id, i.area) for i in client.result_for(header)[2].instances if i.is_thing]

    stored = _offline_predictor().postprocess.center_threshold
    before = node_things()
    assert _set(ros_node, spin_until, raw_node, "center_threshold", 0.99).successful
    after = node_things()
    # A trained heatmap can peak above 1, so no threshold in range promises "no instances": the
    # reference is what the offline Predictor finds with the same setting.
    offline = _offline_predictor(center_threshold=0.99)(frame_bgr, "bgr").segments
    assert after == [(s.id, s.area) for s in offline if s.is_thing]
    assert len(after) < len(before), (before, after)  # the frame tells the two settings apart
    assert _set(ros_node, spin_until, raw_node, "center_threshold", stored).successful


@pytest.mark.parametrize("params, message", [
    (["model:=missing_model.onnx"], "pisr-ros export"),
    (["center_threshold:=1.5"], "center_threshold"),
    (["backend:=tflite"], "backend must be one of"),
    (["input_size:=[100, 200]"], "multiples of 32"),
    (["pipeline:=1"], "expecting type 'BOOL'"),
])
def test_bad_start_parameters_fail_with_the_reason(params, message):
    args = [sys.executable, "-m", "pisr_ros.ros.panoptic_node", "--ros-args", "-r", "__ns:=/bad"]
    for p in params:
        args += ["-p", p]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def _bad_checkpoint(folder: Path, kind: str) -> Path:
    import torch

    shipped = Path(__file__).resolve().parents[2] / "models" / "pd_light_pisr_residual_synth.pt"
    path = folder / f"{kind}.pt"
    if kind == "truncated":
        data = shipped.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    else:
        ckpt = torch.load(shipped, weights_only=True)
        change = {"num_classes_7": {"num_classes": 7}, "input_size_0": {"input_size": [0, 0]}}[kind]
        torch.save(dict(ckpt, spec=dict(ckpt["spec"], **change)), path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("truncated", "cut short"), ("empty", "is empty"), ("random_bytes", "not a PyTorch file"),
    ("num_classes_7", "num_classes must be 19"), ("input_size_0", "input_size must be"),
])
def test_a_checkpoint_that_cannot_be_used_stops_the_start_in_one_line(tmp_path, kind, message):
    path = _bad_checkpoint(tmp_path, kind)
    done = subprocess.run([sys.executable, "-m", "pisr_ros.ros.panoptic_node", "--ros-args", "-r", "__ns:=/bad",
                           "-p", f"model:={path}"], capture_output=True, text=True, timeout=180)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert str(path) in lines[0] and message in lines[0], lines


def test_device_cuda_without_cuda_stops_the_start_in_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = subprocess.run([sys.executable, "-m", "pisr_ros.ros.panoptic_node", "--ros-args", "-r", "__ns:=/bad",
                           "-p", "device:=cuda"], capture_output=True, text=True, timeout=180)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert "CUDA is not available" in lines[0] and "device:=cpu" in lines[0], lines


def test_bench_node_reports_what_it_measured(tmp_path):
    """`pisr-ros bench-node` end to end (no network: --backend noop), briefly."""
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "pisr_ros.cli", "bench-node", "--backend", "noop", "--size", "240x320",
                           "--rate", "10", "--seconds", "2", "--warmup", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())["results"]
    # What it counted agrees with itself (how many frames a busy machine sends in 2 s varies).
    assert 0 < results["frames_answered"] <= results["frames_sent"]
    assert results["output_fps"] == pytest.approx(results["frames_answered"] / 2)
    assert results["latency_ms"]["median"] > 0 and results["node_dropped"] >= 0
    # Paths in the JSON are the repository's (the files are kept in docs/runs/, read elsewhere).
    meta = json.loads(out.read_text())["meta"]
    assert not Path(meta["dds_profile"]).is_absolute() and meta["dds_profile"].startswith("config/"), meta
