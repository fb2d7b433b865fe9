"""What occupancy_grid_node reports on /diagnostics: rates, update time, refused inputs by
reason, label images lost in transport and odometry gaps.

One DiagnosticStatus per report. Its level is WARN while inputs are being refused or odometry
has gaps (counted since the report before, so the status recovers once the input is good
again), OK otherwise; the totals since the start are in the values.
"""
from __future__ import annotations

import time
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

#: What a label image or odometry message can be refused for (the node's counter names), and
#: what the status calls it.
REFUSALS = {
    "malformed": "malformed label images",
    "waiting": "label images before camera_info",
    "refused": "label images the camera model refuses",
    "no_odometry": "label images without odometry near their stamp",
    "errors": "label images that raised an error",
    "odometry_nonfinite": "odometry messages with a non-finite pose",
    "odometry_invalid": "odometry messages with a zero quaternion",
}
#: Everything the status warns about while it keeps happening.
PROBLEMS = {**REFUSALS, "lost": "label images lost in transport", "odometry_gaps": "odometry gaps"}
UPDATE_WINDOW = 100  # frames over which the update time is summarised


class GridHealth:
    """Arrival and publish times over the last ``window`` seconds, update times of the last
    frames, and the largest odometry gap since the report before. One thread (the executor)."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self._inputs: deque[float] = deque()
        self._outputs: deque[float] = deque()
        self._updates: deque[float] = deque(maxlen=UPDATE_WINDOW)
        self._reported: Counter[str] = Counter()
        self.max_odometry_gap = 0.0

    def frame_in(self) -> None:
        self._inputs.append(time.monotonic())

    def frame_out(self, update_s: float) -> None:
        self._outputs.append(time.monotonic())
        self._updates.append(update_s)

    def odometry_gap(self, seconds: float) -> None:
        self.max_odometry_gap = max(self.max_odometry_gap, seconds)

    def _rate(self, times: deque[float], now: float) -> float:
        while times and times[0] < now - self.window:
            times.popleft()
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)

    def status(self, name: str, counts: Counter[str], extra: dict[str, str]) -> DiagnosticStatus:
        """The report now; ``counts``: the node's totals (frames, published, refusals by reason,
        lost, odometry_gaps)."""
        now = time.monotonic()
        updates = np.asarray(self._updates) * 1e3
        values = {
            "input_rate_hz": self._rate(self._inputs, now),
            "output_rate_hz": self._rate(self._outputs, now),
            "update_p50_ms": float(np.percentile(updates, 50)) if updates.size else float("nan"),
            "update_p90_ms": float(np.percentile(updates, 90)) if updates.size else float("nan"),
            "update_max_ms": float(updates.max()) if updates.size else float("nan"),
            "label_images": counts["frames"],
            "label_images_lost": counts["lost"],
            "grids_published": counts["published"],
            **{f"refused_{reason}": counts[reason] for reason in REFUSALS},
            "odometry_messages": counts["odometry"],
            "odometry_gaps": counts["odometry_gaps"],
            "odometry_max_gap_s": self.max_odometry_gap,
        }
        new = {reason: counts[reason] - self._reported[reason] for reason in PROBLEMS}
        self._reported = Counter({reason: counts[reason] for reason in new})
        self.max_odometry_gap = 0.0
        message = f"{values['output_rate_hz']:.1f} Hz grids, update p50 {values['update_p50_ms']:.1f} ms"
        problems = [f"{n} {PROBLEMS[reason]}" for reason, n in new.items() if n]
        level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        if problems:
            message += " since the last report: " + ", ".join(problems)
        kv = [KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in values.items()]
        kv += [KeyValue(key=k, value=v) for k, v in extra.items()]
        return DiagnosticStatus(level=level, name=name, message=message, hardware_id="", values=kv)
