"""``pisr-ros bench-node``: panoptic_node end to end, the node in its own process.

This process publishes camera frames at a fixed rate and records the labels coming back; the
node runs as users run it (``panoptic_node`` with the package's params file). Reported: output
frames/s, latency from the frame's stamp to the labels' arrival here (median, p90), the node's
own stamp-to-publish latency and drop count from its /diagnostics. With ``--backend noop``
(no network) what remains is the node's overhead: decode, resize back, segments, publish.

This process shares the CPU with the node, so it is kept light: frames go out as serialized
CDR written once per frame (as a C++ camera driver would copy them, once), and of each labels
message only the header is read, without deserializing the 8 MB of labels.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np

from pisr_ros.errors import UsageError

_EPILOG = """\
examples:
  pisr-ros bench-node --size 1024x2048 --rate 30 --seconds 20            # the default model
  pisr-ros bench-node --model pd_light_base_synth.pt --seconds 20         # another one
  pisr-ros bench-node --backend noop --size 1024x2048 --rate 30 --seconds 20   # the node's overhead
  pisr-ros bench-node --also semantic instances      # as with an occupancy grid and an instance user
"""
# Outputs that --also subscribes besides the labels (a node publishes to nobody for free).
ALSO = ("semantic", "instances", "overlay")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--model", default="pd_light_pisr_residual_synth.pt", help="the node's model parameter")
    parser.add_argument("--backend", default="auto", help="the node's backend parameter (noop: no network)")
    parser.add_argument("--size", default="1024x2048", metavar="HxW", help="camera frame size (default: 1024x2048)")
    parser.add_argument("--rate", type=float, default=30.0, metavar="HZ", help="camera rate (default: 30)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds (default: 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds sent before measuring (default: 5)")
    parser.add_argument("--pipeline", choices=("on", "off"), default="on",
                        help="the node's pipeline parameter (default: on, as the node's default)")
    parser.add_argument("--transport", choices=("raw", "compressed"), default="raw")
    parser.add_argument("--reliability", choices=("best_effort", "reliable"), default="best_effort",
                        help="QoS of the camera publisher and the node's subscription (default: best_effort)")
    parser.add_argument("--also", nargs="+", choices=ALSO, default=[], metavar="OUTPUT",
                        help="subscribe these outputs too (" + ", ".join(ALSO) + "); by default only the "
                             "labels are subscribed, and the node makes no overlay")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")


def _repo_relative(path: str) -> str:
    """``path`` relative to the repository when it lies inside it: the JSON is kept in docs/runs/,
    where a path of one checkout means nothing to the reader (test_docs refuses absolute paths)."""
    if not path or not os.path.isabs(path):
        return path
    root = Path(__file__).resolve().parents[2]
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return path


def main(args: argparse.Namespace) -> int:
    import cv2
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header

    from pisr_ros.data.synth import render_scene
    from pisr_ros.arguments import parse_size
    from pisr_ros.msg import PanopticInstanceArray
    from pisr_ros.ros.image_cdr import image_cdr, parse_image
    from pisr_ros.ros.node_process import NodeProcess

    size = parse_size(args.size, "--size")
    if args.rate <= 0 or args.seconds <= 0:
        raise UsageError("--rate and --seconds must be positive")
    ns = f"/bench_{uuid.uuid4().hex[:6]}"
    node = NodeProcess("panoptic_node", ns, {"model": args.model, "backend": args.backend,
                                             "input_transport": args.transport, "reliability": args.reliability,
                                             "pipeline": "true" if args.pipeline == "on" else "false"})
    rclpy.init()
    ros = rclpy.create_node("bench_node_client")
    arrivals: dict[tuple[int, int], float] = {}
    diagnostics: list[dict] = []

    def on_labels(serialized: bytes):
        stamp = parse_image(serialized).header.stamp
        arrivals[(stamp.sec, stamp.nanosec)] = ros.get_clock().now().nanoseconds * 1e-9

    def on_diag(msg):
        for st in msg.status:
            if st.name.startswith(f"{ns}/panoptic_node"):
                diagnostics.append({kv.key: kv.value for kv in st.values})

    camera_qos = qos_profile_sensor_data if args.reliability == "best_effort" else QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE)
    ros.create_subscription(Image, f"{ns}/panoptic/labels", on_labels,
                            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE), raw=True)
    ros.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    # Extra outputs are received serialized and only counted: the bench pays no deserialization.
    also_arrivals: dict[str, list[float]] = {name: [] for name in args.also}
    for name in args.also:
        def count(_serialized: bytes, name=name):
            also_arrivals[name].append(time.monotonic())
        ros.create_subscription(PanopticInstanceArray if name == "instances" else Image, f"{ns}/panoptic/{name}",
                                count, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE), raw=True)
    frames = [np.ascontiguousarray(render_scene(11, "val", i, size)[0][..., ::-1]) for i in range(4)]
    if args.transport == "compressed":
        pub = ros.create_publisher(CompressedImage, f"{ns}/image_raw/compressed", camera_qos)
        payloads = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
    else:
        pub = ros.create_publisher(Image, f"{ns}/image_raw", camera_qos)

    def publish(i: int) -> tuple[int, int]:
        """Frame i (cycling) stamped now; its stamp."""
        header = Header(frame_id="camera_optical_frame")
        header.stamp = ros.get_clock().now().to_msg()
        if args.transport == "compressed":
            msg = CompressedImage(header=header, format="jpeg")
            msg.data = payloads[i % len(payloads)]
        else:
            msg = image_cdr(frames[i % len(frames)], "bgr8", header)
        pub.publish(msg)
        return header.stamp.sec, header.stamp.nanosec
    try:
        # Wait until the node answers (model loading, discovery).
        deadline = time.monotonic() + 120
        while not arrivals:
            if not node.running() or time.monotonic() > deadline:
                raise UsageError(f"panoptic_node did not come up:\n{node.output()[-3000:]}")
            publish(0)
            rclpy.spin_once(ros, timeout_sec=0.5)
        sent: list[tuple[tuple[int, int], float]] = []
        period = 1.0 / args.rate
        start = time.monotonic()
        measure_from = start + args.warmup
        end = measure_from + args.seconds
        next_t = start
        i = 0
        diag_start = None
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_t:
                stamp = publish(i)
                if now >= measure_from:
                    if diag_start is None:
                        diag_start = dict(diagnostics[-1]) if diagnostics else {}
                    sent.append((stamp, now))
                i += 1
                next_t += period
            rclpy.spin_once(ros, timeout_sec=max(0.0, min(next_t - time.monotonic(), 0.01)))
        settle = time.monotonic() + 3.0
        while time.monotonic() < settle:
            rclpy.spin_once(ros, timeout_sec=0.05)
        diag_end = dict(diagnostics[-1]) if diagnostics else {}
    finally:
        node.stop()
        ros.destroy_node()
        rclpy.try_shutdown()

    latencies = [arrivals[s] - (s[0] + s[1] * 1e-9) for s, _ in sent if s in arrivals]
    answered = len(latencies)
    results = {
        "frames_sent": len(sent), "frames_answered": answered,
        "output_fps": answered / args.seconds,
        "latency_ms": {"median": float(np.median(latencies) * 1e3) if latencies else None,
                       "p90": float(np.percentile(latencies, 90) * 1e3) if latencies else None},
        "node_latency_ms": {"p50": float(diag_end.get("latency_p50_ms", "nan")),
                            "p90": float(diag_end.get("latency_p90_ms", "nan"))},
        "in_node_ms": {"p50": float(diag_end.get("in_node_p50_ms", "nan")),
                       "p90": float(diag_end.get("in_node_p90_ms", "nan"))},
        "node_stages_p50_ms": {k[len("stage_"):-len("_p50_ms")]: float(v) for k, v in diag_end.items()
                               if k.startswith("stage_")},
        "node_dropped": int(diag_end.get("dropped_frames", 0)) - int((diag_start or {}).get("dropped_frames", 0)),
        # Messages of each extra output that arrived from the measured window's start on.
        "also_received": {name: sum(t >= measure_from for t in times) for name, times in also_arrivals.items()},
    }
    meta = {"date": time.strftime("%Y-%m-%d"), "size": list(size), "rate_hz": args.rate, "seconds": args.seconds,
            "backend": diag_end.get("backend", args.backend),
            "model": _repo_relative(diag_end.get("model", args.model)),
            "transport": args.transport, "reliability": args.reliability, "also": list(args.also),
            "pipeline": args.pipeline == "on", "cpus": os.cpu_count(),
            "dds_profile": _repo_relative(os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", ""))}
    lat = results["latency_ms"]
    print(f"{meta['backend']} {args.model} {size[0]}x{size[1]} {args.transport} at {args.rate:g} Hz, pipeline "
          f"{args.pipeline}, for "
          f"{args.seconds:g} s: {results['output_fps']:.1f} frames/s out ({answered}/{len(sent)} answered, "
          f"{results['node_dropped']} dropped by the node); latency stamp->labels here median "
          f"{lat['median'] or float('nan'):.1f} ms, p90 {lat['p90'] or float('nan'):.1f} ms; node stamp->publish "
          f"p50 {results['node_latency_ms']['p50']:.1f} ms, p90 {results['node_latency_ms']['p90']:.1f} ms; "
          f"in the node (arrival->publish) p50 {results['in_node_ms']['p50']:.1f} ms, p90 {results['in_node_ms']['p90']:.1f} ms")
    if args.also:
        print("also received: " + ", ".join(f"{k} {v}" for k, v in results["also_received"].items()))
    print("in the node, p50 ms per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in results["node_stages_p50_ms"].items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 0

