"""The ground and the sky: terrain, road, verges, sidewalks, curbs, rails, lane markings, cast
shadows, and the backdrop closing the street."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pisr_ros.data.synth.colours import FACADE_COLOURS, jittered, picked, shaded
from pisr_ros.data.synth.labels import BUILDING, GROUND, PARKING, RAIL, ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION
from pisr_ros.data.synth.shapes import FAR, NEAR, ellipse

if TYPE_CHECKING:  # the scene is passed in; importing it here would be circular
    from pisr_ros.data.synth.street import Side, Street


def sky(scene: Street):
    r, cam = scene.rng, scene.cam
    if r.random() < 0.5:
        top, horizon = jittered(r, (95, 140, 200), 15), jittered(r, (190, 210, 230), 10)
    else:  # overcast, as in most of Cityscapes
        grey = r.uniform(160, 225)
        top, horizon = jittered(r, (grey - 15, grey - 8, grey), 8), jittered(r, (grey + 15,) * 3, 6)
    t = np.clip(np.arange(cam.H, dtype=np.float32) / max(cam.cy, 1.0), 0, 1)[:, None, None]
    scene.cv.image[:] = (top * (1 - t) + horizon * t).astype(np.float32)
    scene.cv.labels[:] = SKY
    scene.cv.instances[:] = SKY


def ground(scene: Street):
    r, cv = scene.rng, scene.cv
    cv.poly(scene.ground_quad(-5000, 5000, NEAR, FAR), scene.terrain_colour, cv.stuff(TERRAIN))
    left, right = scene.sides
    for side in scene.sides:
        s = side.sign
        x_curb, x_prop = side.road_edge, side.prop
        z_end = FAR
        walk = scene.walk_colour
        if side.verge > 0:
            colour = scene.terrain_colour if side.verge_label == TERRAIN else shaded(scene.road_colour, 1.1)
            xa, xb = sorted((s * x_curb, s * (x_curb + side.verge)))
            cv.poly(scene.ground_quad(xa, xb, NEAR, z_end), colour, cv.stuff(side.verge_label))
        xa, xb = sorted((s * (x_curb + side.verge), s * x_prop))
        cv.poly(scene.ground_quad(xa, xb, NEAR, z_end), walk, cv.stuff(SIDEWALK))
        _paving(scene, side)
        # Beyond the property line: forecourts paved or green, seen through gaps.
        if r.random() < 0.5:
            xa, xb = sorted((s * x_prop, s * (x_prop + 60)))
            cv.poly(scene.ground_quad(xa, xb, NEAR, z_end), shaded(walk, 0.95),
                    cv.stuff(SIDEWALK if r.random() < 0.7 else GROUND))
    road = cv.stuff(ROAD)
    cv.poly(scene.ground_quad(-left.road_edge, right.road_edge, NEAR, FAR), scene.road_colour, road)
    for side in scene.sides:  # curb faces: Cityscapes labels curbs as sidewalk
        x = side.sign * side.road_edge
        if side.verge > 0 and side.verge_label == PARKING:
            continue
        quad = scene.cam.project([x, x, x, x], [0, 0, 0.13, 0.13], [NEAR, FAR, FAR, NEAR])
        cv.poly(quad, shaded(scene.walk_colour, 1.12), cv.stuff(SIDEWALK))
    if scene.tram:
        _rails(scene)
    if scene.cross_street is not None:
        zc, wc = scene.cross_street
        cv.poly(scene.ground_quad(-5000, 5000, zc, zc + wc), scene.road_colour, road)
    _markings(scene)
    if scene.sunny:
        _cast_shadows(scene)


def _paving(scene: Street, side: Side):
    """Joints between paving slabs: texture only, the label stays sidewalk."""
    r = scene.rng
    if r.random() < 0.4:
        return
    s, step = side.sign, r.uniform(0.4, 1.2)
    x0, x1 = side.road_edge + side.verge, side.prop
    colour = shaded(scene.walk_colour, r.uniform(0.75, 0.9))
    zs = np.arange(2.0, 60.0, step)
    for z in zs:
        p = scene.ground_quad(s * x0, s * x1, z, z + 0.02)
        scene.cv.line(p[0], p[1], 1, colour)


def _markings(scene: Street):
    r, cv = scene.rng, scene.cv
    white = jittered(r, (225, 225, 220), 8) if r.random() < 0.92 else jittered(r, (220, 190, 70), 8)
    quads = []
    width = r.uniform(0.1, 0.16)
    dash, gap = r.uniform(2.5, 6.0), r.uniform(4.0, 12.0)
    phase = r.uniform(0, dash + gap)
    for i in range(scene.lanes_left + 1):
        x = -scene.lane / 2 - i * scene.lane
        if i == scene.lanes_left:
            if r.random() < 0.6:  # solid edge line
                quads.append(scene.ground_quad(x - width, x, 2.0, FAR))
            continue
        if i == 0 and r.random() < 0.3:
            quads.append(scene.ground_quad(x - width / 2, x + width / 2, 2.0, FAR))
            continue
        z = 2.0 - phase
        while z < 200:
            quads.append(scene.ground_quad(x - width / 2, x + width / 2, max(z, NEAR), z + dash))
            z += dash + gap
    for i in range(scene.lanes_right + 1):
        x = scene.lane / 2 + i * scene.lane
        if i == scene.lanes_right:
            if r.random() < 0.5:
                quads.append(scene.ground_quad(x, x + width, 2.0, FAR))
            continue
        z = 2.0 - phase
        while z < 200:
            quads.append(scene.ground_quad(x - width / 2, x + width / 2, max(z, NEAR), z + dash))
            z += dash + gap
    if scene.cross_street is not None and r.random() < 0.8:
        zc, _ = scene.cross_street
        xl, xr = -scene.sides[0].road_edge, scene.sides[1].road_edge
        z0 = zc - r.uniform(3.0, 5.0)
        for x in np.arange(xl + 0.3, xr - 0.3, 1.0):  # zebra crossing
            quads.append(scene.ground_quad(x, x + 0.5, z0, z0 + 3.0))
        quads.append(scene.ground_quad(xl, xr, z0 - 1.2, z0 - 0.8))  # stop line
    if r.random() < 0.15:  # painted arrow-ish block in the ego lane
        z = r.uniform(8, 25)
        quads.append(scene.ground_quad(-0.15, 0.15, z, z + 3.0))
        quads.append(scene.cam.project([-0.6, 0.6, 0], 0, [z + 3.0, z + 3.0, z + 4.5]))
    cv.polys(quads, white)


def _rails(scene: Street):
    cv, r = scene.cv, scene.rng
    x = scene.tram_x
    cv.poly(scene.ground_quad(x - 1.1, x + 1.1, NEAR, FAR), shaded(scene.road_colour, 0.9), cv.stuff(RAIL))
    steel = jittered(r, (170, 170, 175), 10)
    quads = [scene.ground_quad(x + dx - 0.04, x + dx + 0.04, NEAR, FAR) for dx in (-0.72, 0.72)]
    cv.polys(quads, steel)


def _cast_shadows(scene: Street):
    """Shadows of the building rows on the ground: a sunny afternoon's strongest cue."""
    r = scene.rng
    s = -scene.sun_side  # the shaded facades' row throws its shadow across the street
    side = scene.sides[0 if s < 0 else 1]
    reach = r.uniform(2.0, 14.0)
    factor = r.uniform(0.45, 0.7)
    z = r.uniform(2.0, 15.0)
    while z < side.structures_end:
        length = r.uniform(8, 40)
        x_out, x_in = side.prop + 2, side.prop - reach
        xa, xb = sorted((s * x_out, s * x_in))
        scene.cv.darken(scene.ground_quad(xa, xb, z, z + length), factor)
        z += length + r.uniform(1, 12)


