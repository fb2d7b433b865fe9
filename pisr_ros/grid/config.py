"""The occupancy grid's settings: one table of parameters, their defaults, ranges and checks.

The table (:data:`PARAMETERS`, a ``pisr_ros.params.ParamTable`` as panoptic_node's is) is what
the ROS node declares, with the same descriptions and ranges, and what
``config/occupancy_grid.yaml`` sets (ROS params-file format). Names are flat
ROS parameter names: ``camera.pitch``, ``classes.car.effect``. Classes are Cityscapes' training
classes, with spaces written as underscores (``traffic_light``).

Every check raises ValueError saying which parameter is wrong and what to do about it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pisr_ros.grid.camera import CameraPose
from pisr_ros.grid.inverse_sensor import EFFECTS, effect_table
from pisr_ros.grid.layout import GridLayout
from pisr_ros.grid.occupancy import FusionParams
from pisr_ros.params import Param, ParamTable
from pisr_ros.taxonomy import CLASSES

#: The file shipped with the package, relative to the repository (or share/pisr_ros) root.
SHIPPED_CONFIG = Path("config") / "occupancy_grid.yaml"
#: Above this many cells the per-class evidence alone would pass ~76 MB.
MAX_CELLS = 1_000_000
FREE_CLASSES = ("road", "sidewalk", "terrain")
IGNORED_CLASSES = ("sky",)
#: Default half-life of thing classes (seconds): they move, so what was seen of them fades.
THING_HALF_LIFE = 2.0


def class_key(name: str) -> str:
    """The parameter-name form of a class name: ``traffic light`` -> ``traffic_light``."""
    return name.replace(" ", "_")


def _params() -> ParamTable:
    # All but use_odom and base_frame may change while the node runs (the grid then starts over);
    # those two decide the subscriptions and the output frame.
    s = [
        Param("base_frame", "base_link", "Frame the camera pose is given in; its z = 0 plane is the ground. "
              "The grid's frame_id without odometry."),
        Param("use_odom", False, "Fuse frames in the odometry frame (subscribes `odom`, nav_msgs/Odometry) "
              "in a window that follows the robot; false: a single-frame grid in base_frame."),
        Param("odom_tolerance", 0.2, "Seconds: the largest gap between a label image's stamp and the odometry "
              "used for it (interpolated when it brackets the stamp); frames without odometry are skipped.",
              range=(0.0, 10.0), runtime=True),
        Param("resolution", 0.1, "Metres per grid cell.", range=(0.01, 2.0), runtime=True),
        Param("size_x", 40.0, "Grid extent along x (forward) in metres; a whole number of cells.",
              range=(0.01, 2000.0), runtime=True),
        Param("size_y", 40.0, "Grid extent along y (left) in metres; a whole number of cells.",
              range=(0.01, 2000.0), runtime=True),
        Param("offset_x", 10.0, "Metres: the grid's centre ahead of base_frame (of the robot, with odometry).",
              range=(-1000.0, 1000.0), runtime=True),
        Param("offset_y", 0.0, "Metres: the grid's centre left of base_frame (of the robot, with odometry).",
              range=(-1000.0, 1000.0), runtime=True),
        Param("max_range", 30.0, "Metres on the ground from the point below the camera; farther cells and "
              "contact points get no update (flat-ground error grows with distance).", range=(0.1, 1000.0),
              runtime=True),
        Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", range=(0.1, 60.0)),
        Param("camera.x", 1.5, "Camera position in base_frame, metres (REP 103: x forward).",
              range=(-100.0, 100.0), runtime=True),
        Param("camera.y", 0.0, "Camera position in base_frame, metres (y left).", range=(-100.0, 100.0),
              runtime=True),
        Param("camera.z", 1.4, "Camera height above the ground, metres (z up); must be > 0.",
              range=(0.0, 100.0), runtime=True),
        Param("camera.roll", 0.0, "Camera body roll in base_frame, radians.", range=(-math.pi, math.pi),
              runtime=True),
        Param("camera.pitch", 0.0, "Camera body pitch in base_frame, radians; positive looks down.",
              range=(-math.pi, math.pi), runtime=True),
        Param("camera.yaw", 0.0, "Camera body yaw in base_frame, radians; positive looks left.",
              range=(-math.pi, math.pi), runtime=True),
        Param("p_hit", 0.85, "Probability that a cell seen occupied is occupied; in (0.5, 1). The value "
              "of a cell seen once: above 0.65, so that nav2 reads it as occupied.", range=(0.5, 1.0),
              runtime=True),
        Param("p_miss", 0.15, "Probability that a cell seen free is occupied; in (0, 0.5). The value of "
              "a cell seen once: below 0.196, so that nav2 reads it as free.", range=(0.0, 0.5),
              runtime=True),
        Param("clamp_min", 0.12, "Lower clamp of a cell's occupancy probability; in (0, 0.5).", range=(0.0, 0.5),
              runtime=True),
        Param("clamp_max", 0.97, "Upper clamp of a cell's occupancy probability; in (0.5, 1).", range=(0.5, 1.0),
              runtime=True),
        Param("class_rate", 0.3, "Weight of one observation in a cell's class evidence (moving average); "
              "in (0, 1].", range=(0.0, 1.0), runtime=True),
    ]
    for c in CLASSES:
        key = class_key(c.name)
        effect = "free" if c.name in FREE_CLASSES else "ignore" if c.name in IGNORED_CLASSES else "occupied"
        s.append(Param(f"classes.{key}.effect", effect,
                       f"What a pixel of class '{c.name}' says about its cell.", choices=tuple(EFFECTS),
                       runtime=True))
        s.append(Param(f"classes.{key}.half_life", THING_HALF_LIFE if c.is_thing else 0.0,
                       f"Seconds for what was seen of '{c.name}' to fade by half; 0 = never.",
                       range=(0.0, 3600.0), runtime=True))
    return ParamTable(s)


#: The node's parameter table; config/occupancy_grid.yaml sets the same names.
PARAMETERS = _params()


@dataclass(frozen=True)
class ClassRule:
    effect: str
    half_life: float


@dataclass(frozen=True)
class GridConfig:
    """Validated settings; build with :func:`config_from_params` or :func:`load_config`."""

    values: Mapping[str, Any] = field(default_factory=PARAMETERS.defaults)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def pose(self) -> CameraPose:
        v = self.values
        return CameraPose(v["camera.x"], v["camera.y"], v["camera.z"], v["camera.roll"], v["camera.pitch"],
                          v["camera.yaw"])

    def layout(self) -> GridLayout:
        """The ego grid in base_frame (and the shape of the odometry window)."""
        v = self.values
        return GridLayout.centred(v["resolution"], v["size_x"], v["size_y"], v["offset_x"], v["offset_y"])

    def rules(self) -> dict[int, ClassRule]:
        v = self.values
        return {c.train_id: ClassRule(v[f"classes.{class_key(c.name)}.effect"],
                                      v[f"classes.{class_key(c.name)}.half_life"]) for c in CLASSES}

    def effect_lut(self) -> np.ndarray:
        return effect_table({t: EFFECTS[r.effect] for t, r in self.rules().items()})

    def fusion(self) -> FusionParams:
        v = self.values
        return FusionParams(v["p_hit"], v["p_miss"], v["clamp_min"], v["clamp_max"], v["class_rate"],
                            tuple(r.half_life for _, r in sorted(self.rules().items())))


def config_from_params(values: Mapping[str, Any]) -> GridConfig:
    """Settings from parameter values (missing ones take their defaults), checked as a whole."""
    unknown = sorted(set(values) - set(PARAMETERS.names()))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; known: see config/occupancy_grid.yaml")
    merged = {**PARAMETERS.defaults(), **values}
    problems = PARAMETERS.problems(merged)
    if problems:
        raise ValueError("; ".join(problems))
    config = GridConfig(merged)
    config.pose.validate()
    layout = config.layout()  # checks that the sizes are whole numbers of cells
    if layout.size > MAX_CELLS:
        raise ValueError(f"the grid has {layout.width} x {layout.height} = {layout.size} cells, more than "
                         f"{MAX_CELLS}; use a coarser resolution or a smaller size_x / size_y")
    config.fusion().validate()
    rules = config.rules()
    if not any(r.effect == "free" for r in rules.values()):
        raise ValueError("no class has effect 'free', so no cell could ever be seen free; "
                         "set classes.road.effect (and sidewalk, terrain) to free")
    return config


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def load_config(path: str | Path) -> GridConfig:
    """Settings from a ROS params file (``/**: ros__parameters: ...`` or a node name instead of /**)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, Mapping) or len(doc) != 1:
        raise ValueError(f"{path}: expected one node entry, e.g. '/**:' with 'ros__parameters:' under it")
    (entry,) = doc.values()
    if not isinstance(entry, Mapping) or "ros__parameters" not in entry:
        raise ValueError(f"{path}: the node entry needs a 'ros__parameters:' mapping (ROS params-file format)")
    try:
        return config_from_params(_flatten(entry["ros__parameters"] or {}))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc

