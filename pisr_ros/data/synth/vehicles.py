"""Traffic: cars, vans, trucks, buses and the odd tram in their lanes, parked cars, and riders
near the curb (drawn by pisr_ros.data.synth.people)."""
from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from pisr_ros.data.synth.colours import CAR_COLOURS, GLASS, jittered, picked, shaded
from pisr_ros.data.synth.labels import BUS, CAR, PARKING, TRAIN, TRUCK
from pisr_ros.data.synth.people import two_wheeler
from pisr_ros.data.synth.shapes import box_corners, face_quad

if TYPE_CHECKING:  # the scene is passed in; importing it here would be circular
    from pisr_ros.data.synth.street import Street


def traffic(scene: Street):
    r = scene.rng
    busy = scene.busy
    lanes = [(0.0, +1, 10.0)]  # (lane centre, direction +1 away / -1 oncoming, nearest depth)
    lanes += [(-scene.lane * (i + 1), -1, 7.0) for i in range(scene.lanes_left)]
    lanes += [(scene.lane * (i + 1), +1, 6.0) for i in range(scene.lanes_right)]
    for x_lane, direction, z_min in lanes:
        if scene.tram and abs(x_lane - scene.tram_x) < 0.1 and r.random() < 0.7:
            z = r.uniform(z_min + 4, 60)
            scene.add(z, partial(_vehicle, scene, "train", x_lane, z, direction))
            continue
        z = z_min + r.exponential(30 / busy)
        while z < 180:
            kind = str(r.choice(["car", "truck", "bus", "motorcycle", "van"], p=[0.72, 0.07, 0.05, 0.06, 0.10]))
            x = x_lane + r.normal(0, 0.25)
            scene.add(z, partial(_vehicle, scene, kind, x, z, direction))
            z += {"bus": 13, "truck": 9}.get(kind, 5) + r.exponential(30 / busy)
    for side in scene.sides:  # parked cars along the curb or on the parking strip
        if r.random() > 0.45 * busy + 0.1:
            continue
        s = side.sign
        on_strip = side.verge_label == PARKING and side.verge > 0
        x = s * (side.road_edge + side.verge / 2 if on_strip else side.road_edge - 1.05)
        z = r.uniform(2, 10)
        while z < 110:
            if not scene.in_cross(z, z + 5) and r.random() < 0.85:
                kind = "van" if r.random() < 0.15 else "car"
                scene.add(z, partial(_vehicle, scene, kind, x + r.normal(0, 0.1), z, int(r.choice([-1, 1]))))
            z += r.uniform(4.6, 6.5) + (r.exponential(8) if r.random() < 0.3 else 0)
    for side in scene.sides:  # riders near the curb
        for _ in range(int(r.poisson(0.8 * busy))):
            z = r.uniform(5, 70)
            x = side.sign * (side.road_edge - r.uniform(0.6, 1.2))
            kind = "motorcycle" if r.random() < 0.3 else "bicycle"
            heading = (math.pi / 2 if side.sign > 0 else -math.pi / 2) + r.normal(0, 0.1)
            scene.add(z, partial(two_wheeler, scene, kind, x, z, heading, True))


def _shadow(scene: Street, x0, x1, z0, z1):
    quad = scene.ground_quad(x0 - 0.15, x1 + 0.15, z0 - 0.2, z1 + 0.25)
    scene.cv.darken(quad, scene.rng.uniform(0.3, 0.55))


def _wheels_under(scene: Street, x0, x1, z0, z1, r_w, tag, axles):
    """Dark tyres seen under the body: the cue that makes a box a vehicle from behind."""
    tyre = jittered(scene.rng, (25, 25, 25), 5)
    for za in axles:
        for xa, xb in ((x0 + 0.05, x0 + 0.3), (x1 - 0.3, x1 - 0.05)):
            scene.cv.hexa(box_corners(xa, xb, 0, 2 * r_w, za - r_w, za + r_w), tyre, tag)


