"""What a replay hands to ``evaluate_replay``: the results by header stamp and what was sent,
the same from the offline runner and the live one (pisr_ros.ros.replay_live)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FrameResult:
    """What came back for one frame."""

    id_map: np.ndarray  # HxW int32 at camera resolution: trainId*1000+k, -1 void
    latency_s: float | None = None  # sent -> result received (live), or the model call (offline)


@dataclass
class ReplayOutput:
    """What one replay produced; offline and live replays both hand this to ``evaluate_replay``.

    ``results`` maps header stamps (ns) to ``FrameResult``s: a dict, or an iterable of
    (stamp, FrameResult) pairs (e.g. a generator that predicts frame by frame, so that not every
    id map is held in memory at once). ``sent_stamps``, ``wall_s`` and ``example_images`` are read
    only after ``results`` has been consumed, so a generator may fill them as it goes.
    """

    results: Mapping[int, FrameResult] | Iterable[tuple[int, FrameResult]]
    sent_stamps: list[int]  # header stamps of the frames sent, in the order sent
    wall_s: float | None = None  # first frame sent -> last result received; throughput = received / wall_s
    mode: str = "offline"  # "offline" or "live", for the report
    description: str = ""  # the model / node, for the report
    example_images: dict[int, np.ndarray] = field(default_factory=dict)  # stamp -> BGR frame (optional)
    notes: list[str] = field(default_factory=list)  # extra lines for the report


@dataclass
class Counts:
    sent: int = 0  # frames sent (played)
    received: int = 0  # sent frames whose result came back
    dropped: int = 0  # sent frames whose result did not come back
    labelled: int = 0  # sent frames whose stamp is in the frames map
    scored: int = 0  # labelled frames that came back and were scored
    dropped_labelled: int = 0  # labelled frames that did not come back (not scored; see panoptic_with_drops)
    unlabelled: int = 0  # sent frames whose stamp is not in the frames map (not scored)
    labels_not_sent: int = 0  # frames-map entries with no frame in the bag
    unexpected: int = 0  # results for stamps that were not sent (ignored)
