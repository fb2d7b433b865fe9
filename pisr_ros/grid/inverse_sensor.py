"""The camera's inverse sensor model: what one label image says about the cells of the ego grid.

Per image column, read bottom up (near to far on a flat ground): pixels of *free* classes (road,
sidewalk, terrain, ...) are free space; the first pixel that is not free ends the column's free
run. If it belongs to an *occupied* class it is the contact point of an object with the ground,
and its cell is occupied; if it is *ignored* (sky, void) nothing is said, nor when the object
reaches the bottom row (its contact with the ground is out of view). Whatever lies beyond
along the column is hidden behind it and gets no update.

Done cell-wise rather than by walking rays: every cell centre is projected once (per camera
and grid geometry) to its nearest pixel, and each frame only gathers. The contact row of every
column is found once per frame with a vectorised reduction; a cell is free when its pixel lies
below the contact row, occupied when it is the contact pixel itself. Because a cell near the
camera spans many pixel rows, its centre can land on the free side of a contact edge that passes
through it; so the contact pixels are also mapped forward, one ground point per column (the
lower edge of the contact pixel, where the object meets the last ground pixel), and the cell
holding that point is marked occupied. Occupied wins, so each cell gets at most one update.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pisr_ros.grid.camera import CameraModel
from pisr_ros.grid.layout import GridLayout
from pisr_ros.taxonomy import NUM_CLASSES, VOID_TRAIN_ID

FREE, OCCUPIED, IGNORE = 0, 1, 2
EFFECTS = {"free": FREE, "occupied": OCCUPIED, "ignore": IGNORE}
#: Per-cell states of one frame's observation.
NO_UPDATE, SEEN_FREE, SEEN_OCCUPIED = 0, 1, 2


def effect_table(effects: dict[int, int]) -> np.ndarray:
    """A 256-entry lookup trainId -> effect; void and ids outside the class table are ignored."""
    lut = np.full(256, IGNORE, np.uint8)
    for train_id, effect in effects.items():
        if not 0 <= train_id < NUM_CLASSES:
            raise ValueError(f"trainId {train_id} is not a training class (0..{NUM_CLASSES - 1})")
        lut[train_id] = effect
    lut[VOID_TRAIN_ID] = IGNORE
    return lut


@dataclass(frozen=True)
class CellLookup:
    """Cells of a grid that one camera sees, each with its nearest pixel. Built once per geometry."""

    layout: GridLayout
    camera: CameraModel
    max_range: float
    cells: np.ndarray  # (M,) int64 flat cell indices, ascending
    rows: np.ndarray  # (M,) int64 pixel rows
    cols: np.ndarray  # (M,) int64 pixel columns
    pixels: np.ndarray  # (M,) int64 flat pixel indices, rows * width + cols
    top_row: int  # no cell samples a row above this one

    @property
    def empty(self) -> bool:
        return self.cells.size == 0


def build_lookup(camera: CameraModel, layout: GridLayout, max_range: float) -> CellLookup:
    """Project every cell centre to its nearest pixel; keep those in the image and within range.

    Cells behind the camera never reach the image (their projection would land, mirrored, in the
    sky), and the range is measured on the ground from the point below the camera.
    """
    centres = layout.centres()
    in_range = np.hypot(centres[:, 0] - camera.centre[0], centres[:, 1] - camera.centre[1]) <= max_range
    cells = np.flatnonzero(in_range)
    uv, valid = camera.project(centres[cells])
    with np.errstate(invalid="ignore"):
        # Nearest pixel: integer coordinates are pixel centres, so round half up.
        col = np.floor(uv[:, 0] + 0.5)
        row = np.floor(uv[:, 1] + 0.5)
        valid &= (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
    cells, row, col = cells[valid], row[valid].astype(np.int64), col[valid].astype(np.int64)
    return CellLookup(layout, camera, float(max_range), cells, row, col, row * camera.width + col,
                      int(row.min()) if row.size else camera.height)


@dataclass
class Observation:
    """What one label image says, in the ego grid: free cells, occupied cells, contact points."""

    free_cells: np.ndarray  # (F,) flat ego-cell indices
    free_class: np.ndarray  # (F,) uint8 trainIds seen there
    occupied_cells: np.ndarray  # (O,) flat ego-cell indices whose pixel is a contact pixel
    occupied_class: np.ndarray  # (O,) uint8
    contact_xy: np.ndarray  # (K, 2) base_link ground points of the contact edges
    contact_class: np.ndarray  # (K,) uint8


def contact_rows(effects: np.ndarray, first_row: int = 0) -> np.ndarray:
    """Per column, the lowest row whose effect is not FREE; -1 if the whole column is free.

    ``effects`` (R, W) uint8 holds the image rows from ``first_row`` down to the bottom; the rows
    returned count from the top of the full image.
    """
    blocked = effects != FREE
    # The largest blocked row per column, as a max over rows numbered from 1 (0 = none): one
    # streaming pass, several times faster than argmax over a flipped, strided view.
    n = effects.shape[0]
    numbers = np.arange(1, n + 1, dtype=np.uint16 if n < 65535 else np.uint32)[:, None]
    last = (blocked * numbers).max(axis=0).astype(np.int64)
    return np.where(last > 0, last - 1 + first_row, -1)


def observe(labels: np.ndarray, lookup: CellLookup, effect_lut: np.ndarray) -> Observation:
    """The inverse sensor model for one label image (H, W) uint8 of trainIds (255 void)."""
    camera = lookup.camera
    if labels.shape != (camera.height, camera.width):
        raise ValueError(f"label image is {labels.shape[1]}x{labels.shape[0]} but the lookup was built "
                         f"for {camera.width}x{camera.height}")
    if lookup.empty:
        empty = np.zeros(0, np.int64)
        return Observation(empty, empty.astype(np.uint8), empty, empty.astype(np.uint8),
                           np.zeros((0, 2)), empty.astype(np.uint8))
    # Rows above every sampled pixel cannot hide a sampled one; a small margin keeps contact
    # edges of the farthest cells, whose footprint reaches a little above their centre's row.
    top = max(0, lookup.top_row - 2)
    contact = contact_rows(np.take(effect_lut, labels[top:]), top)

    # An object reaching the bottom row has no ground below it in the image: its contact with the
    # ground is out of view, and the ray below its lowest pixel meets the object, not the ground.
    seen = (contact >= 0) & (contact < camera.height - 1)

    flat = labels.reshape(-1)
    cell_class = np.take(flat, lookup.pixels)
    k = contact[lookup.cols]
    free = lookup.rows > k
    at_contact = (lookup.rows == k) & seen[lookup.cols] & (np.take(effect_lut, cell_class) == OCCUPIED)

    # Forward mapping of the contact pixels: one ground point per column whose contact is occupied.
    cols = np.flatnonzero(seen)
    contact_class = labels[contact[cols], cols]
    keep = effect_lut[contact_class] == OCCUPIED
    cols, contact_class = cols[keep], contact_class[keep]
    # The lower edge of the contact pixel: where the object meets the nearest free pixel below it.
    ground = camera.pixel_to_ground(np.stack([cols.astype(np.float64), contact[cols] + 0.5], axis=-1))
    with np.errstate(invalid="ignore"):
        reach = np.hypot(ground[:, 0] - camera.centre[0], ground[:, 1] - camera.centre[1])
        keep = reach <= lookup.max_range  # False for NaN: at or above the horizon
    return Observation(
        lookup.cells[free], cell_class[free],
        lookup.cells[at_contact], cell_class[at_contact],
        ground[keep, :2], contact_class[keep],
    )

