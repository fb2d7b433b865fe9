"""What launch/panoptic.launch.py needs, checked before it starts any node.

launch_ros only warns about a params file that does not exist (the node then runs on its
built-in defaults), and finds a missing executable only when it comes to start it, after the
nodes before it are running (and left without a parent when the launch then fails). The launch
file calls ``launch_problems`` first and stops with one line when it returns any.

Plain values in, plain strings out: no launch import, so this is tested where launch is absent.
"""
from __future__ import annotations

import os
from collections.abc import Callable

PACKAGE = "pisr_ros"
RVIZ = ("rviz2", "rviz2")


def is_true(value: str) -> bool:
    """A launch argument as launch's IfCondition reads it."""
    return value.strip().lower() in ("true", "1")


def installed_executable(package: str, executable: str) -> str | None:
    """Why ``executable`` of ``package`` cannot be started, or None when it can. Looked up as
    launch_ros looks it up: <the package's prefix in the ament index>/lib/<package>/<executable>."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        prefix = get_package_prefix(package)
    except PackageNotFoundError:
        return f"package {package!r} is not installed (not in the ament index of AMENT_PREFIX_PATH)"
    path = os.path.join(prefix, "lib", package, executable)
    if not os.access(path, os.X_OK) or not os.path.isfile(path):
        return f"{path} is missing or not executable"
    return None


def launch_problems(*, params_file: str, occupancy_grid: str, grid_params_file: str, rviz: str,
                    find_executable: Callable[[str, str], str | None] = installed_executable) -> list[str]:
    """Each thing the launch needs and lacks, as one sentence naming the argument and what to do.
    The arguments are the launch arguments' values as given (strings)."""
    problems = []
    files = [("params_file", params_file)] + ([("grid_params_file", grid_params_file)] if is_true(occupancy_grid) else [])
    for argument, path in files:
        if not os.path.isfile(path):
            problems.append(f"{argument}:={path}: no such file (give the path of a parameters YAML file)")
    nodes = [(PACKAGE, "panoptic_node", "")]
    if is_true(occupancy_grid):
        nodes.append((PACKAGE, "occupancy_grid_node", " (occupancy_grid:=true)"))
    if is_true(rviz):
        nodes.append((*RVIZ, " (rviz:=true)"))
    for package, executable, because in nodes:
        missing = find_executable(package, executable)
        if missing:
            fix = ("install rviz2 (apt: ros-$ROS_DISTRO-rviz2) or leave out rviz:=true" if package == RVIZ[0]
                   else "build and source the pisr_ros workspace")
            problems.append(f"{executable}{because} cannot start: {missing}; {fix}")
    return problems
