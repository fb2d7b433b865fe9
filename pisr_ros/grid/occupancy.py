"""Fusing observations over time: log-odds occupancy, per-class evidence, decay, a moving window.

Occupancy is kept as log-odds L = log(p / (1 - p)) per cell: a free observation adds
logit(p_miss) (< 0), an occupied one logit(p_hit) (> 0), and L is clamped to
[logit(clamp_min), logit(clamp_max)] so that the map can change its mind (OctoMap's scheme).
Each cell takes at most one update per frame: the caller hands in one state per cell.

Classes are kept as evidence per cell and class, an exponential moving average of one-hot
observations (rate ``class_rate``): the argmax is the cell's class, its share of the total the
confidence. Thing classes forget: their evidence, and the log-odds of cells last updated as one
of them, halve every ``half_life`` seconds of message time; a cell whose log-odds decay to
within 1 % of p = 0.5 becomes unknown again. Stuff does not decay by default.

The evidence is stored scaled, E[c, n] = stored[c, n] * class_scale[c] * cell_scale[n], so that
the moving average (every class of a cell times 1 - rate) is one multiply of ``cell_scale`` and
the decay (one class everywhere) one multiply of ``class_scale``: an update touches one stored
value per cell whatever the number of classes, and the argmax follows incrementally because only
the observed class gains. Scales are folded back into the stored values before they underflow.

The window follows the robot by whole cells over a fixed lattice in the fusion frame (``odom``).
Its arrays are stored as a torus: lattice cell (I, J) lives at (I mod height, J mod width), so
moving the window clears the cells that enter and copies nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pisr_ros.grid.inverse_sensor import NO_UPDATE, SEEN_OCCUPIED
from pisr_ros.grid.layout import GridLayout
from pisr_ros.taxonomy import NUM_CLASSES, VOID_TRAIN_ID

UNKNOWN = -1  # OccupancyGrid's value for cells never observed
# A decaying cell within this many log-odds of 0 (p = 0.51) has nothing left to say.
_FORGET_LOGODDS = math.log(0.51 / 0.49)
# Scales below this are folded into the stored evidence, long before float32 runs out of range.
_FOLD = 1e-6


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def probability_percent(logodds: np.ndarray | float) -> np.ndarray:
    """OccupancyGrid's 0..100 for log-odds."""
    return np.rint(100.0 / (1.0 + np.exp(-np.asarray(logodds, np.float32))))


# How navigation stacks read an OccupancyGrid value v (nav2_map_server's trinary thresholds,
# also ROS 1 map_server's): free when v / 100 < 0.196, occupied when v / 100 > 0.65, else unknown.
NAV2_FREE_THRESH = 0.196
NAV2_OCCUPIED_THRESH = 0.65