def _wheel_discs(scene: Street, faces, r_w, axles, tag):
    """Tyres and rims on the visible side face of a vehicle, drawn in that face's plane."""
    cam = scene.cam
    side = faces.get("left") if "left" in faces else faces.get("right")
    if side is None:
        return
    xs = side[0, 0] + (-0.02 if side is faces.get("left") else 0.02)
    t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    for za in axles:
        for rad, colour, tg in ((r_w, (25, 25, 25), tag), (r_w * 0.55, (150, 150, 155), None)):
            pts = cam.project(np.full(20, xs), r_w + rad * np.sin(t), za + rad * np.cos(t))
            scene.cv.poly(pts, jittered(scene.rng, colour, 6), tg)


def _vehicle(scene: Street, kind, x, z0, direction):
    r, cv = scene.rng, scene.cv
    if kind == "motorcycle":
        two_wheeler(scene, "motorcycle", x, z0, (math.pi / 2) * direction, True)
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
    _shadow(scene, x0, x1, z0, z1)
    axles = [z0 + 0.8, z1 - 0.8] if kind not in ("bus", "truck", "train") else [z0 + 1.2, z1 - 2.5, z1 - 1.2]
    if kind == "bus" and length > 15:
        axles.append(z0 + length / 2)
    _wheels_under(scene, x0, x1, z0, z1, r_w, tag, axles)
    if kind == "car":
        _car(scene, x0, x1, z0, z1, clearance, r_w, axles, direction, tag)
    elif kind == "van":
        _van(scene, x0, x1, z0, z1, clearance, r_w, axles, direction, tag)
    elif kind == "truck":
        _truck(scene, x0, x1, z0, z1, clearance, r_w, axles, direction, tag)
    else:
        _long_vehicle(scene, kind, x0, x1, z0, z1, clearance, r_w, axles, direction, tag)


def _lights(scene: Street, face, direction, colour_body):
    """Tail lights and number plate (leaving) or headlights and grille (oncoming) on the near face."""
    r, cv, cam = scene.rng, scene.cv, scene.cam
    lamp = jittered(r, (200, 30, 30), 15) if direction > 0 else jittered(r, (235, 235, 220), 10)
    lw = r.uniform(0.1, 0.2)
    lh = r.uniform(0.15, 0.3)
    lb = r.uniform(0.45, 0.65)
    for a0 in (0.02, 0.98 - lw):
        cv.poly(cam.project(*face_quad(face, a0, a0 + lw, lb, lb + lh).T), lamp)
    if direction > 0:
        cv.poly(cam.project(*face_quad(face, 0.38, 0.62, 0.22, 0.42).T), (235, 235, 230))
    else:
        cv.poly(cam.project(*face_quad(face, 0.25, 0.75, 0.3, 0.55).T), shaded(colour_body, 0.35))


def _car(scene: Street, x0, x1, z0, z1, clearance, r_w, axles, direction, tag):
    r = scene.rng
    colour = picked(r, CAR_COLOURS, 10)
    body_top = r.uniform(0.85, 1.05)
    roof = body_top + r.uniform(0.45, 0.62)
    faces = scene.cv.hexa(box_corners(x0, x1, clearance, body_top, z0, z1), colour, tag)
    _wheel_discs(scene, faces, r_w, axles, tag)
    length = z1 - z0
    back = r.uniform(0.05, 0.3) * length if direction > 0 else r.uniform(0.25, 0.35) * length
    front = r.uniform(0.25, 0.35) * length if direction > 0 else r.uniform(0.05, 0.3) * length
    inset, slope = 0.06, r.uniform(0.3, 0.6)
    cab = box_corners(x0 + inset, x1 - inset, body_top, roof, z0 + back, z1 - front)
    cab[4:, 0] += np.array([1, -1, -1, 1]) * 0.12  # narrower roof
    cab[4:, 2] += np.array([1, 1, -1, -1]) * slope  # raked windows
    cab_faces = scene.cv.hexa(cab, colour, tag)
    _glass(scene, cab_faces)
    if "near" in faces:
        _lights(scene, faces["near"], direction, colour)


def _glass(scene: Street, faces):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    glass = picked(r, GLASS, 8)
    for name, quad in faces.items():
        if name in ("near", "far"):
            cv.poly(cam.project(*face_quad(quad, 0.07, 0.93, 0.08, 0.9).T), glass)
        elif name in ("left", "right"):
            cv.poly(cam.project(*face_quad(quad, 0.08, 0.47, 0.1, 0.88).T), shaded(glass, 0.9))
            cv.poly(cam.project(*face_quad(quad, 0.53, 0.92, 0.1, 0.88).T), shaded(glass, 0.9))


