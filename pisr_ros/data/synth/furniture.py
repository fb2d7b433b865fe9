"""Street furniture on the sidewalks: lamps, sign poles and signs, traffic lights, street trees
and clutter (bins, bollards, planters, benches)."""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from pisr_ros.data.synth.colours import jittered, picked, shaded
from pisr_ros.data.synth.labels import DYNAMIC, LIGHT, POLE, SIGN, STATIC, TERRAIN
from pisr_ros.data.synth.plants import bush, tree
from pisr_ros.data.synth.shapes import box_corners, ellipse

if TYPE_CHECKING:  # the scene is passed in; importing it here would be circular
    from pisr_ros.data.synth.street import Street


def street_furniture(scene: Street):
    r = scene.rng
    for side in scene.sides:
        s = side.sign
        curb = side.road_edge + side.verge + 0.5
        z = r.uniform(3, 30)
        spacing = r.uniform(18, 45)
        while z < 160:  # street lamps
            if not scene.in_cross(z - 1, z + 1):
                scene.add(z, partial(_lamp, scene, s * curb, z, s))
            z += spacing * r.uniform(0.9, 1.1)
        if r.random() < 0.55:  # a row of street trees along the curb
            x = s * (side.road_edge + max(side.verge / 2, 0.8) if side.verge_label == TERRAIN else curb + 0.3)
            z = r.uniform(3, 15)
            step = r.uniform(7, 18)
            size = r.uniform(0.8, 1.5)
            while z < 120:
                if not scene.in_cross(z - 2, z + 2):
                    scene.add(z, partial(tree, scene, x + r.normal(0, 0.2), z, size * r.uniform(0.85, 1.15)))
                z += step * r.uniform(0.8, 1.2)
        for _ in range(int(r.poisson(2.5))):  # sign poles
            z = r.uniform(4, 80)
            if not scene.in_cross(z - 1, z + 1):
                scene.add(z, partial(_sign_pole, scene, s * (curb + r.uniform(-0.2, 0.5)), z))
        for _ in range(int(r.poisson(3 * scene.busy))):  # bins, bollards, planters, benches
            z = r.uniform(4, 60)
            x = s * (side.road_edge + side.verge + r.uniform(0.3, side.sidewalk))
            scene.add(z, partial(_clutter, scene, x, z))
    if scene.cross_street is not None:  # traffic lights at the junction
        zc, _ = scene.cross_street
        for side in scene.sides:
            z = zc - r.uniform(0.5, 2.0)
            scene.add(z, partial(_light_pole, scene, side.sign * (side.road_edge + 0.6), z, side.sign))
    else:  # a pedestrian crossing mid-block
        for _ in range(int(r.choice([0, 1, 1, 2]))):
            z = r.uniform(12, 60)
            side = scene.sides[int(r.integers(2))]
            scene.add(z, partial(_light_pole, scene, side.sign * (side.road_edge + 0.6), z, side.sign))


def _pole(scene: Street, x, z, h, radius, colour):
    tag = scene.cv.stuff(POLE)
    scene.cv.poly(scene.cam.project([x - radius, x + radius, x + radius * 0.8, x - radius * 0.8],
                                  [0, 0, h, h], z), colour, tag)
    scene.cv.poly(scene.cam.project([x - radius, x + radius, x + radius, x - radius],
                                  [0, 0, h * 0.02 + 0.1, h * 0.02 + 0.1], z), shaded(colour, 0.8), tag)


def _lamp(scene: Street, x, z, s):
    r, cam = scene.rng, scene.cam
    h = r.uniform(5.5, 9.0)
    colour = picked(r, [(110, 115, 115), (70, 75, 80), (40, 60, 50), (150, 150, 145)], 8)
    _pole(scene, x, z, h, r.uniform(0.07, 0.13), colour)
    arm = r.uniform(0.8, 2.5)
    tag = scene.cv.stuff(POLE)
    p = cam.project([x, x - s * arm], [h, h + 0.2], [z, z])
    scene.cv.line(p[0], p[1], cam.px(0.08, z), colour, tag)
    head = cam.project([x - s * arm - 0.35, x - s * arm + 0.35, x - s * arm + 0.25, x - s * arm - 0.25],
                       [h + 0.15, h + 0.15, h + 0.35, h + 0.35], z)
    scene.cv.poly(head, shaded(colour, 0.8), tag)


