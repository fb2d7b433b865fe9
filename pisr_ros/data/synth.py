"""Procedural street scenes, written in the exact Cityscapes layout.

Each scene is a straight street seen from a car: a pinhole camera at a random height, focal
length, horizon and roll looks along a road with lane markings, curbs, sidewalks, building rows
with windows, walls, fences, trees, terrain, poles, signs and traffic lights, and places cars,
trucks, buses, the odd tram, persons, riders, bicycles and motorcycles on the ground plane. Every
shape is built in metres and projected, so sizes and heights follow perspective, and everything is
painted far to near, so nearer things occlude farther ones exactly as the labels say.

Ground truth is painted with the image, polygon by polygon, into a labelIds map and an instanceIds
map (``labelId * 1000 + k`` for things, ``k`` from 0 per class and image as in Cityscapes' own
``json2instanceImg``; plain labelId elsewhere). The panoptic PNGs and json then come from
cityscapesscripts' own converter, so they are exactly what the benchmark tools expect.

A scene depends only on (seed, split, index): :func:`scene_rng` seeds one generator per image, so
any number of worker processes writes byte-identical files.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import name2label

from pisr_ros.data import cityscapes_layout as layout
from pisr_ros.errors import UsageError
from pisr_ros.taxonomy import LABEL_COLORS
from pisr_ros.workers import process_pool


def _label(name: str) -> int:
    return name2label[name].id


UNLABELED, EGO, BORDER, STATIC, DYNAMIC, GROUND = (
    _label(n) for n in ("unlabeled", "ego vehicle", "rectification border", "static", "dynamic", "ground")
)
ROAD, SIDEWALK, PARKING, RAIL = (_label(n) for n in ("road", "sidewalk", "parking", "rail track"))
BUILDING, WALL, FENCE, GUARD_RAIL = (_label(n) for n in ("building", "wall", "fence", "guard rail"))
POLE, LIGHT, SIGN = (_label(n) for n in ("pole", "traffic light", "traffic sign"))
VEGETATION, TERRAIN, SKY = (_label(n) for n in ("vegetation", "terrain", "sky"))
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = (
    _label(n) for n in ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
)

#: Synthetic cities per split; disjoint, like Cityscapes' own splits.
CITIES = {
    "train": ("alphaville", "betatown", "gammaburg", "deltaport"),
    "val": ("epsilonfield", "zetaheim"),
    "test": ("etacity",),
}
#: Cityscapes' annotated frame is the 20th of each 30-frame snippet.
FRAME = 19
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZE = (1024, 2048)
CONTACT_SHEET_SCENES = 16

# cv2 drawing with 4 fractional bits keeps thin far-away shapes from snapping to whole pixels.
_SHIFT = 4
_ONE = 1 << _SHIFT
_FAR = 3000.0  # metres; "the horizon" for ground polygons
_NEAR = 0.5  # metres; ground polygons start here, well below the bottom image row


def image_id_of(split: str, index: int) -> str:
    """The Cityscapes image id of scene ``index`` of ``split`` (cities take turns)."""
    cities = CITIES[split]
    return layout.image_id(cities[index % len(cities)], index // len(cities), FRAME)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_CODE[split], index])


# ----------------------------------------------------------------------------- camera and canvas


class Camera:
    """Pinhole camera at height ``h`` above a flat ground, looking along +Z (X right, Y up)."""

    def __init__(self, height: int, width: int, rng: np.random.Generator):
        self.H, self.W = height, width
        self.f = width * rng.uniform(0.9, 1.25)  # Cityscapes: 2262 px for 2048 px width
        self.cx = width * rng.uniform(0.4, 0.6)  # vanishing point: the road's yaw
        self.cy = height * rng.uniform(0.36, 0.5)  # horizon: the camera's pitch
        self.h = rng.uniform(1.1, 1.7)
        roll = rng.normal(0.0, 0.012)
        self._cos, self._sin = math.cos(roll), math.sin(roll)

    def project(self, X, Y, Z) -> np.ndarray:
        """Pixel coordinates (N, 2) of world points; Z must be > 0."""
        X, Y, Z = (np.asarray(a, dtype=np.float64) for a in (X, Y, Z))
        X, Y, Z = np.broadcast_arrays(X, Y, Z)
        x = self.cx + self.f * X / Z
        y = self.cy + self.f * (self.h - Y) / Z
        dx, dy = x - self.W / 2, y - self.H / 2
        return np.stack([self.W / 2 + self._cos * dx - self._sin * dy,
                         self.H / 2 + self._sin * dx + self._cos * dy], axis=-1).reshape(-1, 2)

    def px(self, metres: float, Z: float) -> float:
        """How many pixels ``metres`` spans at depth ``Z``."""
        return self.f * metres / Z

    def visible_x(self, Z: float) -> float:
        """Half the width in metres that the image spans at depth ``Z`` (generously)."""
        return (self.W / self.f) * Z


Tag = tuple  # (labelId, instanceIds value) or None for paint that leaves the labels alone


def _fixed(points: np.ndarray) -> np.ndarray:
    pts = np.clip(np.asarray(points, dtype=np.float64), -1e6, 1e6)
    return np.round(pts * _ONE).astype(np.int32).reshape(-1, 1, 2)


class Canvas:
    """The image and its two label maps, always painted together so they cannot disagree."""

    def __init__(self, cam: Camera):
        self.cam = cam
        self.image = np.zeros((cam.H, cam.W, 3), np.float32)
        self.labels = np.zeros((cam.H, cam.W), np.uint8)
        self.instances = np.zeros((cam.H, cam.W), np.uint16)
        self._next_k: dict[int, int] = {}

    def thing(self, label: int) -> Tag:
        """A new instance of thing class ``label``; k counts from 0 like Cityscapes."""
        k = self._next_k.get(label, 0)
        self._next_k[label] = k + 1
        return (label, label * 1000 + k)

    @staticmethod
    def stuff(label: int) -> Tag:
        return (label, label)

    def _label(self, draw, tag: Tag | None):
        if tag is not None:
            draw(self.labels, int(tag[0]))
            draw(self.instances, int(tag[1]))

    def polys(self, polys: list[np.ndarray], colour, tag: Tag | None = None):
        if not polys:
            return
        pts = [_fixed(p) for p in polys]
        colour = tuple(float(c) for c in colour)
        cv2.fillPoly(self.image, pts, colour, cv2.LINE_8, _SHIFT)
        self._label(lambda a, v: cv2.fillPoly(a, pts, v, cv2.LINE_8, _SHIFT), tag)

    def poly(self, poly: np.ndarray, colour, tag: Tag | None = None):
        self.polys([poly], colour, tag)

    def line(self, p0, p1, width_px: float, colour, tag: Tag | None = None):
        a, b = _fixed(p0).reshape(2), _fixed(p1).reshape(2)
        a, b = (int(a[0]), int(a[1])), (int(b[0]), int(b[1]))
        t = max(1, int(round(width_px)))
        colour = tuple(float(c) for c in colour)
        cv2.line(self.image, a, b, colour, t, cv2.LINE_8, _SHIFT)
        self._label(lambda arr, v: cv2.line(arr, a, b, v, t, cv2.LINE_8, _SHIFT), tag)

    def label_only(self, poly: np.ndarray, tag: Tag):
        """Labels without paint: a bicycle wheel is the bicycle, though the image shows through it."""
        pts = [_fixed(poly)]
        self._label(lambda a, v: cv2.fillPoly(a, pts, v, cv2.LINE_8, _SHIFT), tag)

    def outline(self, poly: np.ndarray, width_px: float, colour):
        t = max(1, int(round(width_px)))
        cv2.polylines(self.image, [_fixed(poly)], True, tuple(float(c) for c in colour), t, cv2.LINE_8, _SHIFT)

    def _roi_mask(self, poly: np.ndarray):
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        x0 = max(int(np.floor(pts[:, 0].min())), 0)
        y0 = max(int(np.floor(pts[:, 1].min())), 0)
        x1 = min(int(np.ceil(pts[:, 0].max())) + 1, self.cam.W)
        y1 = min(int(np.ceil(pts[:, 1].max())) + 1, self.cam.H)
        if x1 <= x0 or y1 <= y0:
            return None
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [_fixed(pts - [x0, y0])], 1, cv2.LINE_8, _SHIFT)
        return (slice(y0, y1), slice(x0, x1)), mask.astype(bool)

    def blend(self, poly: np.ndarray, colour, alpha: float, tag: Tag | None = None):
        """See-through paint (fences, shadows): mixes ``colour`` into what is already there."""
        roi = self._roi_mask(poly)
        if roi is None:
            return
        (sy, sx), mask = roi
        patch = self.image[sy, sx]
        patch[mask] = patch[mask] * (1 - alpha) + np.asarray(colour, np.float32) * alpha
        if tag is not None:
            self.labels[sy, sx][mask] = tag[0]
            self.instances[sy, sx][mask] = tag[1]

    def darken(self, poly: np.ndarray, factor: float):
        roi = self._roi_mask(poly)
        if roi is not None:
            (sy, sx), mask = roi
            self.image[sy, sx][mask] *= factor


# ----------------------------------------------------------------------------- colours


def _jitter(rng, colour, amount=18.0):
    return np.clip(np.asarray(colour, np.float64) + rng.normal(0, amount, 3), 0, 255)


def _shade(colour, factor):
    return np.clip(np.asarray(colour, np.float64) * factor, 0, 255)


def _pick(rng, palette, amount=14.0):
    return _jitter(rng, palette[rng.integers(len(palette))], amount)


CAR_COLOURS = [
    (235, 235, 232), (240, 240, 240), (25, 25, 28), (40, 40, 45), (168, 170, 176), (120, 122, 128),
    (90, 92, 98), (30, 45, 95), (45, 85, 160), (150, 25, 28), (120, 20, 20), (30, 70, 50),
    (205, 190, 150), (225, 205, 120), (200, 110, 40), (95, 60, 40),
]
FACADE_COLOURS = [
    (205, 190, 165), (225, 222, 212), (150, 150, 150), (160, 82, 60), (215, 195, 140), (200, 165, 150),
    (95, 95, 100), (172, 186, 198), (185, 175, 160), (130, 110, 90), (235, 215, 185), (120, 135, 130),
]
CLOTHES = [
    (20, 20, 25), (40, 45, 60), (60, 60, 65), (90, 60, 40), (150, 20, 30), (30, 60, 130), (200, 200, 195),
    (120, 120, 110), (60, 90, 50), (210, 170, 60), (160, 100, 140), (230, 120, 40), (240, 240, 240),
]
SKIN = [(240, 200, 170), (220, 170, 130), (180, 130, 95), (130, 90, 60), (95, 65, 45)]
HAIR = [(20, 15, 10), (60, 40, 25), (120, 90, 50), (200, 170, 110), (150, 150, 150), (90, 30, 20)]
GLASS = [(40, 50, 60), (60, 75, 90), (30, 35, 40), (95, 110, 125)]


# ----------------------------------------------------------------------------- geometry helpers


def _box(x0, x1, y0, y1, z0, z1) -> np.ndarray:
    """The 8 corners of an axis-aligned box: bottom 0-3, top 4-7, each (x0,z0),(x1,z0),(x1,z1),(x0,z1)."""
    xs = np.array([x0, x1, x1, x0] * 2, np.float64)
    ys = np.array([y0] * 4 + [y1] * 4, np.float64)
    zs = np.array([z0, z0, z1, z1] * 2, np.float64)
    return np.stack([xs, ys, zs], axis=1)


# Faces of a hexahedron given as 8 corners in _box order, and how bright each is when lit from above.
_FACES = {
    "near": (0, 1, 5, 4), "far": (3, 2, 6, 7), "left": (0, 3, 7, 4),
    "right": (1, 2, 6, 5), "bottom": (0, 1, 2, 3), "top": (4, 5, 6, 7),
}
_FACE_LIGHT = {"near": 1.0, "far": 1.0, "left": 0.82, "right": 0.82, "bottom": 0.35, "top": 1.12}


def _face_quad(corners: np.ndarray, a0, a1, b0, b1) -> np.ndarray:
    """A sub-quad of a planar face: (a, b) in [0,1]^2 run along edges 0->1 and 0->3."""
    c0, c1, c2, c3 = corners

    def at(a, b):
        return (1 - b) * ((1 - a) * c0 + a * c1) + b * ((1 - a) * c3 + a * c2)

    return np.stack([at(a0, b0), at(a1, b0), at(a1, b1), at(a0, b1)])


def _ellipse(cx, cy, rx, ry, n=20) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


# ----------------------------------------------------------------------------- the street


@dataclass
class _Side:
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
        self.road_colour = _jitter(r, (r.uniform(60, 115),) * 3, 6) * np.array([1.0, 1.0, r.uniform(1.0, 1.08)])
        self.walk_colour = _pick(r, [(150, 150, 150), (175, 170, 165), (165, 135, 125), (120, 120, 118), (190, 185, 170)], 10)
        self.terrain_colour = _pick(r, [(105, 130, 55), (125, 140, 70), (150, 140, 95), (120, 100, 75), (90, 115, 60)], 12)

    # -- layout

    def _make_side(self, sign: int) -> _Side:
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
        return _Side(sign, road_edge, verge, verge_label, r.uniform(2.0, 6.5), r.uniform(50, 260))

    def _in_cross(self, z0, z1) -> bool:
        if self.cross_street is None:
            return False
        zc, wc = self.cross_street
        return z1 > zc and z0 < zc + wc

    def add(self, depth: float, draw, row: bool = False):
        target = self.rows if row else self.items
        target.append((float(depth), len(target), draw))

    # -- painting, in order

    def render(self):
        self._sky()
        self._ground()
        self._backdrop()
        for side in self.sides:
            self._structures(side)
        self._street_furniture()
        self._traffic()
        self._people()
        for queue in (self.rows, self.items):
            # Ties keep insertion order, so a scene never depends on how the sort breaks them.
            for _, _, draw in sorted(queue, key=lambda t: (-t[0], t[1])):
                draw()
        self._ego_and_border()
        return self._finish()

    def _sky(self):
        r, cam = self.rng, self.cam
        if r.random() < 0.5:
            top, horizon = _jitter(r, (95, 140, 200), 15), _jitter(r, (190, 210, 230), 10)
        else:  # overcast, as in most of Cityscapes
            grey = r.uniform(160, 225)
            top, horizon = _jitter(r, (grey - 15, grey - 8, grey), 8), _jitter(r, (grey + 15,) * 3, 6)
        t = np.clip(np.arange(cam.H, dtype=np.float32) / max(cam.cy, 1.0), 0, 1)[:, None, None]
        self.cv.image[:] = (top * (1 - t) + horizon * t).astype(np.float32)
        self.cv.labels[:] = SKY
        self.cv.instances[:] = SKY

    def _ground_quad(self, x0, x1, z0, z1, y=0.0) -> np.ndarray:
        return self.cam.project([x0, x1, x1, x0], y, [z0, z0, z1, z1])

    def _ground(self):
        r, cv = self.rng, self.cv
        cv.poly(self._ground_quad(-5000, 5000, _NEAR, _FAR), self.terrain_colour, cv.stuff(TERRAIN))
        left, right = self.sides
        for side in self.sides:
            s = side.sign
            x_curb, x_prop = side.road_edge, side.prop
            z_end = _FAR
            walk = self.walk_colour
            if side.verge > 0:
                colour = self.terrain_colour if side.verge_label == TERRAIN else _shade(self.road_colour, 1.1)
                xa, xb = sorted((s * x_curb, s * (x_curb + side.verge)))
                cv.poly(self._ground_quad(xa, xb, _NEAR, z_end), colour, cv.stuff(side.verge_label))
            xa, xb = sorted((s * (x_curb + side.verge), s * x_prop))
            cv.poly(self._ground_quad(xa, xb, _NEAR, z_end), walk, cv.stuff(SIDEWALK))
            self._paving(side)
            # Beyond the property line: forecourts paved or green, seen through gaps.
            if r.random() < 0.5:
                xa, xb = sorted((s * x_prop, s * (x_prop + 60)))
                cv.poly(self._ground_quad(xa, xb, _NEAR, z_end), _shade(walk, 0.95),
                        cv.stuff(SIDEWALK if r.random() < 0.7 else GROUND))
        road = cv.stuff(ROAD)
        cv.poly(self._ground_quad(-left.road_edge, right.road_edge, _NEAR, _FAR), self.road_colour, road)
        for side in self.sides:  # curb faces: Cityscapes labels curbs as sidewalk
            x = side.sign * side.road_edge
            if side.verge > 0 and side.verge_label == PARKING:
                continue
            quad = self.cam.project([x, x, x, x], [0, 0, 0.13, 0.13], [_NEAR, _FAR, _FAR, _NEAR])
            cv.poly(quad, _shade(self.walk_colour, 1.12), cv.stuff(SIDEWALK))
        if self.tram:
            self._rails()
        if self.cross_street is not None:
            zc, wc = self.cross_street
            cv.poly(self._ground_quad(-5000, 5000, zc, zc + wc), self.road_colour, road)
        self._markings()
        if self.sunny:
            self._cast_shadows()

    def _paving(self, side: _Side):
        """Joints between paving slabs: texture only, the label stays sidewalk."""
        r = self.rng
        if r.random() < 0.4:
            return
        s, step = side.sign, r.uniform(0.4, 1.2)
        x0, x1 = side.road_edge + side.verge, side.prop
        colour = _shade(self.walk_colour, r.uniform(0.75, 0.9))
        zs = np.arange(2.0, 60.0, step)
        for z in zs:
            p = self._ground_quad(s * x0, s * x1, z, z + 0.02)
            self.cv.line(p[0], p[1], 1, colour)

    def _markings(self):
        r, cv = self.rng, self.cv
        white = _jitter(r, (225, 225, 220), 8) if r.random() < 0.92 else _jitter(r, (220, 190, 70), 8)
        quads = []
        width = r.uniform(0.1, 0.16)
        dash, gap = r.uniform(2.5, 6.0), r.uniform(4.0, 12.0)
        phase = r.uniform(0, dash + gap)
        for i in range(self.lanes_left + 1):
            x = -self.lane / 2 - i * self.lane
            if i == self.lanes_left:
                if r.random() < 0.6:  # solid edge line
                    quads.append(self._ground_quad(x - width, x, 2.0, _FAR))
                continue
            if i == 0 and r.random() < 0.3:
                quads.append(self._ground_quad(x - width / 2, x + width / 2, 2.0, _FAR))
                continue
            z = 2.0 - phase
            while z < 200:
                quads.append(self._ground_quad(x - width / 2, x + width / 2, max(z, _NEAR), z + dash))
                z += dash + gap
        for i in range(self.lanes_right + 1):
            x = self.lane / 2 + i * self.lane
            if i == self.lanes_right:
                if r.random() < 0.5:
                    quads.append(self._ground_quad(x, x + width, 2.0, _FAR))
                continue
            z = 2.0 - phase
            while z < 200:
                quads.append(self._ground_quad(x - width / 2, x + width / 2, max(z, _NEAR), z + dash))
                z += dash + gap
        if self.cross_street is not None and r.random() < 0.8:
            zc, _ = self.cross_street
            xl, xr = -self.sides[0].road_edge, self.sides[1].road_edge
            z0 = zc - r.uniform(3.0, 5.0)
            for x in np.arange(xl + 0.3, xr - 0.3, 1.0):  # zebra crossing
                quads.append(self._ground_quad(x, x + 0.5, z0, z0 + 3.0))
            quads.append(self._ground_quad(xl, xr, z0 - 1.2, z0 - 0.8))  # stop line
        if r.random() < 0.15:  # painted arrow-ish block in the ego lane
            z = r.uniform(8, 25)
            quads.append(self._ground_quad(-0.15, 0.15, z, z + 3.0))
            quads.append(self.cam.project([-0.6, 0.6, 0], 0, [z + 3.0, z + 3.0, z + 4.5]))
        cv.polys(quads, white)

    def _rails(self):
        cv, r = self.cv, self.rng
        x = self.tram_x
        cv.poly(self._ground_quad(x - 1.1, x + 1.1, _NEAR, _FAR), _shade(self.road_colour, 0.9), cv.stuff(RAIL))
        steel = _jitter(r, (170, 170, 175), 10)
        quads = [self._ground_quad(x + dx - 0.04, x + dx + 0.04, _NEAR, _FAR) for dx in (-0.72, 0.72)]
        cv.polys(quads, steel)

    def _cast_shadows(self):
        """Shadows of the building rows on the ground: a sunny afternoon's strongest cue."""
        r = self.rng
        s = -self.sun_side  # the shaded facades' row throws its shadow across the street
        side = self.sides[0 if s < 0 else 1]
        reach = r.uniform(2.0, 14.0)
        factor = r.uniform(0.45, 0.7)
        z = r.uniform(2.0, 15.0)
        while z < side.structures_end:
            length = r.uniform(8, 40)
            x_out, x_in = side.prop + 2, side.prop - reach
            xa, xb = sorted((s * x_out, s * x_in))
            self.cv.darken(self._ground_quad(xa, xb, z, z + length), factor)
            z += length + r.uniform(1, 12)

    def _backdrop(self):
        """Distant buildings and trees closing the street, at a few hundred metres."""
        r, cv = self.rng, self.cv
        if r.random() < 0.15:
            return
        z = r.uniform(140, 420)
        half = self.cam.visible_x(z) * 1.2
        x = -half
        haze = r.uniform(0.15, 0.45)
        sky = cv.image[max(int(self.cam.cy) - 2, 0), self.cam.W // 2]
        while x < half:
            w = r.uniform(8, 60)
            if r.random() < 0.65 * self.urban + 0.1:
                h = r.uniform(6, 45)
                colour = _pick(r, FACADE_COLOURS, 20) * (1 - haze) + sky * haze
                cv.poly(self.cam.project([x, x + w, x + w, x], [0, 0, h, h], z), colour, cv.stuff(BUILDING))
            elif r.random() < 0.7:  # a stand of trees: a solid mass with a bumpy top
                colour = _jitter(r, (70, 95, 50), 12) * (1 - haze) + sky * haze
                top = r.uniform(6, 16)
                blobs = [self.cam.project([x, x + w, x + w, x], [0, 0, top, top], z)]
                for bx in np.arange(x, x + w, r.uniform(2, 5)):
                    rad = r.uniform(2, 6)
                    c = self.cam.project(bx, top + r.uniform(-2, 1), z)[0]
                    blobs.append(_ellipse(c[0], c[1], self.cam.px(rad, z), self.cam.px(rad * 0.8, z), 12))
                cv.polys(blobs, colour, cv.stuff(VEGETATION))
            x += w + (r.uniform(0, 30) if r.random() < 0.3 else 0)

    # -- the rows beside the street

    def _structures(self, side: _Side):
        r = self.rng
        z = r.uniform(0.5, 4.0)
        weights = np.array([0.62 * self.urban + 0.05, 0.08, 0.08, 0.1, 0.22 * (1.2 - self.urban)])
        weights /= weights.sum()
        while z < side.structures_end:
            kind = int(r.choice(5, p=weights))
            length = float(r.uniform(*[(8, 45), (3, 14), (5, 30), (5, 30), (6, 40)][kind]))
            z1 = z + length
            if self._in_cross(z, z1):  # the cross street opens a gap in both rows
                zc, wc = self.cross_street
                if z < zc:
                    z1 = zc
                else:
                    z = zc + wc
                    continue
            if z1 - z > 1.0:
                draw = [self._building, None, self._wall, self._fence, self._green][kind]
                if draw is not None:
                    self.add(z, self._bind(draw, side, z, z1), row=True)
            z = z1

    @staticmethod
    def _bind(fn, *args):
        return lambda: fn(*args)

    def _facade_light(self, sign: int) -> float:
        if not self.sunny:
            return 1.0
        return 1.12 if sign == self.sun_side else 0.68

    def _building(self, side: _Side, z0: float, z1: float):
        r, cv, cam = self.rng, self.cv, self.cam
        s = side.sign
        setback = r.uniform(0, 4) if r.random() < 0.3 else 0.0
        x_in = side.prop + setback
        depth = r.uniform(8, 25)
        height = r.uniform(5, 30)
        colour = _pick(r, FACADE_COLOURS, 14)
        light = self._facade_light(s)
        tag = cv.stuff(BUILDING)
        box = _box(s * x_in, s * (x_in + depth), 0, height, z0, z1)
        side_face = box[list(_FACES["left" if s > 0 else "right"])]
        near_face = box[list(_FACES["near"])]
        cv.poly(cam.project(*side_face.T), _shade(colour, light), tag)
        cv.poly(cam.project(*near_face.T), _shade(colour, light * 0.85), tag)
        # Cornice and a darker plinth: two bands that make the facade read as a building.
        for face, f in ((side_face, light), (near_face, light * 0.85)):
            cv.poly(cam.project(*_face_quad(face, 0, 1, 0.97, 1.0).T), _shade(colour, f * 0.75))
            cv.poly(cam.project(*_face_quad(face, 0, 1, 0, min(0.8 / height, 0.2)).T), _shade(colour, f * 0.7))
        self._windows(side_face, z1 - z0, height, light, shop=r.random() < 0.5)
        self._windows(near_face, depth, height, light * 0.85, shop=False)

    def _windows(self, face: np.ndarray, length: float, height: float, light: float, shop: bool):
        """A grid of windows on a facade quad whose edge 0->1 runs along the ground."""
        r, cv, cam = self.rng, self.cv, self.cam
        floor = r.uniform(2.8, 3.6)
        ground = r.uniform(3.2, 4.5)
        col = r.uniform(2.2, 4.0)
        win_w = col * r.uniform(0.35, 0.7)
        win_h = floor * r.uniform(0.4, 0.6)
        glass = [_shade(_pick(r, GLASS, 8), light * k) for k in (0.8, 1.0, 1.3)]
        frame = _shade(_jitter(r, (225, 225, 220), 10), light) if r.random() < 0.5 else None
        cols = np.arange(col / 2, length - col / 2, col)
        rows = np.arange(ground + (floor - win_h) / 2, height - floor * 0.8, floor)
        if len(cols) == 0 or len(rows) == 0 or len(cols) * len(rows) > 600:
            return
        groups = [[] for _ in glass]
        frames = []
        pick = r.integers(len(glass), size=(len(rows), len(cols)))
        for i, y in enumerate(rows):
            for j, c in enumerate(cols):
                a0, a1 = (c - win_w / 2) / length, (c + win_w / 2) / length
                b0, b1 = y / height, (y + win_h) / height
                if frame is not None:
                    pad_a, pad_b = 0.12 / length, 0.12 / height
                    frames.append(cam.project(*_face_quad(face, a0 - pad_a, a1 + pad_a, b0 - pad_b, b1 + pad_b).T))
                groups[pick[i, j]].append(cam.project(*_face_quad(face, a0, a1, b0, b1).T))
        if frame is not None:
            cv.polys(frames, frame)
        for colour, polys in zip(glass, groups):
            cv.polys(polys, colour)
        if shop:  # shop windows and doors on the ground floor
            shops = []
            a = r.uniform(0.5, 2.0)
            while a < length - 1.5:
                w = r.uniform(1.0, 5.0)
                shops.append(cam.project(*_face_quad(face, a / length, min(a + w, length - 0.5) / length,
                                                     0.0, min(ground * 0.75, height * 0.5) / height).T))
                a += w + r.uniform(0.5, 3.0)
            cv.polys(shops, _shade(_pick(r, GLASS, 10), light * 0.7))

    def _wall(self, side: _Side, z0: float, z1: float):
        r, cv, cam = self.rng, self.cv, self.cam
        s = side.sign
        if r.random() < 0.5:
            self._lot_trees(side, z0, z1)
        h = r.uniform(0.8, 3.0)
        colour = _pick(r, [(160, 155, 145), (180, 175, 165), (150, 80, 60), (120, 120, 120), (200, 190, 170)], 12)
        light = self._facade_light(s)
        box = _box(s * side.prop, s * (side.prop + 0.3), 0, h, z0, z1)
        tag = cv.stuff(WALL)
        for face in ("left" if s > 0 else "right", "near", "top"):
            quad = box[list(_FACES[face])]
            cv.poly(cam.project(*quad.T), _shade(colour, light * _FACE_LIGHT[face]), tag)

    def _fence(self, side: _Side, z0: float, z1: float):
        r, cv, cam = self.rng, self.cv, self.cam
        s = side.sign
        if r.random() < 0.6:
            self._lot_trees(side, z0, z1)
        h = r.uniform(0.9, 2.2)
        x = s * side.prop
        kind = r.integers(3)  # 0 chain link, 1 bars, 2 planks
        colour = _pick(r, [(90, 95, 90), (60, 70, 60), (140, 140, 140), (130, 95, 60), (40, 40, 40)], 12)
        alpha = (0.25, 0.45, 1.0)[kind]
        plane = cam.project([x, x, x, x], [0, 0, h, h], [z0, z1, z1, z0])
        cv.blend(plane, colour, alpha, cv.stuff(FENCE))
        spacing = (0.25, 0.15, 0.18)[kind]
        zs = np.arange(z0, z1, spacing)
        if len(zs) > 400:
            zs = zs[:400]
        dark = _shade(colour, 0.7 if kind == 2 else 0.8)
        for z in zs:
            p = cam.project([x, x], [0, h], [z, z])
            cv.line(p[0], p[1], max(1.0, cam.px(0.03, z)), dark)
        for y in (h * 0.95, h * 0.05) if kind != 0 else (h * 0.97,):
            p = cam.project([x, x], [y, y], [z0, z1])
            cv.line(p[0], p[1], max(1.0, cam.px(0.05, z0)), _shade(colour, 0.9))
        for z in np.arange(z0, z1, 2.5):  # posts
            p = cam.project([x, x], [0, h * 1.02], [z, z])
            cv.line(p[0], p[1], max(1.0, cam.px(0.07, z)), _shade(colour, 0.6), cv.stuff(FENCE))

    def _green(self, side: _Side, z0: float, z1: float):
        """An open lot: terrain, bushes, trees, maybe a hedge along the sidewalk."""
        r, cv, cam = self.rng, self.cv, self.cam
        s = side.sign
        self._lot_trees(side, z0, z1)
        if r.random() < 0.5:
            h = r.uniform(0.6, 2.2)
            colour = _jitter(r, (60, 95, 40), 12)
            box = _box(s * side.prop, s * (side.prop + 1.2), 0, h, z0, z1)
            tag = cv.stuff(VEGETATION)
            for face in ("left" if s > 0 else "right", "near", "top"):
                quad = box[list(_FACES[face])]
                cv.poly(cam.project(*quad.T), _shade(colour, _FACE_LIGHT[face]), tag)

    def _lot_trees(self, side: _Side, z0: float, z1: float):
        r = self.rng
        trees = []
        for _ in range(int(r.poisson((z1 - z0) / 8))):
            x = side.sign * (side.prop + r.uniform(1.5, 12))
            trees.append((r.uniform(z0, z1), x))
        for z, x in sorted(trees, reverse=True):
            self._tree(x, z)

    def _tree(self, x: float, z: float, size: float | None = None):
        r, cv, cam = self.rng, self.cv, self.cam
        tag = cv.stuff(VEGETATION)
        size = r.uniform(0.6, 1.5) if size is None else size
        trunk_h = r.uniform(1.5, 3.5) * size
        crown = r.uniform(1.5, 3.2) * size
        bark = _jitter(r, (80, 65, 50), 10)
        tw = r.uniform(0.12, 0.25) * size
        cv.poly(cam.project([x - tw, x + tw, x + tw * 0.6, x - tw * 0.6], [0, 0, trunk_h + crown, trunk_h + crown], z),
                bark, tag)
        base = _pick(r, [(55, 90, 35), (70, 105, 45), (45, 75, 40), (95, 115, 50), (120, 110, 45)], 10)
        cy = trunk_h + crown
        blobs = []
        for _ in range(int(r.integers(5, 12))):
            bx, by = x + r.normal(0, crown * 0.45), cy + r.normal(0, crown * 0.35)
            rad = crown * r.uniform(0.4, 0.75)
            c = cam.project(bx, by, z)[0]
            blobs.append((_ellipse(c[0], c[1], cam.px(rad, z), cam.px(rad * r.uniform(0.8, 1.1), z), 16),
                          _shade(base, r.uniform(0.75, 1.2))))
        for poly, colour in blobs:
            cv.poly(poly, colour, tag)

    # -- street furniture: poles, signs, lights, trees and clutter on the sidewalks

    def _street_furniture(self):
        r = self.rng
        for side in self.sides:
            s = side.sign
            curb = side.road_edge + side.verge + 0.5
            z = r.uniform(3, 30)
            spacing = r.uniform(18, 45)
            while z < 160:  # street lamps
                if not self._in_cross(z - 1, z + 1):
                    self.add(z, self._bind(self._lamp, s * curb, z, s))
                z += spacing * r.uniform(0.9, 1.1)
            if r.random() < 0.55:  # a row of street trees along the curb
                x = s * (side.road_edge + max(side.verge / 2, 0.8) if side.verge_label == TERRAIN else curb + 0.3)
                z = r.uniform(3, 15)
                step = r.uniform(7, 18)
                size = r.uniform(0.8, 1.5)
                while z < 120:
                    if not self._in_cross(z - 2, z + 2):
                        self.add(z, self._bind(self._tree, x + r.normal(0, 0.2), z, size * r.uniform(0.85, 1.15)))
                    z += step * r.uniform(0.8, 1.2)
            for _ in range(int(r.poisson(2.5))):  # sign poles
                z = r.uniform(4, 80)
                if not self._in_cross(z - 1, z + 1):
                    self.add(z, self._bind(self._sign_pole, s * (curb + r.uniform(-0.2, 0.5)), z))
            for _ in range(int(r.poisson(3 * self.busy))):  # bins, bollards, planters, benches
                z = r.uniform(4, 60)
                x = s * (side.road_edge + side.verge + r.uniform(0.3, side.sidewalk))
                self.add(z, self._bind(self._clutter, x, z))
        if self.cross_street is not None:  # traffic lights at the junction
            zc, _ = self.cross_street
            for side in self.sides:
                z = zc - r.uniform(0.5, 2.0)
                self.add(z, self._bind(self._light_pole, side.sign * (side.road_edge + 0.6), z, side.sign))
        else:  # a pedestrian crossing mid-block
            for _ in range(int(r.choice([0, 1, 1, 2]))):
                z = r.uniform(12, 60)
                side = self.sides[int(r.integers(2))]
                self.add(z, self._bind(self._light_pole, side.sign * (side.road_edge + 0.6), z, side.sign))

    def _pole(self, x, z, h, radius, colour):
        tag = self.cv.stuff(POLE)
        self.cv.poly(self.cam.project([x - radius, x + radius, x + radius * 0.8, x - radius * 0.8],
                                      [0, 0, h, h], z), colour, tag)
        self.cv.poly(self.cam.project([x - radius, x + radius, x + radius, x - radius],
                                      [0, 0, h * 0.02 + 0.1, h * 0.02 + 0.1], z), _shade(colour, 0.8), tag)

    def _lamp(self, x, z, s):
        r, cam = self.rng, self.cam
        h = r.uniform(5.5, 9.0)
        colour = _pick(r, [(110, 115, 115), (70, 75, 80), (40, 60, 50), (150, 150, 145)], 8)
        self._pole(x, z, h, r.uniform(0.07, 0.13), colour)
        arm = r.uniform(0.8, 2.5)
        tag = self.cv.stuff(POLE)
        p = cam.project([x, x - s * arm], [h, h + 0.2], [z, z])
        self.cv.line(p[0], p[1], cam.px(0.08, z), colour, tag)
        head = cam.project([x - s * arm - 0.35, x - s * arm + 0.35, x - s * arm + 0.25, x - s * arm - 0.25],
                           [h + 0.15, h + 0.15, h + 0.35, h + 0.35], z)
        self.cv.poly(head, _shade(colour, 0.8), tag)

    def _sign(self, x, y, z, size):
        r, cv, cam = self.rng, self.cv, self.cam
        tag = cv.stuff(SIGN)
        c = cam.project(x, y, z)[0]
        rad = cam.px(size / 2, z)
        kind = r.integers(5)
        if r.random() < 0.15:  # the back of a sign: still a traffic sign in Cityscapes
            cv.poly(_ellipse(c[0], c[1], rad, rad) if kind == 0 else _ellipse(c[0], c[1], rad, rad, 4),
                    _jitter(r, (150, 150, 150), 10), tag)
            return
        if kind == 0:  # round: prohibitory or mandatory
            red = r.random() < 0.6
            outer = (200, 30, 35) if red else (30, 80, 170)
            cv.poly(_ellipse(c[0], c[1], rad, rad, 24), _jitter(r, outer, 10), tag)
            if red:
                cv.poly(_ellipse(c[0], c[1], rad * 0.75, rad * 0.75, 24), _jitter(r, (235, 235, 235), 8))
            cv.poly(_ellipse(c[0], c[1], rad * 0.3, rad * 0.15, 12), _jitter(r, (30, 30, 30), 8) if red else (240, 240, 240))
        elif kind == 1:  # triangle warning sign
            tri = np.array([[0, -1.0], [0.95, 0.7], [-0.95, 0.7]])
            cv.poly(c + tri * rad, _jitter(r, (200, 30, 35), 10), tag)
            cv.poly(c + tri * rad * 0.65, _jitter(r, (235, 235, 230), 8))
        elif kind == 2:  # rectangular information sign
            w, h = rad * r.uniform(1.0, 1.8), rad * r.uniform(0.7, 1.1)
            rect = c + np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
            colour = _pick(r, [(30, 80, 170), (30, 120, 60), (240, 240, 235), (240, 200, 40)], 10)
            cv.poly(rect, colour, tag)
            cv.poly(c + np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) * 0.6, _shade(colour, 0.55) if colour.mean() > 150 else (235, 235, 235))
        elif kind == 3:  # priority-road diamond
            dia = np.array([[0, -1.0], [1.0, 0], [0, 1.0], [-1.0, 0]])
            cv.poly(c + dia * rad, (240, 240, 240), tag)
            cv.poly(c + dia * rad * 0.65, _jitter(r, (240, 200, 30), 10))
        else:  # octagonal stop sign
            cv.poly(_ellipse(c[0], c[1], rad, rad, 8), _jitter(r, (200, 25, 30), 10), tag)
            cv.poly(_ellipse(c[0], c[1], rad * 0.5, rad * 0.12, 8), (240, 240, 240))

    def _sign_pole(self, x, z):
        r = self.rng
        h = r.uniform(2.2, 3.6)
        self._pole(x, z, h, r.uniform(0.03, 0.05), _jitter(r, (150, 150, 150), 15))
        size = r.uniform(0.5, 0.9)
        self._sign(x, h, z, size)
        if r.random() < 0.4:
            self._sign(x, h - size * 1.1, z, size * r.uniform(0.7, 1.0))

    def _traffic_light(self, x, y, z, facing_camera: bool):
        r, cv, cam = self.rng, self.cv, self.cam
        tag = cv.stuff(LIGHT)
        w, h = r.uniform(0.25, 0.35), r.uniform(0.75, 1.0)
        housing = _jitter(r, (35, 35, 35), 8) if r.random() < 0.8 else _jitter(r, (200, 180, 40), 10)
        cv.poly(cam.project([x - w / 2, x + w / 2, x + w / 2, x - w / 2], [y, y, y + h, y + h], z), housing, tag)
        if not facing_camera:
            return
        lit = r.integers(3)
        for i, colour in enumerate([(255, 50, 40), (255, 190, 40), (60, 255, 120)]):
            c = cam.project(x, y + h * (0.82 - 0.32 * i), z)[0]
            rad = cam.px(w * 0.33, z)
            cv.poly(_ellipse(c[0], c[1], rad, rad, 12), colour if i == lit else _shade(colour, 0.25))

    def _light_pole(self, x, z, s):
        r, cam = self.rng, self.cam
        h = r.uniform(3.0, 4.5)
        grey = _jitter(r, (120, 120, 120), 15)
        self._pole(x, z, h, r.uniform(0.06, 0.1), grey)
        self._traffic_light(x, h - 1.0, z, facing_camera=True)
        if r.random() < 0.5:  # a mast arm reaching over the road with a second light
            reach = r.uniform(2.5, 6.0)
            p = cam.project([x, x - s * reach], [h, h], [z, z])
            self.cv.line(p[0], p[1], cam.px(0.1, z), grey, self.cv.stuff(POLE))
            self._traffic_light(x - s * reach, h - 1.0, z, facing_camera=True)
        if r.random() < 0.5:
            self._sign(x, h + 0.45, z, r.uniform(0.5, 0.7))

    def _clutter(self, x, z):
        """Bins, bollards, planters, benches: 'static' (void) in Cityscapes; the odd pram is 'dynamic'."""
        r, cv = self.rng, self.cv
        kind = r.integers(4)
        label = DYNAMIC if r.random() < 0.1 else STATIC
        tag = cv.stuff(label)
        if kind == 0:
            w, d, h = r.uniform(0.4, 0.7), 0.5, r.uniform(0.8, 1.2)
        elif kind == 1:
            w, d, h = 0.15, 0.15, r.uniform(0.6, 1.0)
        elif kind == 2:
            w, d, h = r.uniform(0.8, 1.8), 0.8, r.uniform(0.4, 0.8)
            if r.random() < 0.5:
                self._bush(x, z, h)
        else:
            w, d, h = r.uniform(1.2, 2.0), 0.5, r.uniform(0.45, 0.9)
        colour = _pick(r, [(60, 60, 60), (40, 90, 60), (150, 140, 120), (180, 120, 40), (90, 60, 40), (120, 130, 140)], 12)
        box = _box(x - w / 2, x + w / 2, 0, h, z, z + d)
        self._hexa(box, colour, tag)

    def _bush(self, x, z, y0):
        c = self.cam.project(x, y0 + 0.4, z)[0]
        self.cv.poly(_ellipse(c[0], c[1], self.cam.px(0.6, z), self.cam.px(0.45, z), 14),
                     _jitter(self.rng, (60, 100, 45), 12), self.cv.stuff(VEGETATION))

    # -- vehicles

    def _hexa(self, corners: np.ndarray, colour, tag: Tag | None, light=None):
        """Paints the faces of a convex hexahedron that face the camera."""
        light = _FACE_LIGHT if light is None else light
        centre = corners.mean(axis=0)
        eye = np.array([0.0, self.cam.h, 0.0])
        faces = {}
        for name, idx in _FACES.items():
            quad = corners[list(idx)]
            n = np.cross(quad[1] - quad[0], quad[3] - quad[0])
            mid = quad.mean(axis=0)
            if np.dot(n, mid - centre) < 0:
                n = -n
            if np.dot(n, eye - mid) > 1e-9:
                self.cv.poly(self.cam.project(*quad.T), _shade(colour, light[name]), tag)
                faces[name] = quad
        return faces

    def _traffic(self):
        r = self.rng
        busy = self.busy
        lanes = [(0.0, +1, 10.0)]  # (lane centre, direction +1 away / -1 oncoming, nearest depth)
        lanes += [(-self.lane * (i + 1), -1, 7.0) for i in range(self.lanes_left)]
        lanes += [(self.lane * (i + 1), +1, 6.0) for i in range(self.lanes_right)]
        for x_lane, direction, z_min in lanes:
            if self.tram and abs(x_lane - self.tram_x) < 0.1 and r.random() < 0.7:
                z = r.uniform(z_min + 4, 60)
                self.add(z, self._bind(self._vehicle, "train", x_lane, z, direction))
                continue
            z = z_min + r.exponential(30 / busy)
            while z < 180:
                kind = str(r.choice(["car", "truck", "bus", "motorcycle", "van"], p=[0.72, 0.07, 0.05, 0.06, 0.10]))
                x = x_lane + r.normal(0, 0.25)
                self.add(z, self._bind(self._vehicle, kind, x, z, direction))
                z += {"bus": 13, "truck": 9}.get(kind, 5) + r.exponential(30 / busy)
        for side in self.sides:  # parked cars along the curb or on the parking strip
            if r.random() > 0.45 * busy + 0.1:
                continue
            s = side.sign
            on_strip = side.verge_label == PARKING and side.verge > 0
            x = s * (side.road_edge + side.verge / 2 if on_strip else side.road_edge - 1.05)
            z = r.uniform(2, 10)
            while z < 110:
                if not self._in_cross(z, z + 5) and r.random() < 0.85:
                    kind = "van" if r.random() < 0.15 else "car"
                    self.add(z, self._bind(self._vehicle, kind, x + r.normal(0, 0.1), z, int(r.choice([-1, 1]))))
                z += r.uniform(4.6, 6.5) + (r.exponential(8) if r.random() < 0.3 else 0)
        for side in self.sides:  # riders near the curb
            for _ in range(int(r.poisson(0.8 * busy))):
                z = r.uniform(5, 70)
                x = side.sign * (side.road_edge - r.uniform(0.6, 1.2))
                kind = "motorcycle" if r.random() < 0.3 else "bicycle"
                heading = (math.pi / 2 if side.sign > 0 else -math.pi / 2) + r.normal(0, 0.1)
                self.add(z, self._bind(self._two_wheeler, kind, x, z, heading, True))

    def _shadow(self, x0, x1, z0, z1):
        quad = self._ground_quad(x0 - 0.15, x1 + 0.15, z0 - 0.2, z1 + 0.25)
        self.cv.darken(quad, self.rng.uniform(0.3, 0.55))

    def _wheels_under(self, x0, x1, z0, z1, r_w, tag, axles):
        """Dark tyres seen under the body: the cue that makes a box a vehicle from behind."""
        tyre = _jitter(self.rng, (25, 25, 25), 5)
        for za in axles:
            for xa, xb in ((x0 + 0.05, x0 + 0.3), (x1 - 0.3, x1 - 0.05)):
                self._hexa(_box(xa, xb, 0, 2 * r_w, za - r_w, za + r_w), tyre, tag)

    def _wheel_discs(self, faces, r_w, axles, tag):
        """Tyres and rims on the visible side face of a vehicle, drawn in that face's plane."""
        cam = self.cam
        side = faces.get("left") if "left" in faces else faces.get("right")
        if side is None:
            return
        xs = side[0, 0] + (-0.02 if side is faces.get("left") else 0.02)
        t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        for za in axles:
            for rad, colour, tg in ((r_w, (25, 25, 25), tag), (r_w * 0.55, (150, 150, 155), None)):
                pts = cam.project(np.full(20, xs), r_w + rad * np.sin(t), za + rad * np.cos(t))
                self.cv.poly(pts, _jitter(self.rng, colour, 6), tg)

    def _vehicle(self, kind, x, z0, direction):
        r, cv = self.rng, self.cv
        if kind == "motorcycle":
            self._two_wheeler("motorcycle", x, z0, (math.pi / 2) * direction, True)
            return
        label = {"car": CAR, "van": CAR, "truck": TRUCK, "bus": BUS, "train": TRAIN}[kind]
        w, length, clearance, r_w = {
            "car": (r.uniform(1.65, 1.95), r.uniform(3.7, 4.9), 0.25, 0.31),
            "van": (r.uniform(1.85, 2.05), r.uniform(4.6, 5.8), 0.3, 0.34),
            "truck": (r.uniform(2.3, 2.55), r.uniform(6.5, 11.0), 0.55, 0.5),
            "bus": (2.55, r.choice([12.0, 12.0, 18.0]), 0.35, 0.5),
            "train": (2.65, r.uniform(25, 40), 0.5, 0.35),
        }[kind]
        x0, x1, z1 = x - w / 2, x + w / 2, z0 + length
        tag = cv.thing(label)
        self._shadow(x0, x1, z0, z1)
        axles = [z0 + 0.8, z1 - 0.8] if kind not in ("bus", "truck", "train") else [z0 + 1.2, z1 - 2.5, z1 - 1.2]
        if kind == "bus" and length > 15:
            axles.append(z0 + length / 2)
        self._wheels_under(x0, x1, z0, z1, r_w, tag, axles)
        if kind == "car":
            self._car(x0, x1, z0, z1, clearance, r_w, axles, direction, tag)
        elif kind == "van":
            self._van(x0, x1, z0, z1, clearance, r_w, axles, direction, tag)
        elif kind == "truck":
            self._truck(x0, x1, z0, z1, clearance, r_w, axles, direction, tag)
        else:
            self._long_vehicle(kind, x0, x1, z0, z1, clearance, r_w, axles, direction, tag)

    def _lights(self, face, direction, colour_body):
        """Tail lights and number plate (leaving) or headlights and grille (oncoming) on the near face."""
        r, cv, cam = self.rng, self.cv, self.cam
        lamp = _jitter(r, (200, 30, 30), 15) if direction > 0 else _jitter(r, (235, 235, 220), 10)
        lw = r.uniform(0.1, 0.2)
        lh = r.uniform(0.15, 0.3)
        lb = r.uniform(0.45, 0.65)
        for a0 in (0.02, 0.98 - lw):
            cv.poly(cam.project(*_face_quad(face, a0, a0 + lw, lb, lb + lh).T), lamp)
        if direction > 0:
            cv.poly(cam.project(*_face_quad(face, 0.38, 0.62, 0.22, 0.42).T), (235, 235, 230))
        else:
            cv.poly(cam.project(*_face_quad(face, 0.25, 0.75, 0.3, 0.55).T), _shade(colour_body, 0.35))

    def _car(self, x0, x1, z0, z1, clearance, r_w, axles, direction, tag):
        r = self.rng
        colour = _pick(r, CAR_COLOURS, 10)
        body_top = r.uniform(0.85, 1.05)
        roof = body_top + r.uniform(0.45, 0.62)
        faces = self._hexa(_box(x0, x1, clearance, body_top, z0, z1), colour, tag)
        self._wheel_discs(faces, r_w, axles, tag)
        length = z1 - z0
        back = r.uniform(0.05, 0.3) * length if direction > 0 else r.uniform(0.25, 0.35) * length
        front = r.uniform(0.25, 0.35) * length if direction > 0 else r.uniform(0.05, 0.3) * length
        inset, slope = 0.06, r.uniform(0.3, 0.6)
        cab = _box(x0 + inset, x1 - inset, body_top, roof, z0 + back, z1 - front)
        cab[4:, 0] += np.array([1, -1, -1, 1]) * 0.12  # narrower roof
        cab[4:, 2] += np.array([1, 1, -1, -1]) * slope  # raked windows
        cab_faces = self._hexa(cab, colour, tag)
        self._glass(cab_faces)
        if "near" in faces:
            self._lights(faces["near"], direction, colour)

    def _glass(self, faces):
        r, cv, cam = self.rng, self.cv, self.cam
        glass = _pick(r, GLASS, 8)
        for name, quad in faces.items():
            if name in ("near", "far"):
                cv.poly(cam.project(*_face_quad(quad, 0.07, 0.93, 0.08, 0.9).T), glass)
            elif name in ("left", "right"):
                cv.poly(cam.project(*_face_quad(quad, 0.08, 0.47, 0.1, 0.88).T), _shade(glass, 0.9))
                cv.poly(cam.project(*_face_quad(quad, 0.53, 0.92, 0.1, 0.88).T), _shade(glass, 0.9))

    def _van(self, x0, x1, z0, z1, clearance, r_w, axles, direction, tag):
        r, cv, cam = self.rng, self.cv, self.cam
        colour = _pick(r, CAR_COLOURS[:8], 10)
        top = r.uniform(1.9, 2.4)
        faces = self._hexa(_box(x0, x1, clearance, top, z0, z1), colour, tag)
        self._wheel_discs(faces, r_w, axles, tag)
        if "near" in faces:
            cv.poly(cam.project(*_face_quad(faces["near"], 0.08, 0.92, 0.55, 0.9).T), _pick(r, GLASS, 8))
            self._lights(faces["near"], direction, colour)
        for name in ("left", "right"):
            if name in faces:
                cv.poly(cam.project(*_face_quad(faces[name], 0.05, 0.95, 0.6, 0.88).T), _pick(r, GLASS, 8))

    def _truck(self, x0, x1, z0, z1, clearance, r_w, axles, direction, tag):
        r, cv, cam = self.rng, self.cv, self.cam
        cab_len = r.uniform(1.8, 2.4)
        cab_colour = _pick(r, CAR_COLOURS, 12)
        box_colour = _pick(r, [(235, 235, 235), (200, 200, 200), (150, 150, 155), (60, 90, 140), (170, 40, 40)], 12)
        cab_h, box_h = r.uniform(2.6, 3.2), r.uniform(3.0, 3.9)
        if direction > 0:  # leaving: cargo box near, cab far
            cargo, cab = (z0, z1 - cab_len - 0.3), (z1 - cab_len, z1)
        else:
            cab, cargo = (z0, z0 + cab_len), (z0 + cab_len + 0.3, z1)
        parts = [(cab, cab_h, cab_colour), (cargo, box_h, box_colour)]
        parts.sort(key=lambda p: -p[0][0])  # far part first
        for (za, zb), h, colour in parts:
            faces = self._hexa(_box(x0, x1, clearance, h, za, zb), colour, tag)
            self._wheel_discs(faces, r_w, [a for a in axles if za <= a <= zb], tag)
            if (za, zb) == cab and "near" in faces:
                cv.poly(cam.project(*_face_quad(faces["near"], 0.06, 0.94, 0.5, 0.88).T), _pick(r, GLASS, 8))
                self._lights(faces["near"], direction, colour)
            elif "near" in faces:
                cv.poly(cam.project(*_face_quad(faces["near"], 0.495, 0.505, 0.05, 0.97).T), _shade(colour, 0.6))
                self._lights(faces["near"], direction, colour)

    def _long_vehicle(self, kind, x0, x1, z0, z1, clearance, r_w, axles, direction, tag):
        r, cv, cam = self.rng, self.cv, self.cam
        if kind == "bus":
            colour = _pick(r, [(235, 200, 40), (240, 240, 235), (200, 40, 40), (40, 90, 170), (60, 140, 80)], 10)
            h = r.uniform(2.9, 3.2)
        else:
            colour = _pick(r, [(230, 230, 230), (200, 40, 40), (240, 200, 40), (60, 110, 170), (50, 50, 55)], 10)
            h = r.uniform(3.3, 3.6)
        faces = self._hexa(_box(x0, x1, clearance, h, z0, z1), colour, tag)
        self._wheel_discs(faces, r_w, axles, tag)
        glass = _pick(r, GLASS, 8)
        for name, quad in faces.items():
            if name in ("left", "right"):
                cv.poly(cam.project(*_face_quad(quad, 0.03, 0.97, 0.45, 0.85).T), glass)
                if kind == "bus":
                    cv.poly(cam.project(*_face_quad(quad, 0.0, 1.0, 0.2, 0.3).T), _shade(colour, 0.7))
            elif name == "near":
                cv.poly(cam.project(*_face_quad(quad, 0.06, 0.94, 0.45, 0.9).T), glass)
                self._lights(quad, direction, colour)
        if kind == "train":  # the pantograph: a tram's signature
            p = cam.project([(x0 + x1) / 2] * 2, [h, h + 1.2], [z0 + 5] * 2)
            cv.line(p[0], p[1], cam.px(0.05, z0 + 5), (40, 40, 40), tag)

    # -- two-wheelers and people

    def _frame(self, x, z, heading):
        """Maps bike/person-local (forward a, up v, lateral b) to world points."""
        ca, sa = math.cos(heading), math.sin(heading)

        def world(a, v, b=0.0):
            a, v, b = (np.asarray(t, dtype=np.float64) for t in (a, v, b))
            return x + a * ca - b * sa, v, z + a * sa + b * ca

        return world

    def _two_wheeler(self, kind, x, z, heading, ridden):
        r, cv, cam = self.rng, self.cv, self.cam
        world = self._frame(x, z, heading)
        label = BICYCLE if kind == "bicycle" else MOTORCYCLE
        tag = cv.thing(label)
        rw = r.uniform(0.3, 0.36) if kind == "bicycle" else r.uniform(0.28, 0.33)
        base = 0.52 if kind == "bicycle" else 0.7  # half the wheelbase
        colour = _pick(r, CAR_COLOURS + CLOTHES, 12)
        zmid = max(z, 1.0)
        self._shadow_ellipse(world, base + rw, 0.35)
        t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        tyre_w = 0.04 if kind == "bicycle" else 0.11
        for a in (-base, base):
            X, Y, Z = world(a + rw * np.cos(t), rw + rw * np.sin(t), 0.0)
            ring = cam.project(X, Y, Z)
            if kind == "bicycle":  # the label covers the wheel; the image shows spokes and background
                cv.label_only(ring, tag)
                cv.outline(ring, cam.px(tyre_w, zmid), (25, 25, 25))
                hub = cam.project(*world(a, rw, 0.0))[0]
                for ang in np.linspace(0, np.pi, 4, endpoint=False):
                    d = np.array([math.cos(ang), math.sin(ang)]) * cam.px(rw, zmid) * 0.9
                    cv.line(hub - d, hub + d, 1, (120, 120, 120))
            else:
                cv.poly(ring, (22, 22, 22), tag)
                X, Y, Z = world(a + rw * 0.55 * np.cos(t), rw + rw * 0.55 * np.sin(t), 0.0)
                cv.poly(cam.project(X, Y, Z), (110, 110, 115), tag)
        if kind == "bicycle":
            pts = {"rear": (-base, rw), "front": (base, rw), "crank": (-0.05, rw),
                   "seat": (-0.2, rw + 0.55), "head": (base - 0.12, rw + 0.62), "bar": (base - 0.16, rw + 0.75)}
            P = {k: cam.project(*world(a, v, 0.0))[0] for k, (a, v) in pts.items()}
            thick = cam.px(0.05, zmid)
            for a, b in (("rear", "crank"), ("crank", "seat"), ("seat", "rear"), ("seat", "head"),
                         ("crank", "head"), ("head", "front"), ("head", "bar")):
                cv.line(P[a], P[b], thick, colour, tag)
            bar = cam.project(*world([base - 0.16] * 2, [rw + 0.75] * 2, [-0.28, 0.28]))
            cv.line(bar[0], bar[1], thick, (40, 40, 40), tag)
            saddle = cam.project(*world([-0.3, -0.1], [rw + 0.58] * 2, [0.0, 0.0]))
            cv.line(saddle[0], saddle[1], thick * 1.6, (30, 30, 30), tag)
            seat_h, bar_pt = rw + 0.58, (base - 0.16, rw + 0.75)
        else:
            hull = []
            for b in (-0.25, 0.25):
                for a, v in ((-base - 0.2, rw + 0.35), (-base + 0.1, rw + 0.5), (0.1, rw + 0.55), (base - 0.1, rw + 0.75),
                             (base, rw + 0.3), (-0.1, rw - 0.1), (-base + 0.2, rw)):
                    hull.append(cam.project(*world(a, v, b))[0])
            hull = cv2.convexHull(np.array(hull, np.float32)).reshape(-1, 2)
            cv.poly(hull, colour, tag)
            tank = [cam.project(*world(a, v, 0.0))[0] for a, v in ((-0.3, rw + 0.55), (0.3, rw + 0.62), (0.35, rw + 0.4), (-0.2, rw + 0.35))]
            cv.poly(np.array(tank), _shade(colour, 1.2), tag)
            bar = cam.project(*world([base - 0.1] * 2, [rw + 0.85] * 2, [-0.38, 0.38]))
            cv.line(bar[0], bar[1], cam.px(0.05, zmid), (40, 40, 40), tag)
            seat_h, bar_pt = rw + 0.62, (base - 0.1, rw + 0.85)
        if ridden:
            self._person(x, z, heading, rider_on=(seat_h, bar_pt, kind))

    def _shadow_ellipse(self, world, half_len, half_width):
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        X, Y, Z = world(half_len * np.cos(t), 0.0, half_width * np.sin(t))
        if np.min(Z) > _NEAR:
            self.cv.darken(self.cam.project(X, Y, Z), self.rng.uniform(0.45, 0.7))

    def _people(self):
        r = self.rng
        busy = self.busy
        for side in self.sides:
            s = side.sign
            x_in, x_out = side.road_edge + side.verge + 0.3, side.prop - 0.2
            if x_out <= x_in:
                continue
            n = int(r.poisson(9 * busy ** 1.2))
            spots = []
            for _ in range(n):
                z = 3 + r.exponential(25)
                if z > 120:
                    continue
                group = int(r.choice([1, 1, 1, 2, 2, 3, 4]))
                x = s * r.uniform(x_in, x_out)
                heading = (math.pi / 2 if r.random() < 0.5 else -math.pi / 2) + r.normal(0, 0.3)
                if r.random() < 0.25:  # standing around, facing anywhere
                    heading = r.uniform(-math.pi, math.pi)
                for g in range(group):
                    spots.append((z + r.uniform(-0.6, 0.6) * g, x + s * r.uniform(-0.5, 0.5) * g, heading))
            for z, x, heading in spots:
                if z > 1.5:
                    self.add(z, self._bind(self._person, x, z, heading))
            for _ in range(int(r.poisson(0.6))):  # parked bicycles
                z = r.uniform(4, 50)
                x = s * r.uniform(x_in, x_out)
                self.add(z, self._bind(self._two_wheeler, "bicycle", x, z, r.uniform(-0.4, 0.4), False))
        if self.cross_street is not None:  # people on the zebra crossing
            zc, _ = self.cross_street
            for _ in range(int(r.poisson(2.5 * busy))):
                z = zc - r.uniform(1.5, 4.0)
                x = r.uniform(-self.sides[0].road_edge, self.sides[1].road_edge)
                heading = 0.0 if r.random() < 0.5 else math.pi
                self.add(z, self._bind(self._person, x, z, heading + r.normal(0, 0.15)))
        for _ in range(int(r.poisson(0.4))):  # someone crossing mid-block
            z = r.uniform(8, 40)
            x = r.uniform(-self.sides[0].road_edge, self.sides[1].road_edge)
            self.add(z, self._bind(self._person, x, z, r.choice([0.0, math.pi]) + r.normal(0, 0.2)))

    def _person(self, x, z, heading, rider_on=None):
        """A person as limbs in 3-D, so front, back and side views all come out of one model.

        ``heading`` is the walking direction in the ground plane (0 = +X, pi/2 = away from the
        camera). With ``rider_on=(seat height, handlebar (a, v), kind)`` the person sits on a bike.
        """
        r, cv, cam = self.rng, self.cv, self.cam
        world = self._frame(x, z, heading)
        tag = cv.thing(RIDER if rider_on else PERSON)
        height = r.uniform(1.55, 1.95) if r.random() > 0.12 or rider_on else r.uniform(1.0, 1.4)
        k = height / 1.75
        skin, hair = _pick(r, SKIN, 8), _pick(r, HAIR, 8)
        top, bottom = _pick(r, CLOTHES, 15), _pick(r, CLOTHES, 15)
        shoes = _jitter(r, (35, 30, 30), 10)
        zmid = max(z, 1.0)
        if rider_on is None:
            self._shadow_ellipse(world, 0.35 * k, 0.3 * k)
            hip = np.array([0.0, 0.93 * k])
            lean = r.normal(0, 0.03)
            neck = np.array([lean, 1.5 * k])
            stride = r.uniform(0, 0.35) * k if r.random() < 0.75 else 0.0
            phase = r.uniform(-1, 1)
            feet = [(stride * phase, 0.0), (-stride * phase, 0.0)]
            knees = [((hip[0] + f[0]) / 2 + 0.03 * k, 0.5 * k) for f in feet]
            swing = stride * 0.6
            hands = [(-swing * phase, 0.82 * k), (swing * phase, 0.82 * k)]
            elbows = [(h[0] / 2, 1.12 * k) for h in hands]
        else:
            seat_h, (bar_a, bar_v), kind = rider_on
            hip = np.array([-0.22, seat_h + 0.08])
            lean = 0.25 if kind == "bicycle" else 0.35
            neck = hip + np.array([lean, 0.6 * k])
            feet = [(0.05, 0.25), (-0.1, 0.45)] if kind == "bicycle" else [(0.0, 0.3), (0.0, 0.3)]
            knees = [(0.2, seat_h - 0.05), (0.15, seat_h + 0.05)]
            hands = [(bar_a, bar_v), (bar_a, bar_v)]
            elbows = [((neck[0] + bar_a) / 2 + 0.05, (neck[1] + bar_v) / 2 - 0.05)] * 2
        # Which side of the body faces the camera decides what is painted last.
        normal = np.array([-math.sin(heading), math.cos(heading)])  # lateral +b in (X, Z)
        to_cam = -np.array([x, z])
        near = 1.0 if normal @ to_cam > 0 else -1.0
        shoulder_b, hip_b = 0.2 * k, 0.1 * k
        leg_w, arm_w = cam.px(0.14 * k, zmid), cam.px(0.085 * k, zmid)

        def P(a, v, b):
            return cam.project(*world(a, v, b))[0]

        def limb(points, b, width, colour, end_colour=None):
            pts = [P(a, v, b) for a, v in points]
            for p0, p1 in zip(pts[:-1], pts[1:]):
                cv.line(p0, p1, width, colour, tag)
            if end_colour is not None:
                cv.line(pts[-1], pts[-1], width * 1.1, end_colour, tag)

        def legs_and_arms(side_sign):
            i = 0 if side_sign < 0 else 1
            b_hip, b_sh = side_sign * hip_b, side_sign * shoulder_b * 0.9
            limb([tuple(hip), knees[i], feet[i]], b_hip, leg_w, bottom, shoes)
            return lambda: limb([(neck[0], neck[1] - 0.06 * k), elbows[i], hands[i]], b_sh, arm_w, top, skin)

        far_arm = legs_and_arms(-near)
        far_arm()
        near_arm = legs_and_arms(near)
        torso = []
        for a, v, b in ((hip[0], hip[1], hip_b * 1.5), (neck[0], neck[1] - 0.05 * k, shoulder_b)):
            for db in (-b, b):
                for da in (-0.11 * k, 0.11 * k):
                    torso.append(P(a + da, v, db))
        if r.random() < 0.25 and rider_on is None:  # a long coat hides the thighs
            for db in (-hip_b * 1.8, hip_b * 1.8):
                for da in (-0.13 * k, 0.13 * k):
                    torso.append(P(hip[0] + da, 0.55 * k, db))
        cv.poly(cv2.convexHull(np.array(torso, np.float32)).reshape(-1, 2), top, tag)
        if r.random() < 0.2 and rider_on is None:  # a bag or backpack
            c = P(-0.18 * k, 1.2 * k, 0.0)
            cv.poly(_ellipse(c[0], c[1], cam.px(0.16 * k, zmid), cam.px(0.2 * k, zmid), 10), _pick(r, CLOTHES, 10), tag)
        near_arm()
        head = P(neck[0], neck[1] + 0.13 * k, 0.0)
        rx, ry = cam.px(0.095 * k, zmid), cam.px(0.12 * k, zmid)
        cv.poly(_ellipse(head[0], head[1], rx, ry, 14), skin, tag)
        hair_poly = _ellipse(head[0], head[1] - ry * 0.25, rx * 1.05, ry * 0.85, 14)
        if rider_on is not None and r.random() < 0.6:  # helmet
            cv.poly(hair_poly, _pick(r, CLOTHES, 10), tag)
        else:
            facing_away = math.sin(heading) > 0.5  # walking away: the back of the head
            cv.poly(hair_poly if not facing_away else _ellipse(head[0], head[1], rx, ry, 14), hair, tag)

    # -- void the evaluators must ignore

    def _ego_and_border(self):
        r, cv, cam = self.rng, self.cv, self.cam
        if r.random() < 0.55:  # the ego car's bonnet, as in every Cityscapes frame from that car
            top = cam.H * r.uniform(0.82, 0.93)
            sag = cam.H * r.uniform(0.03, 0.08)
            xs = np.linspace(-0.1, 1.1, 40) * cam.W
            ys = top + sag * ((xs / cam.W - 0.5) * 2) ** 2
            poly = np.concatenate([np.stack([xs, ys], 1), [[xs[-1], cam.H + 5], [xs[0], cam.H + 5]]])
            paint = _pick(r, [(20, 20, 25), (60, 65, 75), (150, 150, 155), (30, 40, 70), (200, 200, 200)], 8)
            cv.poly(poly, paint, cv.stuff(EGO))
            # The windscreen reflection: a lighter band along the bonnet's edge.
            band = np.concatenate([np.stack([xs, ys], 1), np.stack([xs, ys + sag * 0.5], 1)[::-1]])
            cv.poly(band, _shade(paint, 1.5) + 20)
            if r.random() < 0.5:  # the star on the bonnet
                c = (cam.W * 0.5, top + sag * 0.02)
                cv.poly(_ellipse(c[0], c[1] - cam.H * 0.012, cam.H * 0.01, cam.H * 0.014, 10), (200, 200, 205), cv.stuff(EGO))
        if r.random() < 0.35:  # rectification border: a label only, like the real one
            w = max(1, int(cam.W * r.uniform(0.002, 0.008)))
            for sl in (np.s_[:, :w], np.s_[:, -w:], np.s_[-w:, :]):
                cv.labels[sl] = BORDER
                cv.instances[sl] = BORDER

    # -- camera

    def _finish(self) -> np.ndarray:
        r, cam = self.rng, self.cam
        img = self.cv.image
        labels = self.cv.labels
        H, W = cam.H, cam.W
        scale = W / 2048
        noise = self._noise_fields(H, W, scale)
        amp = _TEXTURE * r.uniform(0.6, 1.4, size=(1, 4)).astype(np.float32)
        tex = np.ones((H, W), np.float32)
        for i, field in enumerate(noise):
            tex += amp[labels, i] * field
        sky = labels == SKY
        clouds = np.clip(noise[3] - 0.3, 0, None) * r.uniform(0, 50)  # sparse puffs, not a speckle
        img *= tex[..., None]
        img[sky] += clouds[sky, None]
        # Optics and lighting: vignetting, exposure, contrast, white balance, gamma, blur.
        yy, xx = np.ogrid[:H, :W]
        rad2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
        img *= (1 - r.uniform(0.0, 0.25) * rad2 / 2).astype(np.float32)[..., None]
        gain = r.uniform(0.7, 1.25) * r.uniform(0.93, 1.07, 3)
        img *= gain.astype(np.float32)
        contrast = r.uniform(0.75, 1.15)
        img[:] = (img - 110) * contrast + 110
        np.clip(img, 0, 255, out=img)
        gamma = r.uniform(0.85, 1.2)
        img[:] = 255.0 * (img / 255.0) ** gamma
        sigma = r.uniform(0.4, 1.0) * max(scale * 1.5, 0.35)  # optics: never razor sharp
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        img += r.standard_normal((H, W, 3), dtype=np.float32) * np.float32(r.uniform(1.0, 4.0))
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    def _noise_fields(self, H, W, scale):
        """Pixel noise and blotches at 4, 16 and 64 (Cityscapes-resolution) pixels."""
        r = self.rng
        fields = [r.standard_normal((H, W), dtype=np.float32)]
        for cell in (4, 16, 64):
            c = max(cell * scale, 1.0)
            small = r.standard_normal((max(int(H / c), 2), max(int(W / c), 2)), dtype=np.float32)
            fields.append(cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC))
        return fields


