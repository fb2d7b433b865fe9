"""One label image in, one grid out: the inverse sensor model, the window and the fusion together.

Without odometry the grid is an ego grid in base_frame, rebuilt from each frame alone (the node
cannot know how the robot moved, so fusing would smear). With odometry, frames are fused in the
odometry frame in a window that follows the robot.

The per-frame cost is gathers only: the cell -> pixel lookup is built once per camera and grid
geometry (:meth:`GridBuilder.set_camera` keeps it while the camera is unchanged).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pisr_ros.grid.camera import CameraModel
from pisr_ros.grid.config import GridConfig
from pisr_ros.grid.inverse_sensor import (NO_UPDATE, SEEN_FREE, SEEN_OCCUPIED, CellLookup, Observation,
                                          build_lookup, observe)
from pisr_ros.grid.layout import GridLayout
from pisr_ros.grid.occupancy import UNKNOWN, Accumulator
from pisr_ros.taxonomy import VOID_TRAIN_ID


@dataclass(frozen=True)
class Pose2D:
    """The robot (base_frame) in the odometry frame: metres and radians."""

    x: float
    y: float
    yaw: float


@dataclass
class GridFrame:
    """One published grid: OccupancyGrid data and the class image, both (height, width), row = y."""

    layout: GridLayout  # in base_frame (ego) or the odometry frame
    occupancy: np.ndarray  # int8, 0..100, -1 unknown
    semantic: np.ndarray  # uint8 trainIds, 255 unknown
    observation: Observation


class GridBuilder:
    def __init__(self, config: GridConfig, use_odom: bool | None = None):
        self.config = config
        self.use_odom = bool(config["use_odom"] if use_odom is None else use_odom)
        self.ego = config.layout()
        self.effects = config.effect_lut()
        self.lookup: CellLookup | None = None
        # The odometry window lives on a lattice anchored at the odometry frame's origin.
        self.accumulator = Accumulator(self.ego, config.fusion(), (0.0, 0.0)) if self.use_odom else None
        self._single = config.fusion().single_update()
        n = self.ego.size
        self._state = np.zeros(n, np.uint8)
        self._cls = np.zeros(n, np.uint8)

    def set_camera(self, camera: CameraModel) -> bool:
        """Use ``camera`` (sized like the label images); True when the lookup had to be rebuilt."""
        if self.lookup is not None and self.lookup.camera.key() == camera.key():
            return False
        self.lookup = build_lookup(camera, self.ego, self.config["max_range"])
        return True

    def reset(self) -> None:
        """Forget everything fused so far (e.g. when message time jumps back)."""
        if self.accumulator is not None:
            self.accumulator.clear()
            self.accumulator.stamp = None

    def process(self, labels: np.ndarray, stamp: float, pose: Pose2D | None = None) -> GridFrame:
        """Fuse one label image (H, W) uint8 taken at ``stamp`` seconds; ``pose`` is needed with odometry."""
        if self.lookup is None:
            raise RuntimeError("set_camera() first: the grid needs the camera's geometry")
        if self.use_odom and pose is None:
            raise ValueError("this grid fuses in the odometry frame: give the robot's pose")
        if pose is not None and not all(math.isfinite(v) for v in (pose.x, pose.y, pose.yaw)):
            raise ValueError(f"the robot's pose {pose} is not finite: refuse such odometry before it gets here")
        obs = observe(labels, self.lookup, self.effects)
        state, cls = self._state, self._cls
        state.fill(NO_UPDATE)
        if not self.use_odom:
            # An ego grid says what this frame says and nothing older: no fusion, so no evidence
            # arrays to touch; every seen cell holds the value of a single update.
            self._paint(state, cls, obs)
            contact = self.ego.index_of(obs.contact_xy[:, 0], obs.contact_xy[:, 1])
            hit = contact >= 0
            state[contact[hit]] = SEEN_OCCUPIED
            cls[contact[hit]] = obs.contact_class[hit]
            free_value, occupied_value = self._single
            occupancy = np.full(self.ego.size, UNKNOWN, np.int8)
            occupancy[state == SEEN_FREE] = free_value
            occupancy[state == SEEN_OCCUPIED] = occupied_value
            semantic = np.where(state != NO_UPDATE, cls, VOID_TRAIN_ID).astype(np.uint8)
            return GridFrame(self.ego, occupancy.reshape(self.ego.shape), semantic.reshape(self.ego.shape), obs)
        acc = self.accumulator
        contact = self._pull_into_window(obs, pose)
        hit = contact >= 0
        state[contact[hit]] = SEEN_OCCUPIED
        cls[contact[hit]] = obs.contact_class[hit]
        acc.decay(stamp)
        acc.update(state, cls)
        return GridFrame(acc.window_layout(), acc.occupancy(), acc.semantic(), obs)

    @staticmethod
    def _paint(state: np.ndarray, cls: np.ndarray, obs: Observation) -> None:
        """The cell-wise part of an observation into dense ego arrays (occupied painted last wins)."""
        state[obs.free_cells] = SEEN_FREE
        cls[obs.free_cells] = obs.free_class
        state[obs.occupied_cells] = SEEN_OCCUPIED
        cls[obs.occupied_cells] = obs.occupied_class

    def _pull_into_window(self, obs: Observation, pose: Pose2D) -> np.ndarray:
        """Move the window to the robot, resample the ego observation into it (nearest cell), and
        return the storage indices of the contact points (-1 outside)."""
        acc, ego = self.accumulator, self.ego
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        # The window's centre sits at the configured offset from the robot, turned with it.
        ox, oy = self.config["offset_x"], self.config["offset_y"]
        half_w, half_h = ego.width * ego.resolution / 2.0, ego.height * ego.resolution / 2.0
        acc.move_window(*acc.lattice_of(pose.x + c * ox - s * oy - half_w, pose.y + s * ox + c * oy - half_h))

        # A dense ego picture of this frame, then each window cell looks up the ego cell below it.
        ego_state = np.zeros(ego.size, np.uint8)
        ego_cls = np.zeros(ego.size, np.uint8)
        self._paint(ego_state, ego_cls, obs)
        xs, ys = acc.storage_centres()
        # base_frame coordinates of the window cells, in units of ego cells from the ego corner:
        # both separate into a column term plus a row term, so no per-cell trigonometry.
        r = ego.resolution
        f32 = np.float32
        bx = ((c * (xs - pose.x) - ego.origin_x) / r).astype(f32)[None, :] + (s * (ys - pose.y) / r).astype(f32)[:, None]
        by = ((-s * (xs - pose.x)) / r).astype(f32)[None, :] + ((c * (ys - pose.y) - ego.origin_y) / r).astype(f32)[:, None]
        inside = ((bx >= 0) & (bx < ego.width) & (by >= 0) & (by < ego.height)).ravel()
        # Truncation is floor for the non-negative coordinates that count; the rest are masked.
        src = (by.astype(np.int32) * np.int32(ego.width) + bx.astype(np.int32)).ravel()
        src[~inside] = 0
        np.copyto(self._state, np.where(inside, ego_state[src], NO_UPDATE))
        np.copyto(self._cls, ego_cls[src])

        cx, cy = obs.contact_xy[:, 0], obs.contact_xy[:, 1]
        return acc.storage_index(pose.x + c * cx - s * cy, pose.y + s * cx + c * cy)
