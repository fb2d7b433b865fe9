"""A synthetic drive through a straight street, fused into the odometry window, drawn next to the truth.

    pisr-ros drive-demo --out docs/occupancy_grid_drive.png

The street (road, sidewalks, terrain, buildings, poles, parked cars and one oncoming car) is
known in metres; each frame is rendered by ray casting from a camera on a robot that drives
forward with odometry, and fed to the same :class:`GridBuilder` the node uses. Deterministic:
the same picture every run.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from pisr_ros.errors import UsageError

from pisr_ros.grid.camera import CameraModel
from pisr_ros.grid.config import GridConfig, config_from_params
from pisr_ros.grid.pipeline import GridBuilder, Pose2D
from pisr_ros.grid.render import Box, ground_truth, render_camera
from pisr_ros.taxonomy import CLASS_NAMES, TRAIN_COLORS, VOID_TRAIN_ID, by_name

ROAD, SIDEWALK, TERRAIN = (by_name(n).train_id for n in ("road", "sidewalk", "terrain"))
CAR, BUILDING, POLE, VEGETATION = (by_name(n).train_id for n in ("car", "building", "pole", "vegetation"))
HALF_ROAD, SIDEWALK_OUT = 5.0, 7.5  # metres from the street's centre line
FRAMES, STEP, RATE = 30, 1.0, 10.0  # frames, metres per frame, frames per second
# Half Cityscapes' camera (1024x2048, fx = 2262 px, 1.22 m up) at half resolution, to keep the
# rendering quick; the grid code does not care about the size.
INTRINSICS = [[1131.0, 0.0, 511.5], [0.0, 1131.0, 255.5], [0.0, 0.0, 1.0]]
WIDTH, HEIGHT = 1024, 512
CAMERA_PARAMS = {"camera.x": 1.7, "camera.y": 0.0, "camera.z": 1.22, "camera.pitch": 0.03}


def street_ground(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ay = np.abs(y)
    out = np.where(ay < HALF_ROAD, ROAD, np.where(ay < SIDEWALK_OUT, SIDEWALK, TERRAIN)).astype(np.uint8)
    return out


def street_boxes(frame: int = FRAMES - 1) -> list[Box]:
    """The street's objects when frame ``frame`` is taken; only the oncoming car moves."""
    boxes = []
    for x0, x1 in ((-20.0, 4.0), (9.0, 22.0), (30.0, 52.0), (58.0, 80.0)):  # left building row, with gaps
        boxes.append(Box(x0, x1, 9.5, 15.0, 12.0, BUILDING))
    for x0, x1 in ((-20.0, 14.0), (20.0, 44.0), (49.0, 80.0)):  # right row
        boxes.append(Box(x0, x1, -15.0, -9.0, 9.0, BUILDING))
    for x in (5.0, 20.0, 35.0, 50.0):
        boxes.append(Box(x, x + 0.2, 5.9, 6.1, 5.0, POLE))
        boxes.append(Box(x + 7.0, x + 7.2, -6.1, -5.9, 5.0, POLE))
    boxes.append(Box(26.0, 28.0, 8.0, 9.5, 3.0, VEGETATION))  # a hedge in a gap of the left row
    for x in (14.0, 24.0, 41.0):  # parked cars along the right kerb
        boxes.append(Box(x, x + 4.4, -4.8, -3.0, 1.45, CAR))
    boxes.append(Box(36.0, 40.5, 3.0, 4.8, 1.5, CAR))  # parked on the left
    x = 62.0 - 0.8 * frame  # oncoming in the left lane at 8 m/s: its trail fades as things do
    boxes.append(Box(x, x + 4.5, 0.8, 2.6, 1.5, CAR))
    return boxes


def robot_pose(frame: int) -> Pose2D:
    """Forward along the right lane with a gentle weave, so the window turns as well as moves."""
    return Pose2D(STEP * frame, -1.5 + 0.3 * math.sin(frame / 6.0), 0.04 * math.cos(frame / 6.0))


