"""Label images of known scenes by ray casting: ground truth for tests, the demo and the bench.

A scene is a flat ground whose class is a function of (x, y), plus upright boxes standing on it
(cars, poles, buildings), each with one class. Every pixel's ray is cast from the camera centre
and takes the class of what it meets first; rays that meet nothing see sky. Boxes occlude
whatever lies behind them, exactly as a camera sees it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pisr_ros.grid.camera import CameraModel
from pisr_ros.taxonomy import by_name

SKY = by_name("sky").train_id
ROAD = by_name("road").train_id


@dataclass(frozen=True)
class Box:
    """An axis-aligned box on the ground: x in [x0, x1], y in [y0, y1], z in [0, height]."""

    x0: float
    x1: float
    y0: float
    y1: float
    height: float
    train_id: int

    def footprint(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)


GroundFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def road_everywhere(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.full(np.shape(x), ROAD, np.uint8)


def _box_hits(origin: np.ndarray, d: np.ndarray, box: Box) -> np.ndarray:
    """Ray parameter t (>= 0) where rays origin + t d (N, 3) first meet ``box``; inf where they miss."""
    lo = np.array([box.x0, box.y0, 0.0])
    hi = np.array([box.x1, box.y1, box.height])
    dd = np.where(np.abs(d) < 1e-15, 1e-15, d)  # a ray parallel to a face still gets a slab
    t0, t1 = (lo - origin) / dd, (hi - origin) / dd
    near = np.minimum(t0, t1).max(axis=1)
    far = np.maximum(t0, t1).min(axis=1)
    hit = (near <= far) & (far > 0.0)
    return np.where(hit, np.maximum(near, 0.0), np.inf)


def render_labels(origin: Sequence[float], rays: np.ndarray, boxes: Sequence[Box] = (),
                  ground: GroundFn = road_everywhere) -> np.ndarray:
    """Labels (H, W) uint8 of rays (H, W, 3) cast from ``origin`` (3,), in one world frame."""
    origin = np.asarray(origin, np.float64)
    h, w = rays.shape[:2]
    d = rays.reshape(-1, 3)
    labels = np.full(d.shape[0], SKY, np.uint8)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_best = np.where(d[:, 2] < 0.0, -origin[2] / d[:, 2], np.inf)
    t_best = np.where(np.isfinite(t_best), t_best, np.inf)
    on_ground = np.isfinite(t_best)
    g = origin + t_best[on_ground, None] * d[on_ground]
    labels[on_ground] = ground(g[:, 0], g[:, 1])
    for box in boxes:
        t = _box_hits(origin, d, box)
        nearer = t < t_best
        labels[nearer] = box.train_id
        t_best = np.where(nearer, t, t_best)
    return labels.reshape(h, w)


def camera_rays(camera: CameraModel, x: float = 0.0, y: float = 0.0, yaw: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and rays (H, W, 3) of every pixel centre of ``camera``, for a robot at (x, y, yaw)
    in the world; with the robot at the world origin the world is base_link."""
    vs, us = np.mgrid[0:camera.height, 0:camera.width]
    rays = camera.pixel_rays(np.stack([us.ravel(), vs.ravel()], axis=-1).astype(np.float64))
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    origin = turn @ camera.centre + np.array([x, y, 0.0])
    return origin, (rays @ turn.T).reshape(camera.height, camera.width, 3)


def render_camera(camera: CameraModel, boxes: Sequence[Box] = (), ground: GroundFn = road_everywhere,
                  x: float = 0.0, y: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    """What ``camera`` on a robot at (x, y, yaw) sees of the scene (H, W) uint8."""
    origin, rays = camera_rays(camera, x, y, yaw)
    return render_labels(origin, rays, boxes, ground)


def ground_truth(boxes: Sequence[Box], ground: GroundFn, layout) -> np.ndarray:
    """Top-down class of each cell centre of ``layout`` (height, width): boxes over the ground."""
    xs, ys = np.meshgrid(layout.centres_x(), layout.centres_y())
    out = ground(xs, ys).astype(np.uint8)
    for box in boxes:
        out[box.footprint(xs, ys)] = box.train_id
    return out