def backdrop(scene: Street):
    """Distant buildings and trees closing the street, at a few hundred metres."""
    r, cv = scene.rng, scene.cv
    if r.random() < 0.15:
        return
    z = r.uniform(140, 420)
    half = scene.cam.visible_x(z) * 1.2
    x = -half
    haze = r.uniform(0.15, 0.45)
    sky = cv.image[max(int(scene.cam.cy) - 2, 0), scene.cam.W // 2]
    while x < half:
        w = r.uniform(8, 60)
        if r.random() < 0.65 * scene.urban + 0.1:
            h = r.uniform(6, 45)
            colour = picked(r, FACADE_COLOURS, 20) * (1 - haze) + sky * haze
            cv.poly(scene.cam.project([x, x + w, x + w, x], [0, 0, h, h], z), colour, cv.stuff(BUILDING))
        elif r.random() < 0.7:  # a stand of trees: a solid mass with a bumpy top
            colour = jittered(r, (70, 95, 50), 12) * (1 - haze) + sky * haze
            top = r.uniform(6, 16)
            blobs = [scene.cam.project([x, x + w, x + w, x], [0, 0, top, top], z)]
            for bx in np.arange(x, x + w, r.uniform(2, 5)):
                rad = r.uniform(2, 6)
                c = scene.cam.project(bx, top + r.uniform(-2, 1), z)[0]
                blobs.append(ellipse(c[0], c[1], scene.cam.px(rad, z), scene.cam.px(rad * 0.8, z), 12))
            cv.polys(blobs, colour, cv.stuff(VEGETATION))
        x += w + (r.uniform(0, 30) if r.random() < 0.3 else 0)
