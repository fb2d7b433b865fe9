"""ros/entry.py: sets malloc up before a node's imports start threads, and names the nodes."""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pisr_ros.ros.entry import NODES

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


# ---------------------------------------------------------------- the ros2 run wrappers
ROOT = Path(__file__).resolve().parents[2]


def _cmake_wrapper(node: str) -> str:
    """The script CMakeLists.txt writes for ``node`` (its file(WRITE) text, with CMake's escapes
    and ${node} resolved as CMake resolves them)."""
    cmake = (ROOT / "CMakeLists.txt").read_text()
    found = re.search(r'file\(WRITE "\$\{script\}"\s*"((?:[^"\\]|\\.)*)"\)', cmake)
    assert found, "CMakeLists.txt no longer writes the node wrappers with file(WRITE \"${script}\" ...)"
    return found.group(1).replace("\\n", "\n").replace('\\"', '"').replace("${node}", node)


def _console_script_target(node: str) -> str:
    setup = (ROOT / "setup.py").read_text()
    found = re.search(rf'"{node} = ([\w.]+:\w+)"', setup)
    assert found, f"setup.py has no console script {node}"
    return found.group(1)


@pytest.mark.parametrize("node", NODES)
def test_cmake_wrapper_calls_what_the_console_script_calls(node):
    module, function = _console_script_target(node).split(":")
    tree = ast.parse(_cmake_wrapper(node))
    imports = [(n.module, [a.name for a in n.names]) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert imports == [(module, [function])] and function in calls


# A parameter each node refuses at start, and words of the reason.
REFUSED = {"panoptic_node": ("backend:=tflite", "backend must be one of"),
           "occupancy_grid_node": ("p_miss:=0.7", "p_miss")}


@pytest.mark.parametrize("node", NODES)
def test_cmake_wrapper_sets_malloc_up_before_the_node_imports_and_fails_in_one_line(node, tmp_path):
    """Run the wrapper as ros2 run would, with a parameter the node refuses: the entry module
    (and so the allocator) is imported before numpy and rclpy, and both nodes refuse the same
    way: exit status 2 and one line, ``<node>: cannot start: <reason>``."""
    script = tmp_path / node
    script.write_text(_cmake_wrapper(node))
    param, words = REFUSED[node]
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")  # the node exists briefly
    done = subprocess.run([sys.executable, "-X", "importtime", str(script), "--ros-args", "-p", param],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    order = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert order.index("pisr_ros.ros.entry") < order.index("numpy") < order.index("rclpy")
    said = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert len(said) == 1 and said[0].startswith(f"{node}: cannot start: ") and words in said[0], said


@pytest.mark.parametrize("ros_args, words", [
    (["--params-file", "missing_grid_params.yaml"], "missing_grid_params.yaml"),
    (["-p", "nonsense"], "'-p nonsense'"),
])
def test_ros_arguments_rcl_cannot_parse_fail_in_one_line_not_a_traceback(ros_args, words):
    done = subprocess.run([sys.executable, "-m", "pisr_ros.ros.entry", "occupancy_grid_node", "--ros-args", *ros_args],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("occupancy_grid_node: cannot start: ")]
    assert len(ours) == 1 and words in ours[0] and "/project/src" not in ours[0], done.stderr
