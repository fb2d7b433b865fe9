"""What panoptic_node reports on /diagnostics: rates, latency percentiles and counters."""
from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


STAGE_WINDOW = 100  # frames over which stage times are summarised
# A header stamp is comparable with the node's clock when stamp -> publish falls in this range
# (seconds). Outside it the stamp comes from another clock's epoch (a bag replayed with its
# original stamps, a camera on simulated time or counting from its own boot), and its
# difference from the node's clock says nothing about latency. Up to a second early is clock
# skew between machines and counts as 0.
COMPARABLE_LATENCY_S = (-1.0, 30.0)


def stamp_latency(stamp_s: float, now_s: float) -> float | None:
    """Seconds from a header stamp to ``now_s`` on the node's clock, or None when the stamp is
    not comparable with that clock (``COMPARABLE_LATENCY_S``)."""
    latency = now_s - stamp_s
    low, high = COMPARABLE_LATENCY_S
    if not low <= latency <= high:  # also NaN
        return None
    return max(0.0, latency)


class NodeStats:
    """Thread-safe counters and sliding windows (the last ``window`` seconds) for one node."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self._lock = threading.Lock()
        self._inputs: deque[float] = deque()
        # (time, latency s or None when the stamp is not comparable, in-node s)
        self._outputs: deque[tuple[float, float | None, float]] = deque()
        self.received = 0
        self.processed = 0
        self.dropped = 0  # superseded by a newer frame before inference took them
        self.lost_in_transport = 0  # lost by the middleware on the way (reported as sequence gaps)
        self.rejected: Counter[str] = Counter()  # malformed, by reason
        self._rejected_taken_in = 0  # of those, refused after being taken in (at decoding)
        self.failed = 0  # inference errors
        self.overlays = 0  # overlays computed (only while somebody subscribes)
        self.stamps_not_comparable = 0  # published frames whose stamp is from another clock's epoch
        self._stages: dict[str, deque[float]] = {}  # stage -> seconds of the last frames

    def _trim(self, now: float) -> None:
        while self._inputs and self._inputs[0] < now - self.window:
            self._inputs.popleft()
        while self._outputs and self._outputs[0][0] < now - self.window:
            self._outputs.popleft()

    def frame_in(self) -> None:
        with self._lock:
            self.received += 1
            self._inputs.append(time.monotonic())

    def frame_out(self, latency: float | None, in_node: float) -> None:
        """``latency``: header stamp to publish (``stamp_latency``), None for a stamp that is not
        comparable with the node's clock: such frames count in the rates and ``in_node`` but not
        in the latency percentiles. ``in_node``: arrival in the node to publish (the wait for
        the inference thread included)."""
        with self._lock:
            self.processed += 1
            if latency is None:
                self.stamps_not_comparable += 1
            self._outputs.append((time.monotonic(), latency, in_node))

    def lost(self, count: int) -> None:
        with self._lock:
            self.lost_in_transport += count

    def drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def reject(self, reason: str, taken_in: bool = False) -> None:
        """``taken_in``: the frame had been counted as received (refused at decoding)."""
        with self._lock:
            self.rejected[reason] += 1
            self._rejected_taken_in += taken_in

    def stages(self, **seconds: float) -> None:
        with self._lock:
            for name, value in seconds.items():
                self._stages.setdefault(name, deque(maxlen=STAGE_WINDOW)).append(value)

    def overlay(self) -> None:
        with self._lock:
            self.overlays += 1

    def fail(self) -> None:
        with self._lock:
            self.failed += 1

    def snapshot(self) -> dict:
        with self._lock:
            now = time.monotonic()
            self._trim(now)
            latencies = [lat for _, lat, _ in self._outputs if lat is not None]
            in_node = [t for _, _, t in self._outputs]
            span = min(self.window, max(now - (self._inputs[0] if self._inputs else now), 1e-9))
            out_span = min(self.window, max(now - (self._outputs[0][0] if self._outputs else now), 1e-9))
            return {
                "input_rate_hz": len(self._inputs) / span if len(self._inputs) > 1 else 0.0,
                "output_rate_hz": len(self._outputs) / out_span if len(self._outputs) > 1 else 0.0,
                "latency_p50_ms": float(np.percentile(latencies, 50) * 1e3) if latencies else float("nan"),
                "latency_p90_ms": float(np.percentile(latencies, 90) * 1e3) if latencies else float("nan"),
                "in_node_p50_ms": float(np.percentile(in_node, 50) * 1e3) if in_node else float("nan"),
                "in_node_p90_ms": float(np.percentile(in_node, 90) * 1e3) if in_node else float("nan"),
                "received": self.received,
                "processed": self.processed,
                "dropped_frames": self.dropped,
                "lost_in_transport": self.lost_in_transport,
                "rejected_messages": sum(self.rejected.values()),
                "rejected_by_reason": dict(self.rejected),
                "inference_errors": self.failed,
                # Taken in and neither published, dropped nor refused yet: 0 when idle, at most
                # 3 (one waiting, one in the network, one being published).
                "frames_in_node": self.received - self.processed - self.dropped - self.failed - self._rejected_taken_in,
                "overlays_published": self.overlays,
                "stamps_not_comparable": self.stamps_not_comparable,
                **{f"stage_{name}_p50_ms": float(np.median(v) * 1e3) for name, v in self._stages.items() if v},
            }


def status(name: str, snap: dict, extra: dict[str, str]) -> DiagnosticStatus:
    """One DiagnosticStatus: WARN while messages are being rejected or inference fails."""
    level = DiagnosticStatus.OK
    if snap["latency_p50_ms"] == snap["latency_p50_ms"]:  # not NaN
        latency = f"p50 latency {snap['latency_p50_ms']:.0f} ms"
    elif snap["processed"] and snap["stamps_not_comparable"]:
        latency = "latency unknown: the input stamps are not on this node's clock"
    else:
        latency = "no latency yet"
    message = f"{snap['output_rate_hz']:.1f} Hz out, {latency}"
    if snap["rejected_messages"] or snap["inference_errors"]:
        level = DiagnosticStatus.WARN
        message += f"; {snap['rejected_messages']} messages rejected, {snap['inference_errors']} inference errors"
    if snap["lost_in_transport"]:
        level = DiagnosticStatus.WARN
        message += f"; {snap['lost_in_transport']} frames lost in transport"
    values = [KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v))
              for k, v in snap.items() if k != "rejected_by_reason"]
    values += [KeyValue(key=f"rejected_{reason}", value=str(n)) for reason, n in sorted(snap["rejected_by_reason"].items())]
    values += [KeyValue(key=k, value=v) for k, v in extra.items()]
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id="", values=values)
