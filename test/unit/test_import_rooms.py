"""Which room may import which (docs: design.md, "Rooms"), read from the source: every import
statement of pisr_ros, at module level or inside a function, since a lazy import is a
dependency all the same."""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pisr_ros"


@functools.cache
def _imports() -> list[tuple[str, int, str]]:
    """(file relative to the repository, line, imported module) of every pisr_ros import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), rel)):
            if isinstance(node, ast.Import):
                found += [(rel, node.lineno, a.name) for a in node.names if a.name.startswith("pisr_ros")]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("pisr_ros"):
                # "from pisr_ros.x import y" may import the module pisr_ros.x.y
                found.append((rel, node.lineno, node.module))
                found += [(rel, node.lineno, f"{node.module}.{a.name}") for a in node.names
                          if (PACKAGE.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").is_file()
                          or (PACKAGE.parent / f"{node.module}.{a.name}".replace(".", "/")).is_dir()]
    return found


def _violations(source_room: str, target: str) -> list[str]:
    return sorted({f"{f}:{line} imports {mod}" for f, line, mod in _imports()
                   if f.startswith(f"pisr_ros/{source_room}/") and (mod == target or mod.startswith(target + "."))})


def test_the_scan_sees_imports():
    # The rules below pass vacuously if the scan finds nothing: it must see these.
    assert any(f == "pisr_ros/ros/replay_live.py" and mod == "pisr_ros.evaluation.bags" for f, _, mod in _imports())
    assert any(f.startswith("pisr_ros/data/synth/") and mod == "pisr_ros.data.synth.canvas" for f, _, mod in _imports())


def test_ros_is_imported_by_no_library_room():
    # ros/ (rclpy, the nodes) sits on top of the library rooms; the other way round is a circle.
    for room in ("data", "models", "postprocess", "grid", "families"):
        assert _violations(room, "pisr_ros.ros") == [], room


def test_evaluation_imports_neither_ros_nor_inference():
    assert _violations("evaluation", "pisr_ros.ros") + _violations("evaluation", "pisr_ros.inference") == []


def test_inference_does_not_import_data():
    assert _violations("inference", "pisr_ros.data") == []


def test_every_imported_module_exists():
    # A lazy import of a module that was moved or removed (data/synth.py and evaluation/replay.py
    # became packages, inference/torch_predict.py went) fails only when its function runs.
    for f, line, mod in _imports():
        if mod == "pisr_ros.msg" or mod.startswith("pisr_ros.msg."):
            continue  # the ROS 2 message classes, generated into install/ by the CMake build
        path = PACKAGE.parent / mod.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), f"{f}:{line} imports {mod}"


def test_command_line_modules_are_not_imported_as_libraries():
    offenders = sorted(f"{f}:{line} imports {mod}" for f, line, mod in _imports()
                       if mod.endswith("_cli") and f != "pisr_ros/cli.py")
    assert offenders == []
