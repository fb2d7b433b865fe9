"""What panoptic_node's diagnostics make of its frames (NodeStats, status); no DDS needed."""
import math

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from pisr_ros.ros.diagnostics import NodeStats, stamp_latency, status

NOW = 1_764_000_000.0  # seconds since 1970, as a node's system clock reads


def test_stamps_of_the_node_clock_give_their_latency():
    assert stamp_latency(NOW - 0.120, NOW) == pytest_approx(0.120)
    assert stamp_latency(NOW + 0.3, NOW) == 0.0  # a camera clock slightly ahead: skew, not latency
    assert stamp_latency(NOW - 29.0, NOW) == pytest_approx(29.0)


def test_stamps_of_another_epoch_are_not_comparable():
    for stamp in (0.0, 12.5, NOW - 3600.0, NOW - 86400 * 400, NOW + 60.0, float("nan")):
        assert stamp_latency(stamp, NOW) is None, stamp


def pytest_approx(value):
    return pytest.approx(value, abs=1e-3)  # stamps near 1.7e9 s keep ~0.2 us


def test_a_replayed_bag_does_not_poison_the_latency_statistics():
    stats = NodeStats()
    for _ in range(20):
        stats.frame_in()
        stats.frame_out(stamp_latency(NOW - 0.1, NOW), 0.05)
    # A bag replayed with its original stamps (a year ago), and a sim-time camera (t ~ 100 s).
    for stamp in (NOW - 365 * 86400, 100.0) * 10:
        stats.frame_in()
        stats.frame_out(stamp_latency(stamp, NOW), 0.05)
    snap = stats.snapshot()
    assert snap["processed"] == 40 and snap["stamps_not_comparable"] == 20
    assert snap["latency_p90_ms"] == pytest_approx(100.0) and snap["latency_p50_ms"] == pytest_approx(100.0)
    assert snap["in_node_p90_ms"] == pytest_approx(50.0)  # every frame counts there
    st = status("/cam/panoptic_node: panoptic segmentation", snap, {})
    values = {kv.key: kv.value for kv in st.values}
    assert values["stamps_not_comparable"] == "20" and float(values["latency_p90_ms"]) == pytest_approx(100.0)


def test_only_incomparable_stamps_say_so_instead_of_a_latency():
    stats = NodeStats()
    for _ in range(5):
        stats.frame_in()
        stats.frame_out(stamp_latency(3.0, NOW), 0.05)
    snap = stats.snapshot()
    assert math.isnan(snap["latency_p90_ms"]) and snap["stamps_not_comparable"] == 5
    st = status("x", snap, {})
    assert st.level == DiagnosticStatus.OK and "not on this node's clock" in st.message


def test_frames_lost_in_transport_are_counted_and_warned_about():
    stats = NodeStats()
    stats.lost(2)
    stats.lost(1)
    snap = stats.snapshot()
    assert snap["lost_in_transport"] == 3
    st = status("x", snap, {})
    assert st.level == DiagnosticStatus.WARN and "3 frames lost in transport" in st.message