def _sign(scene: Street, x, y, z, size):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    tag = cv.stuff(SIGN)
    c = cam.project(x, y, z)[0]
    rad = cam.px(size / 2, z)
    kind = r.integers(5)
    if r.random() < 0.15:  # the back of a sign: still a traffic sign in Cityscapes
        cv.poly(ellipse(c[0], c[1], rad, rad) if kind == 0 else ellipse(c[0], c[1], rad, rad, 4),
                jittered(r, (150, 150, 150), 10), tag)
        return
    if kind == 0:  # round: prohibitory or mandatory
        red = r.random() < 0.6
        outer = (200, 30, 35) if red else (30, 80, 170)
        cv.poly(ellipse(c[0], c[1], rad, rad, 24), jittered(r, outer, 10), tag)
        if red:
            cv.poly(ellipse(c[0], c[1], rad * 0.75, rad * 0.75, 24), jittered(r, (235, 235, 235), 8))
        cv.poly(ellipse(c[0], c[1], rad * 0.3, rad * 0.15, 12), jittered(r, (30, 30, 30), 8) if red else (240, 240, 240))
    elif kind == 1:  # triangle warning sign
        tri = np.array([[0, -1.0], [0.95, 0.7], [-0.95, 0.7]])
        cv.poly(c + tri * rad, jittered(r, (200, 30, 35), 10), tag)
        cv.poly(c + tri * rad * 0.65, jittered(r, (235, 235, 230), 8))
    elif kind == 2:  # rectangular information sign
        w, h = rad * r.uniform(1.0, 1.8), rad * r.uniform(0.7, 1.1)
        rect = c + np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
        colour = picked(r, [(30, 80, 170), (30, 120, 60), (240, 240, 235), (240, 200, 40)], 10)
        cv.poly(rect, colour, tag)
        cv.poly(c + np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) * 0.6, shaded(colour, 0.55) if colour.mean() > 150 else (235, 235, 235))
    elif kind == 3:  # priority-road diamond
        dia = np.array([[0, -1.0], [1.0, 0], [0, 1.0], [-1.0, 0]])
        cv.poly(c + dia * rad, (240, 240, 240), tag)
        cv.poly(c + dia * rad * 0.65, jittered(r, (240, 200, 30), 10))
    else:  # octagonal stop sign
        cv.poly(ellipse(c[0], c[1], rad, rad, 8), jittered(r, (200, 25, 30), 10), tag)
        cv.poly(ellipse(c[0], c[1], rad * 0.5, rad * 0.12, 8), (240, 240, 240))


def _sign_pole(scene: Street, x, z):
    r = scene.rng
    h = r.uniform(2.2, 3.6)
    _pole(scene, x, z, h, r.uniform(0.03, 0.05), jittered(r, (150, 150, 150), 15))
    size = r.uniform(0.5, 0.9)
    _sign(scene, x, h, z, size)
    if r.random() < 0.4:
        _sign(scene, x, h - size * 1.1, z, size * r.uniform(0.7, 1.0))


def _traffic_light(scene: Street, x, y, z, facing_camera: bool):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    tag = cv.stuff(LIGHT)
    w, h = r.uniform(0.25, 0.35), r.uniform(0.75, 1.0)
    housing = jittered(r, (35, 35, 35), 8) if r.random() < 0.8 else jittered(r, (200, 180, 40), 10)
    cv.poly(cam.project([x - w / 2, x + w / 2, x + w / 2, x - w / 2], [y, y, y + h, y + h], z), housing, tag)
    if not facing_camera:
        return
    lit = r.integers(3)
    for i, colour in enumerate([(255, 50, 40), (255, 190, 40), (60, 255, 120)]):
        c = cam.project(x, y + h * (0.82 - 0.32 * i), z)[0]
        rad = cam.px(w * 0.33, z)
        cv.poly(ellipse(c[0], c[1], rad, rad, 12), colour if i == lit else shaded(colour, 0.25))


def _light_pole(scene: Street, x, z, s):
    r, cam = scene.rng, scene.cam
    h = r.uniform(3.0, 4.5)
    grey = jittered(r, (120, 120, 120), 15)
    _pole(scene, x, z, h, r.uniform(0.06, 0.1), grey)
    _traffic_light(scene, x, h - 1.0, z, facing_camera=True)
    if r.random() < 0.5:  # a mast arm reaching over the road with a second light
        reach = r.uniform(2.5, 6.0)
        p = cam.project([x, x - s * reach], [h, h], [z, z])
        scene.cv.line(p[0], p[1], cam.px(0.1, z), grey, scene.cv.stuff(POLE))
        _traffic_light(scene, x - s * reach, h - 1.0, z, facing_camera=True)
    if r.random() < 0.5:
        _sign(scene, x, h + 0.45, z, r.uniform(0.5, 0.7))


def _clutter(scene: Street, x, z):
    """Bins, bollards, planters, benches: 'static' (void) in Cityscapes; the odd pram is 'dynamic'."""
    r, cv = scene.rng, scene.cv
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
            bush(scene, x, z, h)
    else:
        w, d, h = r.uniform(1.2, 2.0), 0.5, r.uniform(0.45, 0.9)
    colour = picked(r, [(60, 60, 60), (40, 90, 60), (150, 140, 120), (180, 120, 40), (90, 60, 40), (120, 130, 140)], 12)
    box = box_corners(x - w / 2, x + w / 2, 0, h, z, z + d)
    scene.cv.hexa(box, colour, tag)
