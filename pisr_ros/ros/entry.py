"""The nodes' entry points: ``panoptic_node`` and ``occupancy_grid_node``, called by setup.py's
console scripts and by the ``ros2 run`` wrappers CMakeLists.txt writes (the same functions), and
``python -m pisr_ros.ros.entry NODE [ROS arguments]`` for tools that start a node as its own
process (``ros/node_process.py``).

glibc's malloc is set up (``pisr_ros.allocator``) before a node's module is imported: numpy,
rclpy and ONNX Runtime start threads as they load, and a thread that already has a malloc arena
of its own keeps it. Nothing here but the standard library and the allocator is imported first.
"""
from __future__ import annotations

import sys

from pisr_ros.allocator import keep_freed_memory

NODES = ("panoptic_node", "occupancy_grid_node")


def panoptic_node(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    from pisr_ros.ros.panoptic_node import main

    return main(argv)


def occupancy_grid_node(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    from pisr_ros.ros.occupancy_grid_node import main

    return main(argv)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in NODES:
        print(f"usage: python -m pisr_ros.ros.entry {{{','.join(NODES)}}} [--ros-args ...]", file=sys.stderr)
        return 2
    node = sys.argv.pop(1)  # the node's own argument parsing sees what it would as a console script
    return panoptic_node() if node == "panoptic_node" else occupancy_grid_node()


if __name__ == "__main__":
    sys.exit(main())