@dataclass(frozen=True)
class FusionParams:
    # One observation must already read as free or occupied by nav2's thresholds, so that an ego
    # grid (one frame) and the first frame of a fused one are usable: logit(0.15) and logit(0.85)
    # give 15 and 85. Symmetric, so one free and one occupied sighting of a cell cancel out; the
    # clamps (OctoMap's) then keep an obstacle seen twice until it has been seen free three times.
    p_hit: float = 0.85
    p_miss: float = 0.15
    clamp_min: float = 0.12
    clamp_max: float = 0.97
    class_rate: float = 0.3
    #: Seconds per class (trainId order) for evidence to halve; 0 = never decays.
    half_life: tuple[float, ...] = (0.0,) * NUM_CLASSES

    def validate(self) -> None:
        if not 0.0 < self.p_miss < 0.5:
            raise ValueError(f"p_miss = {self.p_miss} must lie in (0, 0.5): a free observation lowers occupancy")
        if not 0.5 < self.p_hit < 1.0:
            raise ValueError(f"p_hit = {self.p_hit} must lie in (0.5, 1): an occupied observation raises occupancy")
        if not 0.0 < self.clamp_min < 0.5 < self.clamp_max < 1.0:
            raise ValueError(f"clamps must satisfy 0 < clamp_min < 0.5 < clamp_max < 1 "
                             f"(got clamp_min = {self.clamp_min}, clamp_max = {self.clamp_max})")
        if not 0.0 < self.class_rate <= 1.0:
            raise ValueError(f"class_rate = {self.class_rate} must lie in (0, 1]")
        if len(self.half_life) != NUM_CLASSES or not all(h >= 0.0 and math.isfinite(h) for h in self.half_life):
            raise ValueError(f"half_life needs {NUM_CLASSES} finite values >= 0 (0 = no decay), got {self.half_life}")

    def single_update(self) -> tuple[int, int]:
        """OccupancyGrid values of a cell seen once, free and occupied (what an ego grid shows)."""
        lo, hi = logit(self.clamp_min), logit(self.clamp_max)
        free = min(max(logit(self.p_miss), lo), hi)
        occupied = min(max(logit(self.p_hit), lo), hi)
        return int(probability_percent(free)), int(probability_percent(occupied))

    def nav2_reading_problem(self) -> str | None:
        """Why a cell seen once would read as unknown to nav2's trinary thresholds, or None."""
        free, occupied = self.single_update()
        if free / 100.0 < NAV2_FREE_THRESH and occupied / 100.0 > NAV2_OCCUPIED_THRESH:
            return None
        return (f"a cell seen once is {free} (free) or {occupied} (occupied): nav2 and map_server read "
                f"only values below {NAV2_FREE_THRESH * 100:g} as free and above {NAV2_OCCUPIED_THRESH * 100:g} "
                "as occupied, so such cells are unknown to them until seen more often (ego grid: always); "
                "lower p_miss / raise p_hit (or clamp_min / clamp_max) to change that")