def _texture_table() -> np.ndarray:
    """Per-labelId amplitude of the 4 noise fields: how grainy and blotchy each material is."""
    t = np.full((256, 4), 0.02, np.float32)
    t[:, 0] = 0.03
    t[ROAD] = (0.04, 0.03, 0.025, 0.04)
    t[SIDEWALK] = (0.04, 0.04, 0.03, 0.03)
    t[PARKING] = t[ROAD]
    t[BUILDING] = (0.025, 0.025, 0.025, 0.03)
    t[WALL] = (0.04, 0.04, 0.03, 0.03)
    t[FENCE] = (0.05, 0.04, 0.02, 0.02)
    t[VEGETATION] = (0.1, 0.16, 0.08, 0.04)
    t[TERRAIN] = (0.08, 0.1, 0.06, 0.05)
    t[SKY] = (0.004, 0.004, 0.006, 0.01)
    for thing in (PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE):
        t[thing] = (0.02, 0.015, 0.01, 0.01)
    return t


_TEXTURE = _texture_table()


# ----------------------------------------------------------------------------- files


def render_scene(seed: int, split: str, index: int, size=DEFAULT_SIZE):
    """(rgb, labelIds, instanceIds) of one scene; the same arguments always give the same arrays."""
    height, width = size
    street = Street(height, width, scene_rng(seed, split, index))
    rgb = street.render()
    return rgb, street.cv.labels, street.cv.instances


