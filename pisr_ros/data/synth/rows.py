"""The rows beside the street: buildings with windows and shop fronts, walls, fences and green
lots, placed along each side."""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from pisr_ros.data.synth.colours import FACADE_COLOURS, GLASS, jittered, picked, shaded
from pisr_ros.data.synth.labels import BUILDING, FENCE, VEGETATION, WALL
from pisr_ros.data.synth.plants import tree
from pisr_ros.data.synth.shapes import FACE_LIGHT, FACES, box_corners, face_quad

if TYPE_CHECKING:  # the scene is passed in; importing it here would be circular
    from pisr_ros.data.synth.street import Side, Street


def structures(scene: Street, side: Side):
    r = scene.rng
    z = r.uniform(0.5, 4.0)
    weights = np.array([0.62 * scene.urban + 0.05, 0.08, 0.08, 0.1, 0.22 * (1.2 - scene.urban)])
    weights /= weights.sum()
    while z < side.structures_end:
        kind = int(r.choice(5, p=weights))
        length = float(r.uniform(*[(8, 45), (3, 14), (5, 30), (5, 30), (6, 40)][kind]))
        z1 = z + length
        if scene.in_cross(z, z1):  # the cross street opens a gap in both rows
            zc, wc = scene.cross_street
            if z < zc:
                z1 = zc
            else:
                z = zc + wc
                continue
        if z1 - z > 1.0:
            draw = [_building, None, _wall, _fence, _green][kind]
            if draw is not None:
                scene.add(z, partial(draw, scene, side, z, z1), row=True)
        z = z1


def _building(scene: Street, side: Side, z0: float, z1: float):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    s = side.sign
    setback = r.uniform(0, 4) if r.random() < 0.3 else 0.0
    x_in = side.prop + setback
    depth = r.uniform(8, 25)
    height = r.uniform(5, 30)
    colour = picked(r, FACADE_COLOURS, 14)
    light = scene.facade_light(s)
    tag = cv.stuff(BUILDING)
    box = box_corners(s * x_in, s * (x_in + depth), 0, height, z0, z1)
    side_face = box[list(FACES["left" if s > 0 else "right"])]
    near_face = box[list(FACES["near"])]
    cv.poly(cam.project(*side_face.T), shaded(colour, light), tag)
    cv.poly(cam.project(*near_face.T), shaded(colour, light * 0.85), tag)
    # Cornice and a darker plinth: two bands that make the facade read as a building.
    for face, f in ((side_face, light), (near_face, light * 0.85)):
        cv.poly(cam.project(*face_quad(face, 0, 1, 0.97, 1.0).T), shaded(colour, f * 0.75))
        cv.poly(cam.project(*face_quad(face, 0, 1, 0, min(0.8 / height, 0.2)).T), shaded(colour, f * 0.7))
    _windows(scene, side_face, z1 - z0, height, light, shop=r.random() < 0.5)
    _windows(scene, near_face, depth, height, light * 0.85, shop=False)


def _windows(scene: Street, face: np.ndarray, length: float, height: float, light: float, shop: bool):
    """A grid of windows on a facade quad whose edge 0->1 runs along the ground."""
    r, cv, cam = scene.rng, scene.cv, scene.cam
    floor = r.uniform(2.8, 3.6)
    ground = r.uniform(3.2, 4.5)
    col = r.uniform(2.2, 4.0)
    win_w = col * r.uniform(0.35, 0.7)
    win_h = floor * r.uniform(0.4, 0.6)
    glass = [shaded(picked(r, GLASS, 8), light * k) for k in (0.8, 1.0, 1.3)]
    frame = shaded(jittered(r, (225, 225, 220), 10), light) if r.random() < 0.5 else None
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
                frames.append(cam.project(*face_quad(face, a0 - pad_a, a1 + pad_a, b0 - pad_b, b1 + pad_b).T))
            groups[pick[i, j]].append(cam.project(*face_quad(face, a0, a1, b0, b1).T))
    if frame is not None:
        cv.polys(frames, frame)
    for colour, polys in zip(glass, groups):
        cv.polys(polys, colour)
    if shop:  # shop windows and doors on the ground floor
        shops = []
        a = r.uniform(0.5, 2.0)
        while a < length - 1.5:
            w = r.uniform(1.0, 5.0)
            shops.append(cam.project(*face_quad(face, a / length, min(a + w, length - 0.5) / length,
                                                 0.0, min(ground * 0.75, height * 0.5) / height).T))
            a += w + r.uniform(0.5, 3.0)
        cv.polys(shops, shaded(picked(r, GLASS, 10), light * 0.7))