class Accumulator:
    """Occupancy log-odds and class evidence over a window of ``layout``'s shape on a lattice.

    The lattice has cells of ``layout.resolution`` with (I, J) = (0, 0) at ``anchor``; the window
    covers lattice rows I0 .. I0 + height - 1 and columns J0 .. J0 + width - 1. Arrays indexed by
    "storage" cell are in torus order; the outputs are in window order.
    """

    def __init__(self, layout: GridLayout, params: FusionParams, anchor: tuple[float, float] = (0.0, 0.0)):
        params.validate()
        self.layout, self.params = layout, params
        self.anchor = (float(anchor[0]), float(anchor[1]))
        self.i0 = self.j0 = 0
        n = layout.size
        self.logodds = np.zeros(n, np.float32)
        self.observed = np.zeros(n, bool)
        self._stored = np.zeros((NUM_CLASSES, n), np.float32)  # one contiguous row per class
        self._cell_scale = np.ones(n, np.float32)
        self._class_scale = np.ones(NUM_CLASSES, np.float64)
        self.cls = np.full(n, VOID_TRAIN_ID, np.uint8)  # argmax of the evidence; 255 = none
        self.decay_cls = np.full(n, VOID_TRAIN_ID, np.uint8)  # the class as of the last update
        self.l_hit, self.l_miss = np.float32(logit(params.p_hit)), np.float32(logit(params.p_miss))
        self.l_min, self.l_max = np.float32(logit(params.clamp_min)), np.float32(logit(params.clamp_max))
        self._half_life = np.asarray(params.half_life, np.float64)
        self._decaying = np.flatnonzero(self._half_life > 0.0)
        self._decays = np.zeros(256, bool)
        self._decays[self._decaying] = True
        self.stamp: float | None = None

    # ------------------------------------------------------------------ the window
    def window_layout(self) -> GridLayout:
        """The window's geometry in the fusion frame (what the OccupancyGrid message says)."""
        r = self.layout.resolution
        return GridLayout(r, self.layout.width, self.layout.height,
                          self.anchor[0] + self.j0 * r, self.anchor[1] + self.i0 * r)

    def lattice_of(self, x: float, y: float) -> tuple[int, int]:
        """The lattice (I, J) nearest to corner (x, y): where a window with that origin starts."""
        r = self.layout.resolution
        return round((y - self.anchor[1]) / r), round((x - self.anchor[0]) / r)

    def move_window(self, i0: int, j0: int) -> None:
        """Let the window start at lattice cell (i0, j0); cells that enter it start unknown."""
        h, w = self.layout.height, self.layout.width
        di, dj = i0 - self.i0, j0 - self.j0
        if di == 0 and dj == 0:
            return
        if abs(di) >= h or abs(dj) >= w:
            self.clear()
        else:
            # Lattice rows leaving the window free exactly the storage rows the entering ones take.
            rows = np.array([(self.i0 + k) % h for k in (range(di) if di > 0 else range(h + di, h))], np.int64)
            cols = np.array([(self.j0 + k) % w for k in (range(dj) if dj > 0 else range(w + dj, w))], np.int64)
            mask = np.zeros((h, w), bool)
            mask[rows, :] = True
            mask[:, cols] = True
            self._forget(np.flatnonzero(mask))
        self.i0, self.j0 = i0, j0

    def clear(self) -> None:
        self.logodds[:] = 0.0
        self.observed[:] = False
        self._stored[:] = 0.0
        self._cell_scale[:] = 1.0
        self._class_scale[:] = 1.0
        self.cls[:] = VOID_TRAIN_ID
        self.decay_cls[:] = VOID_TRAIN_ID

    def _forget(self, cells: np.ndarray) -> None:
        self.logodds[cells] = 0.0
        self.observed[cells] = False
        self._stored[:, cells] = 0.0
        self._cell_scale[cells] = 1.0
        self.cls[cells] = VOID_TRAIN_ID
        self.decay_cls[cells] = VOID_TRAIN_ID

    def storage_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """x of each storage column and y of each storage row: the window cells' centres."""
        h, w, r = self.layout.height, self.layout.width, self.layout.resolution
        rows = self.i0 + (np.arange(h) - self.i0) % h
        cols = self.j0 + (np.arange(w) - self.j0) % w
        return self.anchor[0] + (cols + 0.5) * r, self.anchor[1] + (rows + 0.5) * r

    def storage_index(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Storage indices of points (x, y) in the fusion frame; -1 outside the window or NaN."""
        h, w, r = self.layout.height, self.layout.width, self.layout.resolution
        with np.errstate(invalid="ignore"):
            big_j = np.floor((np.asarray(x) - self.anchor[0]) / r) - self.j0
            big_i = np.floor((np.asarray(y) - self.anchor[1]) / r) - self.i0
            inside = (big_j >= 0) & (big_j < w) & (big_i >= 0) & (big_i < h)
        j = (np.where(inside, big_j, 0).astype(np.int64) + self.j0) % w
        i = (np.where(inside, big_i, 0).astype(np.int64) + self.i0) % h
        return np.where(inside, i * w + j, -1)

    def in_window_order(self, a: np.ndarray) -> np.ndarray:
        """A storage-order array (..., size) as (..., height, width) in window order (row 0 = lowest y)."""
        h, w = self.layout.height, self.layout.width
        a2 = a.reshape(a.shape[:-1] + (h, w))
        if self.i0 % h == 0 and self.j0 % w == 0:
            return a2
        return np.roll(a2, (-(self.i0 % h), -(self.j0 % w)), axis=(-2, -1))

    # ------------------------------------------------------------------ fusion
    def decay(self, stamp: float) -> None:
        """Let message time run to ``stamp`` (seconds): decaying classes lose evidence everywhere,
        cells last updated as one of them lose log-odds."""
        last, self.stamp = self.stamp, stamp
        if last is None or stamp <= last or self._decaying.size == 0:
            return
        factors = np.ones(256, np.float64)
        factors[self._decaying] = 0.5 ** ((stamp - last) / self._half_life[self._decaying])
        self._class_scale[self._decaying] *= factors[self._decaying]
        for c in self._decaying[self._class_scale[self._decaying] < _FOLD]:
            self._stored[c] *= np.float32(self._class_scale[c])
            self._class_scale[c] = 1.0
        # Only a cell whose best class decays can see another class overtake it.
        cells = np.flatnonzero(self._decays[self.cls])
        if cells.size:
            ev = self._stored[:, cells] * self._class_scale[:, None].astype(np.float32)
            self.cls[cells] = np.where(ev.max(axis=0) > 0.0, ev.argmax(axis=0), VOID_TRAIN_ID)
        cells = np.flatnonzero(self._decays[self.decay_cls])
        if cells.size:
            self.logodds[cells] *= factors[self.decay_cls[cells]].astype(np.float32)
            self._forget(cells[np.abs(self.logodds[cells]) < _FORGET_LOGODDS])

    def update(self, state: np.ndarray, cls: np.ndarray) -> None:
        """One frame: ``state`` (size,) NO_UPDATE / SEEN_FREE / SEEN_OCCUPIED per storage cell, and
        the trainId seen there in ``cls`` (size,) uint8 (< NUM_CLASSES wherever state is set)."""
        cells = np.flatnonzero(state != NO_UPDATE)
        if cells.size == 0:
            return
        step = np.where(state[cells] == SEEN_OCCUPIED, self.l_hit, self.l_miss)
        self.logodds[cells] = np.clip(self.logodds[cells] + step, self.l_min, self.l_max)
        self.observed[cells] = True

        n = self.layout.size
        c = cls[cells].astype(np.int64)
        rate = self.params.class_rate
        scale = self._cell_scale[cells] * np.float32(1.0 - rate)
        small = scale < _FOLD
        if np.any(small):
            folded = cells[small]
            self._stored[:, folded] *= scale[small]
            scale[small] = 1.0
        self._cell_scale[cells] = scale
        stored = self._stored.reshape(-1)
        here = c * n + cells
        gain = self._class_scale[c]
        stored[here] += (rate / (gain * scale)).astype(np.float32)
        # Every other class of the cell shrank alike, so the argmax is the old one or the new one.
        old = self.cls[cells].astype(np.int64)
        had = old < NUM_CLASSES
        old_safe = np.where(had, old, 0)
        old_value = np.where(had, stored[old_safe * n + cells] * self._class_scale[old_safe], -1.0)
        best = np.where(stored[here] * gain >= old_value, c, old).astype(np.uint8)
        self.cls[cells] = best
        self.decay_cls[cells] = best

    # ------------------------------------------------------------------ outputs
    def evidence(self) -> np.ndarray:
        """Class evidence (NUM_CLASSES, height, width) float32 in window order (for checks and plots)."""
        ev = self._stored * self._class_scale[:, None].astype(np.float32) * self._cell_scale[None, :]
        return self.in_window_order(ev)

    def occupancy(self) -> np.ndarray:
        """OccupancyGrid data (height, width) int8 in window order: 0..100, -1 never observed."""
        data = np.where(self.observed, probability_percent(self.logodds), UNKNOWN).astype(np.int8)
        return self.in_window_order(data)

    def semantic(self) -> np.ndarray:
        """Class image (height, width) uint8 in window order: argmax trainId, 255 unknown."""
        return self.in_window_order(np.where(self.observed, self.cls, VOID_TRAIN_ID).astype(np.uint8))

    def confidence(self) -> np.ndarray:
        """Share of the argmax class in each cell's evidence (height, width) float32; 0 unknown."""
        ev = self.evidence()
        total = ev.sum(axis=0)
        conf = np.where(self.in_window_order(self.observed) & (total > 0), ev.max(axis=0) / np.maximum(total, 1e-30), 0.0)
        return conf.astype(np.float32)
