"""Geometry in metres: boxes and their faces, sub-quads of a face, ellipses, and how far the
ground polygons reach."""
from __future__ import annotations

import numpy as np

FAR = 3000.0  # metres; "the horizon" for ground polygons
NEAR = 0.5  # metres; ground polygons start here, well below the bottom image row


def box_corners(x0, x1, y0, y1, z0, z1) -> np.ndarray:
    """The 8 corners of an axis-aligned box: bottom 0-3, top 4-7, each (x0,z0),(x1,z0),(x1,z1),(x0,z1)."""
    xs = np.array([x0, x1, x1, x0] * 2, np.float64)
    ys = np.array([y0] * 4 + [y1] * 4, np.float64)
    zs = np.array([z0, z0, z1, z1] * 2, np.float64)
    return np.stack([xs, ys, zs], axis=1)


# Faces of a hexahedron given as 8 corners in box_corners order, and how bright each is when lit from above.
FACES = {
    "near": (0, 1, 5, 4), "far": (3, 2, 6, 7), "left": (0, 3, 7, 4),
    "right": (1, 2, 6, 5), "bottom": (0, 1, 2, 3), "top": (4, 5, 6, 7),
}
FACE_LIGHT = {"near": 1.0, "far": 1.0, "left": 0.82, "right": 0.82, "bottom": 0.35, "top": 1.12}


def face_quad(corners: np.ndarray, a0, a1, b0, b1) -> np.ndarray:
    """A sub-quad of a planar face: (a, b) in [0,1]^2 run along edges 0->1 and 0->3."""
    c0, c1, c2, c3 = corners

    def at(a, b):
        return (1 - b) * ((1 - a) * c0 + a * c1) + b * ((1 - a) * c3 + a * c2)

    return np.stack([at(a0, b0), at(a1, b0), at(a1, b1), at(a0, b1)])


def ellipse(cx, cy, rx, ry, n=20) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)
