"""Void the evaluators must ignore: the ego car's bonnet and the rectification border."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pisr_ros.data.synth.colours import picked, shaded
from pisr_ros.data.synth.labels import BORDER, EGO
from pisr_ros.data.synth.shapes import ellipse

if TYPE_CHECKING:  # the scene is passed in; importing it here would be circular
    from pisr_ros.data.synth.street import Street


def ego_and_border(scene: Street):
    r, cv, cam = scene.rng, scene.cv, scene.cam
    if r.random() < 0.55:  # the ego car's bonnet, as in every Cityscapes frame from that car
        top = cam.H * r.uniform(0.82, 0.93)
        sag = cam.H * r.uniform(0.03, 0.08)
        xs = np.linspace(-0.1, 1.1, 40) * cam.W
        ys = top + sag * ((xs / cam.W - 0.5) * 2) ** 2
        poly = np.concatenate([np.stack([xs, ys], 1), [[xs[-1], cam.H + 5], [xs[0], cam.H + 5]]])
        paint = picked(r, [(20, 20, 25), (60, 65, 75), (150, 150, 155), (30, 40, 70), (200, 200, 200)], 8)
        cv.poly(poly, paint, cv.stuff(EGO))
        # The windscreen reflection: a lighter band along the bonnet's edge.
        band = np.concatenate([np.stack([xs, ys], 1), np.stack([xs, ys + sag * 0.5], 1)[::-1]])
        cv.poly(band, shaded(paint, 1.5) + 20)
        if r.random() < 0.5:  # the star on the bonnet
            c = (cam.W * 0.5, top + sag * 0.02)
            cv.poly(ellipse(c[0], c[1] - cam.H * 0.012, cam.H * 0.01, cam.H * 0.014, 10), (200, 200, 205), cv.stuff(EGO))
    if r.random() < 0.35:  # rectification border: a label only, like the real one
        w = max(1, int(cam.W * r.uniform(0.002, 0.008)))
        for sl in (np.s_[:, :w], np.s_[:, -w:], np.s_[-w:, :]):
            cv.labels[sl] = BORDER
            cv.instances[sl] = BORDER
