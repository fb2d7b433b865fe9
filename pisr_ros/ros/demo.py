"""The main job (`make demo`): synthetic street scenes as a rosbag, played live through
panoptic_node and occupancy_grid_node, scored against their labels, and the same bag scored
offline as the reference.

    python -m pisr_ros.ros.demo --out out/demo

Writes into --out: data/ (the scenes, Cityscapes layout), bag/, live/ (replay-eval --live
report, overlays), offline/ (replay-eval --offline report), grid.png (the occupancy grid after
the last frame) and summary.md (live against offline, frames/s, latency, drops).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from pisr_ros import cli
from pisr_ros.errors import UsageError
from pisr_ros.inference.model_files import find_model, read_model_info
from pisr_ros.ros.node_process import NodeProcess

CAMERA = "/front"
# The synthetic scenes' camera (pisr_ros.data.synth.Camera): level, at 1.1-1.7 m, focal length
# 0.9-1.25 x width, horizon at 36-50 % of the height. The grid uses the middle of those ranges;
# the projection of a scene drawn with other values is off by up to ~25 % in range.
NOMINAL_FOCAL = 1.075
NOMINAL_HORIZON = 0.43
CONNECT_TIMEOUT_S = 120.0  # model loading and discovery, on a busy 2-core machine


def camera_info(width: int, height: int):
    from sensor_msgs.msg import CameraInfo

    f = NOMINAL_FOCAL * width
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.header.frame_id = "camera_optical_frame"
    info.k = [f, 0.0, width / 2, 0.0, f, NOMINAL_HORIZON * height, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, width / 2, 0.0, 0.0, f, NOMINAL_HORIZON * height, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class GridWatcher:
    """A node of its own (own context, own thread): publishes the camera's CameraInfo, keeps
    the latest grid and semantic grid that occupancy_grid_node publishes, and the two nodes'
    latest /diagnostics values."""

    def __init__(self, width: int, height: int):
        import rclpy
        from nav_msgs.msg import OccupancyGrid
        from rclpy.executors import SingleThreadedExecutor
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("demo_grid_watcher", context=self.context)
        self.grid = self.semantic = None
        self.grids = 0
        self.diagnostics: dict[str, dict[str, str]] = {}  # node name -> its latest values
        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.info_pub = pub = self.node.create_publisher(CameraInfo, f"{CAMERA}/camera_info", qos)
        info = camera_info(width, height)

        def tick():
            info.header.stamp = self.node.get_clock().now().to_msg()
            pub.publish(info)

        self.node.create_timer(0.2, tick)
        self.node.create_subscription(OccupancyGrid, f"{CAMERA}/panoptic/grid", self._on_grid, qos)
        self.node.create_subscription(Image, f"{CAMERA}/panoptic/semantic_grid", self._on_semantic, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _on_grid(self, msg):
        self.grid = msg
        self.grids += 1

    def _on_semantic(self, msg):
        self.semantic = msg

    def _on_diagnostics(self, msg):
        for st in msg.status:
            self.diagnostics[st.name.split(":")[0]] = {kv.key: kv.value for kv in st.values}

    def _count(self, node: str, key: str) -> int:
        return int(self.diagnostics.get(f"{CAMERA}/{node}", {}).get(key, 0))

    def connected(self) -> bool:
        """panoptic_node's semantic labels reach occupancy_grid_node, and our CameraInfo does.

        Both ends are asked (through their /diagnostics), because both must have matched the
        other: a best-effort reader takes nothing from a writer it has not matched, and a writer
        sends nothing to a reader it has not. A 3-frame bag at --rate max is over within a second,
        and on this machine discovery between two nodes that started seconds apart took longer
        than that in most runs (the grid then saw no frame at all)."""
        return (self._count("panoptic_node", "subscribers_semantic") > 0
                and self._count("occupancy_grid_node", "input_publishers") > 0
                and self.info_pub.get_subscription_count() > 0)

    def wait_until_connected(self, timeout: float, panoptic: NodeProcess) -> bool:
        """False when the time is up or panoptic_node has exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and panoptic.running():
            if self.connected():
                time.sleep(0.5)  # a few CameraInfo ticks reach the grid node before the first frame
                return True
            time.sleep(0.1)
        return False

    def _spin(self):
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        import rclpy

        # The spin thread ends before the context does: a shutdown while spin_once waits raises
        # ExternalShutdownException in that thread, which Python prints as a traceback.
        self._stop.set()
        self.thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def draw_grid(grid, semantic, path: Path) -> None:
    """Occupancy (white free, black occupied, grey unknown) and the semantic grid, x forward up."""
    from matplotlib.figure import Figure

    from pisr_ros.taxonomy import TRAIN_COLORS

    info = grid.info
    occ = np.asarray(grid.data, np.int16).reshape(info.height, info.width)
    # Three levels: one ego frame moves a cell only to 40 (free) or 70 (occupied), which a grey
    # ramp would show as almost the grey of unknown.
    shade = np.select([occ < 0, occ < 50, occ > 50], [np.uint8(150), np.uint8(255), np.uint8(0)], np.uint8(200))
    panels = [("occupancy (white free, black occupied, grey unknown)", np.stack([shade] * 3, -1))]
    if semantic is not None:
        cls = np.frombuffer(semantic.data, np.uint8).reshape(semantic.height, semantic.step)[:, : semantic.width]
        rgb = np.where((cls == 255)[..., None], 160, TRAIN_COLORS[cls]).astype(np.uint8)
        panels.append(("semantic grid (class per cell)", rgb))
    x0, y0, res = info.origin.position.x, info.origin.position.y, info.resolution
    # Rows of OccupancyGrid data go along +y, columns along +x; show x (forward) up, y (left) left.
    extent = [y0 + info.height * res, y0, x0, x0 + info.width * res]
    fig = Figure(figsize=(6.0 * len(panels), 6.4))
    for ax, (title, img) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        ax.imshow(np.transpose(img, (1, 0, 2))[::-1, ::-1], extent=extent, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("y in base_link (m, left)")
        ax.set_ylabel("x in base_link (m, forward)")
        ax.plot(0, 0, marker="^", color="red")
    fig.suptitle("occupancy_grid_node after the demo's last frame (flat ground, nominal synthetic camera)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def summary(out: Path, live: dict, offline: dict, grid_png: str | None) -> str:
    def row(name, fn):
        return f"| {name} | {fn(live)} | {fn(offline)} |"

    def pct(v):
        return f"{100 * v:.2f}" if v is not None else "-"

    pan = ["All", "Things", "Stuff"]
    lines = ["# pisr_ros demo", "",
             "Synthetic street scenes as a rosbag, played through `panoptic_node` (live, over ROS 2) and scored",
             "against their labels; the same bag through the Predictor without ROS (offline) is the reference.", "",
             "| | live (panoptic_node) | offline (Predictor) |", "|---|---|---|"]
    for part in pan:
        lines.append(row(f"PQ {part}", lambda d, p=part: pct(d["panoptic"][p]["pq"])))
    lines += [row("SQ All", lambda d: pct(d["panoptic"]["All"]["sq"])),
              row("RQ All", lambda d: pct(d["panoptic"]["All"]["rq"])),
              row("mIoU (classes of the panoptic segments)", lambda d: pct(d["semantic"]["averageScoreClasses"])),
              row("frames sent / received / dropped", lambda d: f"{d['counts']['sent']} / {d['counts']['received']} / {d['counts']['dropped']}"),
              row("frames/s", lambda d: f"{d['throughput_fps']:.1f}" if d.get("throughput_fps") else "-"),
              row("latency p50 / p90 (ms)", lambda d: f"{1e3 * d['latency']['p50_s']:.0f} / {1e3 * d['latency']['p90_s']:.0f}"
                  if d["latency"]["n"] else "-")]
    same = all(abs(live["panoptic"][p][k] - offline["panoptic"][p][k]) < 1e-9 for p in pan for k in ("pq", "sq", "rq"))
    lines += ["", f"Live and offline scores are {'**identical**' if same else '**different**'}"
              + (" (nothing was dropped; both ran the same model and post-processing)." if same else
                 " (see the two reports: dropped frames or another backend/post-processing)."), "",
              "Live latency is from sending a frame to receiving its labels (DDS both ways, the node's decode,",
              "inference and publish); offline latency is the Predictor call alone. Frames were sent as fast",
              "as the node answered (`--rate max`).", "",
              "- live report: [live/report.md](live/report.md), overlays in [live/overlays/](live/overlays/)",
              "- offline report: [offline/report.md](offline/report.md)"]
    if grid_png:
        lines += [f"- occupancy grid after the last frame: [{grid_png}]({grid_png}) (flat ground, the synthetic "
                  "scenes' nominal camera: ranges are approximate)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pisr_ros.ros.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--frames", type=int, default=20, help="synthetic scenes (default: 20)")
    parser.add_argument("--size", default="1024x2048", metavar="HxW")
    parser.add_argument("--model", default="models/pd_light_pisr_residual_synth.pt",
                        help="checkpoint (.pt) or ONNX file of either model family (default: the shipped PD+PISR)")
    args = parser.parse_args(argv)
    try:  # before minutes of scene making, not after
        read_model_info(str(find_model(args.model)))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    h, w = (int(v) for v in args.size.split("x"))
    t0 = time.monotonic()

    def step(text):
        print(f"\n== {text} ({time.monotonic() - t0:.0f} s)", flush=True)

    step(f"{args.frames} synthetic scenes at {args.size}")
    if cli.main(["synth", "--out", str(out / "data"), "--split", "val", "--num", str(args.frames), "--size", args.size,
                 "--seed", "2026", "--overwrite", "--contact-sheet", str(out / "contact_sheet.png")]):
        return 1
    step("the scenes as a rosbag")
    if cli.main(["make-bag", "--images", str(out / "data" / "leftImg8bit" / "val"), "--out", str(out / "bag"),
                 "--topic", f"{CAMERA}/image_raw", "--rate", "10", "--force"]):
        return 1
    step("occupancy_grid_node and panoptic_node, then the bag live through them")
    grid_node = NodeProcess("occupancy_grid_node", CAMERA)
    # Started here rather than by replay-eval, so that the bag plays only once the two nodes have
    # found each other; replay-eval attaches to it. Its settings are the ones replay-eval gives
    # a node it starts: the model's tuned post-processing, loss-free input.
    panoptic = NodeProcess("panoptic_node", CAMERA, {"model": str(find_model(args.model)), "input_transport": "raw",
                                                     "reliability": "reliable"})
    watcher = GridWatcher(w, h)
    try:
        if not watcher.wait_until_connected(CONNECT_TIMEOUT_S, panoptic) and not panoptic.running():
            print(f"error: panoptic_node exited (status {panoptic.proc.returncode}):\n{panoptic.output()[-2000:]}",
                  file=sys.stderr)
            return 1
        if not watcher.connected():
            print(f"note: panoptic_node and occupancy_grid_node were not connected within {CONNECT_TIMEOUT_S:.0f} s; "
                  f"the grid may be missing (their diagnostics: {watcher.diagnostics})", file=sys.stderr)
        code = cli.main(["replay-eval", "--live", "--attach", "--rate", "max", "--bag", str(out / "bag"),
                         "--gt", str(out / "data"), "--camera", CAMERA, "--overlays", "3", "--out", str(out / "live")])
        deadline = time.monotonic() + 10
        while watcher.grid is None and time.monotonic() < deadline:
            time.sleep(0.1)
        grid_png = None
        if watcher.grid is not None:
            draw_grid(watcher.grid, watcher.semantic, out / "grid.png")
            grid_png = "grid.png"
        else:
            print("note: no occupancy grid arrived; grid.png not written. occupancy_grid_node's log:\n"
                  + grid_node.output()[-1500:], file=sys.stderr)
    finally:
        watcher.close()
        panoptic.stop()
        grid_node.stop()
    if code:
        return code
    step("the same bag offline (the Predictor, no ROS): the reference")
    if cli.main(["replay-eval", "--offline", "--bag", str(out / "bag"), "--gt", str(out / "data"), "--camera", CAMERA,
                 "--model", args.model, "--out", str(out / "offline")]):
        return 1
    live = json.loads((out / "live" / "metrics.json").read_text())
    offline = json.loads((out / "offline" / "metrics.json").read_text())
    text = summary(out, live, offline, grid_png)
    (out / "summary.md").write_text(text)
    step(f"done: {out / 'summary.md'}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
