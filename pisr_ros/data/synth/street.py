"""One random street: its layout (camera, lanes, sides, cross street, tram, ground colours),
the queue of things to paint far to near, and the order ``render`` paints in. What is drawn
lives in one module per kind: ground, rows (buildings, walls, fences, lots), plants,
furniture, vehicles, people, void, optics."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pisr_ros.data.synth.camera import Camera
from pisr_ros.data.synth.canvas import Canvas
from pisr_ros.data.synth.colours import jittered, picked
from pisr_ros.data.synth.furniture import street_furniture
from pisr_ros.data.synth.ground import backdrop, ground, sky
from pisr_ros.data.synth.labels import PARKING, TERRAIN
from pisr_ros.data.synth.optics import finish
from pisr_ros.data.synth.people import people
from pisr_ros.data.synth.rows import structures
from pisr_ros.data.synth.vehicles import traffic
from pisr_ros.data.synth.void import ego_and_border


@dataclass
class Side:
    """One side of the street, measured outward from the camera's centre line (metres)."""

    sign: int  # -1 left, +1 right
    road_edge: float
    verge: float  # terrain or parking strip between road and sidewalk
    verge_label: int
    sidewalk: float
    structures_end: float  # depth where the building row ends

    @property
    def prop(self) -> float:
        """Where private ground starts: buildings, walls, fences and lots stand beyond it."""
        return self.road_edge + self.verge + self.sidewalk


class Street:
    """One random scene. ``render()`` paints it and returns (rgb uint8, labelIds, instanceIds)."""

    def __init__(self, height: int, width: int, rng: np.random.Generator):
        self.rng = rng
        self.cam = Camera(height, width, rng)
        self.cv = Canvas(self.cam)
        r = rng
        self.lane = r.uniform(2.8, 3.6)
        self.lanes_left = int(r.choice([0, 1, 1, 2, 2, 3]))
        self.lanes_right = int(r.choice([0, 0, 0, 1]))
        self.urban = r.uniform(0.2, 1.0)  # how built-up: building rows vs greenery
        self.busy = r.uniform(0.2, 1.0)  # how much traffic and people
        self.sunny = r.random() < 0.45
        self.sun_side = int(r.choice([-1, 1]))  # facades on this side are lit
        self.cross_street = (r.uniform(18, 70), r.uniform(8, 16)) if r.random() < 0.4 else None
        self.tram = r.random() < 0.06
        self.tram_x = -self.lane if self.lanes_left else 0.0  # centre of the tram's lane
        self.sides = [self._make_side(-1), self._make_side(+1)]
        # (depth, order, draw), painted far to near. The rows beside the street go first: they
        # stand farther out than anything on the street or sidewalk, so from the camera they
        # can never be in front of it, while the reverse happens all the time.
        self.rows: list[tuple[float, int, object]] = []
        self.items: list[tuple[float, int, object]] = []
        self.road_colour = jittered(r, (r.uniform(60, 115),) * 3, 6) * np.array([1.0, 1.0, r.uniform(1.0, 1.08)])
        self.walk_colour = picked(r, [(150, 150, 150), (175, 170, 165), (165, 135, 125), (120, 120, 118), (190, 185, 170)], 10)
        self.terrain_colour = picked(r, [(105, 130, 55), (125, 140, 70), (150, 140, 95), (120, 100, 75), (90, 115, 60)], 12)

    def _make_side(self, sign: int) -> Side:
        r = self.rng
        lanes = self.lanes_left if sign < 0 else self.lanes_right
        road_edge = self.lane / 2 + lanes * self.lane + r.uniform(0.3, 3.0)
        kind = r.random()
        if kind < 0.25:
            verge, verge_label = r.uniform(0.8, 3.0), TERRAIN
        elif kind < 0.35:
            verge, verge_label = r.uniform(2.0, 2.6), PARKING
        else:
            verge, verge_label = 0.0, TERRAIN
        return Side(sign, road_edge, verge, verge_label, r.uniform(2.0, 6.5), r.uniform(50, 260))

    def in_cross(self, z0, z1) -> bool:
        """Whether depths z0..z1 overlap the cross street (where rows and furniture leave a gap)."""
        if self.cross_street is None:
            return False
        zc, wc = self.cross_street
        return z1 > zc and z0 < zc + wc

    def add(self, depth: float, draw, row: bool = False):
        """Queue ``draw()`` to be painted at ``depth``, far to near; ``row``: one of the rows beside
        the street, all painted before anything on the street or sidewalk."""
        target = self.rows if row else self.items
        target.append((float(depth), len(target), draw))

    def render(self):
        sky(self)
        ground(self)
        backdrop(self)
        for side in self.sides:
            structures(self, side)
        street_furniture(self)
        traffic(self)
        people(self)
        for queue in (self.rows, self.items):
            # Ties keep insertion order, so a scene never depends on how the sort breaks them.
            for _, _, draw in sorted(queue, key=lambda t: (-t[0], t[1])):
                draw()
        ego_and_border(self)
        return finish(self)

    def ground_quad(self, x0, x1, z0, z1, y=0.0) -> np.ndarray:
        """The image polygon of the ground rectangle x0..x1 by z0..z1 (at height y)."""
        return self.cam.project([x0, x1, x1, x0], y, [z0, z0, z1, z1])

    def facade_light(self, sign: int) -> float:
        """Brightness of the facades on side ``sign``: lit or shaded on a sunny day."""
        if not self.sunny:
            return 1.0
        return 1.12 if sign == self.sun_side else 0.68
