"""People and two-wheelers: pedestrians on the sidewalks and crossings, bicycles and motorcycles,
ridden or parked, all built as limbs and frames in 3-D."""
from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pisr_ros.data.synth.colours import CAR_COLOURS, CLOTHES, HAIR, SKIN, jittered, picked, shaded
from pisr_ros.data.synth.labels import BICYCLE, MOTORCYCLE, PERSON, RIDER
from pisr_ros.data.synth.shapes import NEAR, ellipse

if TYPE_CHECKING:  # the scene is passed in; importing it here would be circular
    from pisr_ros.data.synth.street import Street


def _frame(x, z, heading):
    """Maps bike/person-local (forward a, up v, lateral b) to world points."""
    ca, sa = math.cos(heading), math.sin(heading)

    def world(a, v, b=0.0):
        a, v, b = (np.asarray(t, dtype=np.float64) for t in (a, v, b))
        return x + a * ca - b * sa, v, z + a * sa + b * ca

    return world


def two_wheeler(scene: Street, kind, x, z, heading, ridden):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    world = _frame(x, z, heading)
    label = BICYCLE if kind == "bicycle" else MOTORCYCLE
    tag = cv.thing(label)
    rw = r.uniform(0.3, 0.36) if kind == "bicycle" else r.uniform(0.28, 0.33)
    base = 0.52 if kind == "bicycle" else 0.7  # half the wheelbase
    colour = picked(r, CAR_COLOURS + CLOTHES, 12)
    zmid = max(z, 1.0)
    _shadow_ellipse(scene, world, base + rw, 0.35)
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
        cv.poly(np.array(tank), shaded(colour, 1.2), tag)
        bar = cam.project(*world([base - 0.1] * 2, [rw + 0.85] * 2, [-0.38, 0.38]))
        cv.line(bar[0], bar[1], cam.px(0.05, zmid), (40, 40, 40), tag)
        seat_h, bar_pt = rw + 0.62, (base - 0.1, rw + 0.85)
    if ridden:
        person(scene, x, z, heading, rider_on=(seat_h, bar_pt, kind))


def _shadow_ellipse(scene: Street, world, half_len, half_width):
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    X, Y, Z = world(half_len * np.cos(t), 0.0, half_width * np.sin(t))
    if np.min(Z) > NEAR:
        scene.cv.darken(scene.cam.project(X, Y, Z), scene.rng.uniform(0.45, 0.7))


def people(scene: Street):
    r = scene.rng
    busy = scene.busy
    for side in scene.sides:
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
                scene.add(z, partial(person, scene, x, z, heading))
        for _ in range(int(r.poisson(0.6))):  # parked bicycles
            z = r.uniform(4, 50)
            x = s * r.uniform(x_in, x_out)
            scene.add(z, partial(two_wheeler, scene, "bicycle", x, z, r.uniform(-0.4, 0.4), False))
    if scene.cross_street is not None:  # people on the zebra crossing
        zc, _ = scene.cross_street
        for _ in range(int(r.poisson(2.5 * busy))):
            z = zc - r.uniform(1.5, 4.0)
            x = r.uniform(-scene.sides[0].road_edge, scene.sides[1].road_edge)
            heading = 0.0 if r.random() < 0.5 else math.pi
            scene.add(z, partial(person, scene, x, z, heading + r.normal(0, 0.15)))
    for _ in range(int(r.poisson(0.4))):  # someone crossing mid-block
        z = r.uniform(8, 40)
        x = r.uniform(-scene.sides[0].road_edge, scene.sides[1].road_edge)
        scene.add(z, partial(person, scene, x, z, r.choice([0.0, math.pi]) + r.normal(0, 0.2)))


def person(scene: Street, x, z, heading, rider_on=None):
    """A person as limbs in 3-D, so front, back and side views all come out of one model.

    ``heading`` is the walking direction in the ground plane (0 = +X, pi/2 = away from the
    camera). With ``rider_on=(seat height, handlebar (a, v), kind)`` the person sits on a bike.
    """
    r, cv, cam = scene.rng, scene.cv, scene.cam
    world = _frame(x, z, heading)
    tag = cv.thing(RIDER if rider_on else PERSON)
    height = r.uniform(1.55, 1.95) if r.random() > 0.12 or rider_on else r.uniform(1.0, 1.4)
    k = height / 1.75
    skin, hair = picked(r, SKIN, 8), picked(r, HAIR, 8)
    top, bottom = picked(r, CLOTHES, 15), picked(r, CLOTHES, 15)
    shoes = jittered(r, (35, 30, 30), 10)
    zmid = max(z, 1.0)
    if rider_on is None:
        _shadow_ellipse(scene, world, 0.35 * k, 0.3 * k)
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
        cv.poly(ellipse(c[0], c[1], cam.px(0.16 * k, zmid), cam.px(0.2 * k, zmid), 10), picked(r, CLOTHES, 10), tag)
    near_arm()
    head = P(neck[0], neck[1] + 0.13 * k, 0.0)
    rx, ry = cam.px(0.095 * k, zmid), cam.px(0.12 * k, zmid)
    cv.poly(ellipse(head[0], head[1], rx, ry, 14), skin, tag)
    hair_poly = ellipse(head[0], head[1] - ry * 0.25, rx * 1.05, ry * 0.85, 14)
    if rider_on is not None and r.random() < 0.6:  # helmet
        cv.poly(hair_poly, picked(r, CLOTHES, 10), tag)
    else:
        facing_away = math.sin(heading) > 0.5  # walking away: the back of the head
        cv.poly(hair_poly if not facing_away else ellipse(head[0], head[1], rx, ry, 14), hair, tag)
