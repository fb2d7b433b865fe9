"""Palettes and colour jitter: where every colour of a scene comes from."""
from __future__ import annotations

import numpy as np


def jittered(rng, colour, amount=18.0):
    return np.clip(np.asarray(colour, np.float64) + rng.normal(0, amount, 3), 0, 255)


def shaded(colour, factor):
    return np.clip(np.asarray(colour, np.float64) * factor, 0, 255)


def picked(rng, palette, amount=14.0):
    return jittered(rng, palette[rng.integers(len(palette))], amount)


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
