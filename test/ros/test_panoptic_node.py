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

    def _on_diagnostics(self, msg):
        for st in msg.status:
            if st.name.startswith(f"{self.node.ns}/panoptic_node"):
                self.diagnostics.append({kv.key: kv.value for kv in st.values})

    def header(self) -> Header:
        self.sent += 1
        h = Header(frame_id=f"camera_optical_{self.sent}")
        h.stamp = self.ros.get_clock().now().to_msg()
        return h

    def send_raw(self, bgr):
        header = self.header()
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
    assert int(client.latest_diagnostics()["overlays_published"]) == before  # nobody listening: none made
    overlays = []
    sub = ros_node.create_subscription(Image, raw_node.topic("panoptic/overlay"), overlays.append, RELIABLE)
    deadline = time.monotonic() + 30
    while not overlays and time.monotonic() < deadline:
        client.send_raw(frame_bgr)
        spin_until(lambda: bool(overlays), 1.0)
    assert overlays, "no overlay while subscribed"
    o = overlays[0]
    assert (o.height, o.width, o.encoding) == (*CAMERA, "bgr8")
    assert any(h.header == o.header for h in client.received["labels"]) or o.header.frame_id.startswith("camera_optical_")
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
    rejected_before = int(raw.latest_diagnostics()["rejected_messages"])

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
    rounds = 20
    for _ in range(rounds):
        for msg in malformed:
            raw.pub.publish(msg)
            spin_until(lambda: False, 0.005)
    want = rejected_before + rounds * len(malformed)
    # Best-effort delivery may lose a few of a burst; every one that arrives must be counted.
    diag = raw.latest_diagnostics(lambda d: int(d["rejected_messages"]) >= want * 0.9, timeout=20)
    for reason in ("encoding", "step", "truncated", "empty", "too_large"):
        assert int(diag[f"rejected_{reason}"]) >= rounds * 0.9, (reason, diag)
    # Corrupt JPEGs: valid header fields, data that does not decode; sent slowly so that each
    # reaches inference (superseded ones would count as dropped instead).
    jpeg_before = int(jpeg.latest_diagnostics()["rejected_messages"])
    good = cv2.imencode(".jpg", frame_bgr)[1].tobytes()
    for i in range(5):
        msg = CompressedImage(header=jpeg.header(), format="jpeg")
        msg.data = good[:200] + bytes(300)  # a JPEG header, then garbage
        jpeg.pub.publish(msg)
        spin_until(lambda: False, 0.3)
    diag = jpeg.latest_diagnostics(lambda d: int(d.get("rejected_corrupt", 0)) >= 4, timeout=20)
    assert int(diag["rejected_messages"]) >= jpeg_before + 4
    # Still alive and answering, on both transports.
    assert raw_node.proc.poll() is None and compressed_node.proc.poll() is None
    raw.result_for(raw.send_raw(frame_bgr))
    jpeg.result_for(jpeg.send_jpeg(frame_bgr))
    # Logged, but throttled: far fewer warnings than rejected messages.
    warnings = raw_node.output().count("rejected a message")
    assert 1 <= warnings < rounds * len(malformed) / 4


def test_frames_faster_than_the_model_are_dropped_latency_bounded_memory_flat(ros_node, spin_until, raw_node, frame_bgr):
    client = Client(ros_node, spin_until, raw_node)
    client.first_result(lambda: client.send_raw(frame_bgr))
    # The model's rate on this machine, from one-at-a-time frames.
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        client.result_for(client.send_raw(frame_bgr))
        times.append(time.monotonic() - t0)
    per_frame = float(np.median(times))
    before = int(client.latest_diagnostics()["dropped_frames"])
    rss_start = raw_node.rss_mb()
    period = per_frame / 4  # 4x the model's rate
    sent_headers = []
    t_end = time.monotonic() + max(6.0, 30 * per_frame)
    while time.monotonic() < t_end:
        sent_headers.append(client.send_raw(frame_bgr))
        spin_until(lambda: False, period)
    spin_until(lambda: False, 3 * per_frame + 1.0)
    rss_end = raw_node.rss_mb()
    diag = client.latest_diagnostics()
    dropped = int(diag["dropped_frames"]) - before
    answered = [m for m in client.received["labels"] if any(m.header == h for h in sent_headers)]
    assert dropped > 0 and len(answered) < len(sent_headers), (dropped, len(answered), len(sent_headers))
    # Two frames in flight (network, publishing), published in the order they came.
    order = [int(m.header.frame_id.rsplit("_", 1)[1]) for m in answered]
    assert order == sorted(order) and len(set(order)) == len(order), order
    # Bounded latency: never a backlog, so p90 stays within a few frame times (not growing with the run).
    assert float(diag["latency_p90_ms"]) / 1e3 < 4 * per_frame + 0.5, (diag["latency_p90_ms"], per_frame)
    # Memory flat: no queue of frames builds up (a 256x512 frame is 0.4 MB; 30 of them queued would show).
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


def test_runtime_parameters_are_validated(ros_node, spin_until, raw_node, frame_bgr):
    assert not (r := _set(ros_node, spin_until, raw_node, "center_threshold", 2.0)).successful and "0.0" in r.reason
    assert not (r := _set(ros_node, spin_until, raw_node, "nms_kernel", 4)).successful and "odd" in r.reason
    assert not (r := _set(ros_node, spin_until, raw_node, "model", "other.pt")).successful and "read-only" in r.reason
    assert _set(ros_node, spin_until, raw_node, "center_threshold", 0.99).successful
    # A threshold no center reaches: no thing instances any more.
    client = Client(ros_node, spin_until, raw_node)
    header = client.first_result(lambda: client.send_raw(frame_bgr))
    _, _, instances = client.result_for(header)
    assert not any(i.is_thing for i in instances.instances)
    assert _set(ros_node, spin_until, raw_node, "center_threshold", 0.1).successful


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


def test_bench_node_reports_what_it_measured(tmp_path):
    """`pisr-ros bench-node` end to end (no network: --backend noop), briefly."""
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "pisr_ros.cli", "bench-node", "--backend", "noop", "--size", "240x320",
                           "--rate", "10", "--seconds", "2", "--warmup", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())["results"]
    assert results["frames_sent"] >= 15 and results["frames_answered"] > 0
    assert results["latency_ms"]["median"] > 0 and results["output_fps"] > 0