def _van(scene: Street, x0, x1, z0, z1, clearance, r_w, axles, direction, tag):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    colour = picked(r, CAR_COLOURS[:8], 10)
    top = r.uniform(1.9, 2.4)
    faces = scene.cv.hexa(box_corners(x0, x1, clearance, top, z0, z1), colour, tag)
    _wheel_discs(scene, faces, r_w, axles, tag)
    if "near" in faces:
        cv.poly(cam.project(*face_quad(faces["near"], 0.08, 0.92, 0.55, 0.9).T), picked(r, GLASS, 8))
        _lights(scene, faces["near"], direction, colour)
    for name in ("left", "right"):
        if name in faces:
            cv.poly(cam.project(*face_quad(faces[name], 0.05, 0.95, 0.6, 0.88).T), picked(r, GLASS, 8))


def _truck(scene: Street, x0, x1, z0, z1, clearance, r_w, axles, direction, tag):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    cab_len = r.uniform(1.8, 2.4)
    cab_colour = picked(r, CAR_COLOURS, 12)
    box_colour = picked(r, [(235, 235, 235), (200, 200, 200), (150, 150, 155), (60, 90, 140), (170, 40, 40)], 12)
    cab_h, box_h = r.uniform(2.6, 3.2), r.uniform(3.0, 3.9)
    if direction > 0:  # leaving: cargo box near, cab far
        cargo, cab = (z0, z1 - cab_len - 0.3), (z1 - cab_len, z1)
    else:
        cab, cargo = (z0, z0 + cab_len), (z0 + cab_len + 0.3, z1)
    parts = [(cab, cab_h, cab_colour), (cargo, box_h, box_colour)]
    parts.sort(key=lambda p: -p[0][0])  # far part first
    for (za, zb), h, colour in parts:
        faces = scene.cv.hexa(box_corners(x0, x1, clearance, h, za, zb), colour, tag)
        _wheel_discs(scene, faces, r_w, [a for a in axles if za <= a <= zb], tag)
        if (za, zb) == cab and "near" in faces:
            cv.poly(cam.project(*face_quad(faces["near"], 0.06, 0.94, 0.5, 0.88).T), picked(r, GLASS, 8))
            _lights(scene, faces["near"], direction, colour)
        elif "near" in faces:
            cv.poly(cam.project(*face_quad(faces["near"], 0.495, 0.505, 0.05, 0.97).T), shaded(colour, 0.6))
            _lights(scene, faces["near"], direction, colour)


def _long_vehicle(scene: Street, kind, x0, x1, z0, z1, clearance, r_w, axles, direction, tag):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    if kind == "bus":
        colour = picked(r, [(235, 200, 40), (240, 240, 235), (200, 40, 40), (40, 90, 170), (60, 140, 80)], 10)
        h = r.uniform(2.9, 3.2)
    else:
        colour = picked(r, [(230, 230, 230), (200, 40, 40), (240, 200, 40), (60, 110, 170), (50, 50, 55)], 10)
        h = r.uniform(3.3, 3.6)
    faces = scene.cv.hexa(box_corners(x0, x1, clearance, h, z0, z1), colour, tag)
    _wheel_discs(scene, faces, r_w, axles, tag)
    glass = picked(r, GLASS, 8)
    for name, quad in faces.items():
        if name in ("left", "right"):
            cv.poly(cam.project(*face_quad(quad, 0.03, 0.97, 0.45, 0.85).T), glass)
            if kind == "bus":
                cv.poly(cam.project(*face_quad(quad, 0.0, 1.0, 0.2, 0.3).T), shaded(colour, 0.7))
        elif name == "near":
            cv.poly(cam.project(*face_quad(quad, 0.06, 0.94, 0.45, 0.9).T), glass)
            _lights(scene, quad, direction, colour)
    if kind == "train":  # the pantograph: a tram's signature
        p = cam.project([(x0 + x1) / 2] * 2, [h, h + 1.2], [z0 + 5] * 2)
        cv.line(p[0], p[1], cam.px(0.05, z0 + 5), (40, 40, 40), tag)
