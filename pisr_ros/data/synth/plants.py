"""Trees and bushes (vegetation), in the lots and along the curbs."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pisr_ros.data.synth.colours import jittered, picked, shaded
from pisr_ros.data.synth.labels import VEGETATION
from pisr_ros.data.synth.shapes import ellipse

if TYPE_CHECKING:  # the scene is passed in; importing it here would be circular
    from pisr_ros.data.synth.street import Street


def tree(scene: Street, x: float, z: float, size: float | None = None):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    tag = cv.stuff(VEGETATION)
    size = r.uniform(0.6, 1.5) if size is None else size
    trunk_h = r.uniform(1.5, 3.5) * size
    crown = r.uniform(1.5, 3.2) * size
    bark = jittered(r, (80, 65, 50), 10)
    tw = r.uniform(0.12, 0.25) * size
    cv.poly(cam.project([x - tw, x + tw, x + tw * 0.6, x - tw * 0.6], [0, 0, trunk_h + crown, trunk_h + crown], z),
            bark, tag)
    base = picked(r, [(55, 90, 35), (70, 105, 45), (45, 75, 40), (95, 115, 50), (120, 110, 45)], 10)
    cy = trunk_h + crown
    blobs = []
    for _ in range(int(r.integers(5, 12))):
        bx, by = x + r.normal(0, crown * 0.45), cy + r.normal(0, crown * 0.35)
        rad = crown * r.uniform(0.4, 0.75)
        c = cam.project(bx, by, z)[0]
        blobs.append((ellipse(c[0], c[1], cam.px(rad, z), cam.px(rad * r.uniform(0.8, 1.1), z), 16),
                      shaded(base, r.uniform(0.75, 1.2))))
    for poly, colour in blobs:
        cv.poly(poly, colour, tag)


def bush(scene: Street, x, z, y0):
    c = scene.cam.project(x, y0 + 0.4, z)[0]
    scene.cv.poly(ellipse(c[0], c[1], scene.cam.px(0.6, z), scene.cam.px(0.45, z), 14),
                 jittered(scene.rng, (60, 100, 45), 12), scene.cv.stuff(VEGETATION))
