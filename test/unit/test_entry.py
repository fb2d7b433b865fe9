"""ros/entry.py: sets malloc up before a node's imports start threads, and names the nodes."""
import subprocess
import sys

# Importing the entry module must not import what starts threads: that is the point of it.
PROBE = """
import sys, threading
import pisr_ros.ros.entry
heavy = sorted(m for m in ("numpy", "rclpy", "onnxruntime", "torch") if m in sys.modules)
print(threading.active_count(), heavy)
"""


def test_entry_imports_nothing_that_starts_threads():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split(None, 1) == ["1", "[]\n"]


def test_unknown_node_is_refused_with_the_choices():
    done = subprocess.run([sys.executable, "-m", "pisr_ros.ros.entry", "camera_node"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "panoptic_node" in done.stderr and "occupancy_grid_node" in done.stderr
