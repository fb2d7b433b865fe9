"""Where the cells of a grid lie: the geometry nav_msgs/OccupancyGrid describes.

Cell (row i, column j) covers x in [origin_x + j r, origin_x + (j + 1) r) and y in
[origin_y + i r, origin_y + (i + 1) r) of the grid's frame, r being the resolution: columns run
along x, rows along y, and the flat index is i * width + j. That is OccupancyGrid's ``data``
order with an identity orientation and ``info.origin`` at the corner of cell (0, 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GridLayout:
    resolution: float  # metres per cell
    width: int  # cells along x (columns)
    height: int  # cells along y (rows)
    origin_x: float  # metres: the outer corner of cell (0, 0)
    origin_y: float

    @classmethod
    def centred(cls, resolution: float, size_x: float, size_y: float,
                centre_x: float = 0.0, centre_y: float = 0.0) -> GridLayout:
        """A grid of ``size_x`` x ``size_y`` metres centred on (centre_x, centre_y)."""
        width, height = cells_in(size_x, resolution, "size_x"), cells_in(size_y, resolution, "size_y")
        return cls(resolution, width, height,
                   centre_x - width * resolution / 2.0, centre_y - height * resolution / 2.0)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def size(self) -> int:
        return self.height * self.width

    def centres_x(self) -> np.ndarray:
        return self.origin_x + (np.arange(self.width) + 0.5) * self.resolution

    def centres_y(self) -> np.ndarray:
        return self.origin_y + (np.arange(self.height) + 0.5) * self.resolution

    def centres(self) -> np.ndarray:
        """Cell centres (size, 3) on the ground (z = 0), in flat-index order."""
        xs, ys = np.meshgrid(self.centres_x(), self.centres_y())
        return np.stack([xs.ravel(), ys.ravel(), np.zeros(self.size)], axis=-1)

    def index_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Flat indices of the cells holding points (x, y); -1 outside the grid (or NaN)."""
        with np.errstate(invalid="ignore"):
            j = np.floor((np.asarray(x) - self.origin_x) / self.resolution)
            i = np.floor((np.asarray(y) - self.origin_y) / self.resolution)
            inside = (j >= 0) & (j < self.width) & (i >= 0) & (i < self.height)
        return np.where(inside, np.where(inside, i, 0) * self.width + np.where(inside, j, 0), -1).astype(np.int64)


def cells_in(length: float, resolution: float, name: str) -> int:
    """How many whole cells of ``resolution`` make ``length``; ValueError if not a whole number."""
    if not (resolution > 0.0 and math.isfinite(resolution)):
        raise ValueError(f"resolution must be a positive number of metres, got {resolution}")
    n = length / resolution
    if not (math.isfinite(n) and n >= 1.0) or abs(n - round(n)) > 1e-6 * max(1.0, n):
        raise ValueError(f"{name} = {length} m is not a whole number (>= 1) of {resolution} m cells; "
                         f"make it a multiple of the resolution")
    return int(round(n))