def demo_config() -> GridConfig:
    return config_from_params({**CAMERA_PARAMS, "use_odom": True})


def demo_camera(config: GridConfig) -> CameraModel:
    return CameraModel(INTRINSICS, [], "", WIDTH, HEIGHT, config.pose)


def drive(frames: int = FRAMES):
    """Render and fuse the drive; returns the builder, its last frame and the last label image."""
    config = demo_config()
    camera = demo_camera(config)
    builder = GridBuilder(config)
    builder.set_camera(camera)
    out = labels = None
    for f in range(frames):
        pose = robot_pose(f)
        # Boxes wholly behind the robot cannot be in view of a forward camera: skip them to save time.
        boxes = [b for b in street_boxes(f) if b.x1 > pose.x]
        labels = render_camera(camera, boxes, street_ground, pose.x, pose.y, pose.yaw)
        out = builder.process(labels, f / RATE, pose)
    return builder, out, labels


def _colour(classes: np.ndarray) -> np.ndarray:
    rgb = TRAIN_COLORS[classes].astype(np.float32) / 255.0
    rgb[classes == VOID_TRAIN_ID] = 0.55  # unknown: mid grey
    return rgb


def draw(out_path: Path, frames: int = FRAMES) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    builder, frame, labels = drive(frames)
    layout = frame.layout
    extent = (layout.origin_x, layout.origin_x + layout.width * layout.resolution,
              layout.origin_y, layout.origin_y + layout.height * layout.resolution)
    truth = ground_truth(street_boxes(frames - 1), street_ground, layout)
    occ = frame.occupancy.astype(np.float32)
    occ_img = np.where(occ < 0, 0.55, 1.0 - occ / 100.0)  # white free, black occupied, grey unknown

    fig = plt.figure(figsize=(15, 9.6), dpi=80)
    grid = fig.add_gridspec(2, 3, height_ratios=(1.0, 1.6))
    ax = fig.add_subplot(grid[0, :])
    ax.imshow(TRAIN_COLORS[labels])
    ax.set_title(f"last label image ({labels.shape[1]}x{labels.shape[0]}, rendered from the known street)")
    ax.axis("off")
    pose = robot_pose(frames - 1)
    panels = (
        ("ground truth (top-down classes)", _colour(truth)),
        (f"occupancy after {frames} frames (white free, black occupied, grey unknown)", np.dstack([occ_img] * 3)),
        ("semantic grid (argmax class; grey unknown)", _colour(frame.semantic)),
    )
    for k, (title, img) in enumerate(panels):
        ax = fig.add_subplot(grid[1, k])
        ax.imshow(img, origin="lower", extent=extent, interpolation="nearest")
        ax.plot([pose.x], [pose.y], marker=(3, 0, math.degrees(pose.yaw) - 90), color="tab:red", markersize=12)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x in odom (m)")
        ax.set_ylabel("y in odom (m)")
    shown = sorted(set(np.unique(truth)) | set(np.unique(frame.semantic)) - {VOID_TRAIN_ID})
    fig.legend(handles=[Patch(color=TRAIN_COLORS[c] / 255.0, label=CLASS_NAMES[c]) for c in shown],
               loc="lower center", ncol=len(shown), fontsize=9, frameon=False)
    fig.suptitle("pisr_ros occupancy grid: synthetic drive, camera-only flat-ground IPM, odometry window "
                 "(red marker: robot)", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="PNG", help="picture to write")
    parser.add_argument("--frames", type=int, default=FRAMES, metavar="N", help=f"frames to drive (default {FRAMES})")


def main(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise UsageError("--frames must be >= 1")
    start = time.perf_counter()
    draw(args.out, args.frames)
    print(f"wrote {args.out} ({args.frames} frames, {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    from pisr_ros import cli

    sys.exit(cli.main(["drive-demo", *sys.argv[1:]]))
