"""The pinhole camera every shape is projected through."""
from __future__ import annotations

import math

import numpy as np


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