def colour_labels(label_ids: np.ndarray) -> np.ndarray:
    """gtFine_color: RGBA, label table colours, opaque (as Cityscapes writes it)."""
    rgba = np.empty(label_ids.shape + (4,), np.uint8)
    rgba[..., :3] = LABEL_COLORS[label_ids]
    rgba[..., 3] = 255
    return rgba


def panoptic_colouring(label_ids: np.ndarray, instance_ids: np.ndarray) -> np.ndarray:
    """A picture of the ground truth: class colours, each thing instance shaded and outlined."""
    rgb = LABEL_COLORS[label_ids].astype(np.float32)
    thing = instance_ids >= 1000
    k = (instance_ids % 1000).astype(np.float32)
    shade = 0.55 + 0.45 * ((k * 0.618034) % 1.0)
    rgb[thing] = rgb[thing] * shade[thing, None] + (1 - shade[thing, None]) * 90
    ids = instance_ids.astype(np.int32)
    edge = np.zeros(ids.shape, bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= ids[1:, :] != ids[:-1, :]
    near_thing = thing.copy()
    near_thing[:, 1:] |= thing[:, :-1]
    near_thing[1:, :] |= thing[:-1, :]
    rgb[edge & near_thing] = 255
    return rgb.astype(np.uint8)


def _thumbnail(rgb, label_ids, instance_ids, width):
    h, w = label_ids.shape
    size = (width, max(1, round(h * width / w)))
    img = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    lab = cv2.resize(label_ids, size, interpolation=cv2.INTER_NEAREST)
    ins = cv2.resize(instance_ids, size, interpolation=cv2.INTER_NEAREST)
    return img, panoptic_colouring(lab, ins)


def _write_png(path: Path, array: np.ndarray):
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")


def write_scene(root: str | Path, split: str, index: int, seed: int, size=DEFAULT_SIZE, thumb_width: int = 0):
    """Renders scene ``index`` and writes its image and gtFine files; returns a thumbnail pair when asked."""
    rgb, labels, instances = render_scene(seed, split, index, size)
    paths = layout.image_paths(root, split, image_id_of(split, index))
    for p in (paths.left_img, paths.label_ids):
        p.parent.mkdir(parents=True, exist_ok=True)
    _write_png(paths.left_img, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    _write_png(paths.label_ids, labels)
    _write_png(paths.instance_ids, instances)
    _write_png(paths.color, cv2.cvtColor(colour_labels(labels), cv2.COLOR_RGBA2BGRA))
    return _thumbnail(rgb, labels, instances, thumb_width) if thumb_width else None


# ----------------------------------------------------------------------------- the panoptic conversion


def convert_panoptic(root: str | Path, split: str, workers: int = 1, progress=None) -> Path:
    """Panoptic PNGs and json of ``split`` made by cityscapesscripts' ``convert2panoptic``.

    The converter walks the images one by one in a single process, which at 1024x2048 costs more
    than rendering them. So each worker runs the converter itself on a shard of the images (a
    folder of links to their instanceIds files), and the shards' json files are joined in the
    converter's own sorted order and format: the result is byte-identical to one call on the
    whole split.
    """
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    root = Path(root)
    gt = root / "gtFine"
    files = sorted(str(p) for p in gt.glob(f"{split}/*/*_instanceIds.png"))
    if not files:
        raise UsageError(f"no *_instanceIds.png under {gt / split}; nothing to convert")
    out_dir = layout.panoptic_dir(root, split)
    out_json = layout.panoptic_json(root, split)
    workers = max(1, min(workers, len(files)))
    if workers == 1:
        with contextlib.redirect_stdout(io.StringIO()):
            convert2panoptic(cityscapesPath=str(gt), outputFolder=str(gt), useTrainId=False, setNames=[split])
        if progress is not None:
            progress(len(files))
        return out_json
    scratch = gt / f".panoptic_{split}_shards"
    shutil.rmtree(scratch, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = [files[i::workers] for i in range(workers)]
    jobs = []
    for i, shard in enumerate(shards):
        shard_root = scratch / str(i)
        for f in shard:
            link = shard_root / split / Path(f).parent.name / Path(f).name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(f), link)
        jobs.append((str(shard_root), str(out_dir), split))
    try:
        with process_pool(workers) as pool:
            for n in pool.imap_unordered(_convert_shard, jobs):
                if progress is not None:
                    progress(n)
        merged = None
        for shard_root, _, _ in jobs:
            with open(Path(shard_root) / f"cityscapes_panoptic_{split}.json") as f:
                part = json.load(f)
            if merged is None:
                merged = part
            else:
                merged["images"] += part["images"]
                merged["annotations"] += part["annotations"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # The converter lists images in the sorted order of their files; restore it across shards.
    rank = {Path(f).name.replace("_gtFine_instanceIds.png", ""): i for i, f in enumerate(files)}
    merged["images"].sort(key=lambda im: rank[im["id"]])
    merged["annotations"].sort(key=lambda a: rank[a["image_id"]])
    with open(out_json, "w") as f:
        json.dump(merged, f, sort_keys=True, indent=4)
    return out_json


def _convert_shard(job) -> int:
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    shard_root, out_dir, split = job
    # The converter writes its json and PNG folder inside the shard; the PNGs then join the others.
    with contextlib.redirect_stdout(io.StringIO()):
        convert2panoptic(cityscapesPath=shard_root, outputFolder=shard_root, useTrainId=False, setNames=[split])
    produced = Path(shard_root) / f"cityscapes_panoptic_{split}"
    n = 0
    for png in sorted(produced.iterdir()):
        shutil.move(str(png), os.path.join(out_dir, png.name))
        n += 1
    return n


# ----------------------------------------------------------------------------- the whole split


def _write_job(job):
    root, split, index, seed, size, thumb_width = job
    return index, write_scene(root, split, index, seed, size, thumb_width)


def generate(
    out: str | Path,
    split: str,
    num: int,
    size=DEFAULT_SIZE,
    seed: int = 0,
    workers: int | None = None,
    contact_sheet: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Writes ``num`` scenes of ``split`` under ``out`` in the Cityscapes layout, then the panoptic
    ground truth. Returns a summary: image ids and seconds spent rendering and converting."""
    from tqdm import tqdm

    _check(out, split, num, size, seed, workers, overwrite, contact_sheet)
    out = Path(out)
    workers = max(1, min(workers or os.cpu_count() or 1, num))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {out}: {exc.strerror}") from exc
    for d in layout.split_dirs(out, split):
        shutil.rmtree(d, ignore_errors=True)
    layout.panoptic_json(out, split).unlink(missing_ok=True)
    thumb_width = 256 if contact_sheet else 0
    jobs = [(str(out), split, i, seed, tuple(size), thumb_width if i < CONTACT_SHEET_SCENES else 0)
            for i in range(num)]
    thumbs = {}
    t0 = time.perf_counter()
    with tqdm(total=num, desc=f"synth {split}", unit="img", disable=not progress) as bar:
        with contextlib.ExitStack() as stack:
            if workers == 1:
                results = map(_write_job, jobs)
            else:
                results = stack.enter_context(process_pool(workers)).imap_unordered(_write_job, jobs)
            for index, thumb in results:
                thumbs[index] = thumb
                bar.update()
    t1 = time.perf_counter()
    with tqdm(total=num, desc="panoptic (cityscapesscripts)", unit="img", disable=not progress) as bar:
        convert_panoptic(out, split, workers, progress=bar.update)
    t2 = time.perf_counter()
    if contact_sheet:
        pairs = [(image_id_of(split, i), *thumbs[i]) for i in sorted(thumbs) if thumbs[i] is not None]
        Path(contact_sheet).parent.mkdir(parents=True, exist_ok=True)
        _write_png(Path(contact_sheet), cv2.cvtColor(make_contact_sheet(pairs), cv2.COLOR_RGB2BGR))
    return {"image_ids": [image_id_of(split, i) for i in range(num)], "render_s": t1 - t0, "panoptic_s": t2 - t1}


def make_contact_sheet(pairs, columns: int = 4) -> np.ndarray:
    """A grid of (image id, image, panoptic colouring) thumbnails: image above, labels below."""
    if not pairs:
        raise ValueError("no scenes for the contact sheet")
    th, tw = pairs[0][1].shape[:2]
    pad = 6
    cell_h, cell_w = 2 * th + 3 * pad, tw + pad
    rows = -(-len(pairs) // columns)
    sheet = np.full((rows * cell_h + pad, columns * cell_w + pad, 3), 255, np.uint8)
    for i, (name, img, pan) in enumerate(pairs):
        y, x = (i // columns) * cell_h + pad, (i % columns) * cell_w + pad
        sheet[y:y + th, x:x + tw] = img
        sheet[y + th + pad // 2:y + 2 * th + pad // 2, x:x + tw] = pan
        (tw_text, th_text), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        sheet[y:y + th_text + 6, x:x + tw_text + 6] //= 3  # a dark tab keeps the name legible
        cv2.putText(sheet, name, (x + 3, y + th_text + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return sheet


def parse_size(text: str) -> tuple[int, int]:
    """``"1024x2048"`` -> (1024, 2048): height x width, as Cityscapes quotes it."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"--size must be HEIGHTxWIDTH in pixels, like 1024x2048; got {text!r}")
    h, w = int(parts[0]), int(parts[1])
    if h < 32 or w < 32 or h > 8192 or w > 8192:
        raise UsageError(f"--size {text}: height and width must be between 32 and 8192 pixels")
    return h, w


def _check(out, split, num, size, seed, workers, overwrite, contact_sheet=None):
    if split not in CITIES:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(CITIES)}")
    if num < 1:
        raise UsageError(f"--num must be at least 1, got {num}")
    limit = 1_000_000 * len(CITIES[split])
    if num > limit:
        raise UsageError(f"--num {num} is more than the file names can hold ({limit})")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    h, w = size
    if h < 32 or w < 32:
        raise UsageError(f"size {h}x{w} is too small; use at least 32x32")
    if contact_sheet is not None and not str(contact_sheet).lower().endswith(".png"):
        raise UsageError(f"--contact-sheet must name a .png file, got {contact_sheet}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if not overwrite:
        taken = [d for d in layout.split_dirs(out, split) if d.is_dir() and any(d.iterdir())]
        if taken or layout.panoptic_json(out, split).exists():
            raise UsageError(
                f"{out} already holds a {split!r} split; pass --overwrite to replace it or choose another --out"
            )