def _wall(scene: Street, side: Side, z0: float, z1: float):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    s = side.sign
    if r.random() < 0.5:
        _lot_trees(scene, side, z0, z1)
    h = r.uniform(0.8, 3.0)
    colour = picked(r, [(160, 155, 145), (180, 175, 165), (150, 80, 60), (120, 120, 120), (200, 190, 170)], 12)
    light = scene.facade_light(s)
    box = box_corners(s * side.prop, s * (side.prop + 0.3), 0, h, z0, z1)
    tag = cv.stuff(WALL)
    for face in ("left" if s > 0 else "right", "near", "top"):
        quad = box[list(FACES[face])]
        cv.poly(cam.project(*quad.T), shaded(colour, light * FACE_LIGHT[face]), tag)


def _fence(scene: Street, side: Side, z0: float, z1: float):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    s = side.sign
    if r.random() < 0.6:
        _lot_trees(scene, side, z0, z1)
    h = r.uniform(0.9, 2.2)
    x = s * side.prop
    kind = r.integers(3)  # 0 chain link, 1 bars, 2 planks
    colour = picked(r, [(90, 95, 90), (60, 70, 60), (140, 140, 140), (130, 95, 60), (40, 40, 40)], 12)
    alpha = (0.25, 0.45, 1.0)[kind]
    plane = cam.project([x, x, x, x], [0, 0, h, h], [z0, z1, z1, z0])
    cv.blend(plane, colour, alpha, cv.stuff(FENCE))
    spacing = (0.25, 0.15, 0.18)[kind]
    zs = np.arange(z0, z1, spacing)
    if len(zs) > 400:
        zs = zs[:400]
    dark = shaded(colour, 0.7 if kind == 2 else 0.8)
    for z in zs:
        p = cam.project([x, x], [0, h], [z, z])
        cv.line(p[0], p[1], max(1.0, cam.px(0.03, z)), dark)
    for y in (h * 0.95, h * 0.05) if kind != 0 else (h * 0.97,):
        p = cam.project([x, x], [y, y], [z0, z1])
        cv.line(p[0], p[1], max(1.0, cam.px(0.05, z0)), shaded(colour, 0.9))
    for z in np.arange(z0, z1, 2.5):  # posts
        p = cam.project([x, x], [0, h * 1.02], [z, z])
        cv.line(p[0], p[1], max(1.0, cam.px(0.07, z)), shaded(colour, 0.6), cv.stuff(FENCE))


def _green(scene: Street, side: Side, z0: float, z1: float):
    """An open lot: terrain, bushes, trees, maybe a hedge along the sidewalk."""
    r, cv, cam = scene.rng, scene.cv, scene.cam
    s = side.sign
    _lot_trees(scene, side, z0, z1)
    if r.random() < 0.5:
        h = r.uniform(0.6, 2.2)
        colour = jittered(r, (60, 95, 40), 12)
        box = box_corners(s * side.prop, s * (side.prop + 1.2), 0, h, z0, z1)
        tag = cv.stuff(VEGETATION)
        for face in ("left" if s > 0 else "right", "near", "top"):
            quad = box[list(FACES[face])]
            cv.poly(cam.project(*quad.T), shaded(colour, FACE_LIGHT[face]), tag)


def _lot_trees(scene: Street, side: Side, z0: float, z1: float):
    r = scene.rng
    trees = []
    for _ in range(int(r.poisson((z1 - z0) / 8))):
        x = side.sign * (side.prop + r.uniform(1.5, 12))
        trees.append((r.uniform(z0, z1), x))
    for z, x in sorted(trees, reverse=True):
        tree(scene, x, z)
