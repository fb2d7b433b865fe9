"""Grid update time for one 1024x2048 label image into a 40 m x 40 m grid at 0.1 m (not a test).

    pisr-ros bench-grid [--reps 50]

The label image is the demo street rendered through a Cityscapes-like camera. Times, per frame:
``observe`` (the inverse sensor model alone), ``ego`` (a whole single-frame ego grid: observe,
fuse, OccupancyGrid data and class image) and ``odom`` (the same fused into a moving odometry
window, the robot advancing 0.3 m and turning a little per frame). The cell -> pixel lookup is
built once, as the node does per CameraInfo, and timed separately.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time

import numpy as np

from pisr_ros.errors import UsageError

from pisr_ros.grid.camera import CameraModel
from pisr_ros.grid.config import config_from_params
from pisr_ros.tools.drive_demo import street_boxes, street_ground
from pisr_ros.grid.inverse_sensor import build_lookup, observe
from pisr_ros.grid.pipeline import GridBuilder, Pose2D
from pisr_ros.grid.render import render_camera

# Cityscapes' camera (aachen calibration, rounded) at full resolution.
INTRINSICS = [[2262.5, 0.0, 1096.9], [0.0, 2265.3, 513.1], [0.0, 0.0, 1.0]]
SIZE = (1024, 2048)
CAMERA = {"camera.x": 1.7, "camera.y": 0.1, "camera.z": 1.22, "camera.pitch": 0.04}


def _stats(times: list[float]) -> str:
    t = np.asarray(times) * 1e3
    return f"median {np.median(t):6.2f} ms   p90 {np.percentile(t, 90):6.2f} ms   (n = {t.size})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reps", type=int, default=50, metavar="N", help="timed repetitions (default 50)")


def main(args: argparse.Namespace) -> int:
    if args.reps < 1:
        raise UsageError("--reps must be >= 1")

    config = config_from_params({**CAMERA, "resolution": 0.1, "size_x": 40.0, "size_y": 40.0, "max_range": 30.0})
    camera = CameraModel(INTRINSICS, [], "", SIZE[1], SIZE[0], config.pose)
    print(f"{platform.node()}: {platform.processor() or platform.machine()}, "
          f"{len(__import__('os').sched_getaffinity(0))} CPUs, numpy {np.__version__}")
    print("rendering the 1024x2048 label image ...", flush=True)
    labels = render_camera(camera, street_boxes(0), street_ground, 0.0, -1.5, 0.0)

    start = time.perf_counter()
    lookup = build_lookup(camera, config.layout(), config["max_range"])
    print(f"lookup (once per CameraInfo): {(time.perf_counter() - start) * 1e3:.1f} ms, "
          f"{lookup.cells.size} of {config.layout().size} cells in view")

    effects = config.effect_lut()
    for _ in range(3):
        observe(labels, lookup, effects)  # warm caches and allocator
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        observe(labels, lookup, effects)
        times.append(time.perf_counter() - t0)
    print(f"observe: {_stats(times)}")

    for use_odom in (False, True):
        builder = GridBuilder(config, use_odom=use_odom)
        builder.set_camera(camera)
        times = []
        for k in range(args.reps + 3):
            pose = Pose2D(0.3 * k, -1.5, 0.05 * math.sin(k / 5.0)) if use_odom else None
            t0 = time.perf_counter()
            builder.process(labels, 0.1 * k, pose)
            if k >= 3:
                times.append(time.perf_counter() - t0)
        print(f"{'odom' if use_odom else 'ego '} (whole update): {_stats(times)}")
    return 0


if __name__ == "__main__":
    from pisr_ros import cli

    sys.exit(cli.main(["bench-grid", *sys.argv[1:]]))
