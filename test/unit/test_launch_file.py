"""launch/panoptic.launch.py, config/panoptic.rviz and the parameter files they name.

launch and launch_ros cannot be installed on machines without a ROS installation, so the launch
file is read as a syntax tree (ast, nothing imported) and checked against the package: every
argument documented, every executable installed, every parameter known to the node's YAML, every
file it names present, and the requirement check (pisr_ros.ros.launch_checks) placed before any
action that starts a node. Each check returns a list of problems, and a mutated copy of the launch
file shows that each check can fail. The requirement check itself is tested on its own. Where launch_ros is importable (a ROS 2 machine), the launch
description is also built for real.
"""
import ast
import importlib.util
import inspect
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from pisr_ros.ros.launch_checks import installed_executable, launch_problems

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "panoptic.launch.py"
RVIZ_FILE = ROOT / "config" / "panoptic.rviz"
# Every ROS node has these without declaring them (rclpy and rclcpp declare use_sim_time).
IMPLICIT_PARAMETERS = {"use_sim_time"}
# Packages the launch file may start without package.xml depending on them: rviz2 runs only with
# rviz:=true, and a robot without a display should not have to install a GUI.
OPTIONAL_PACKAGES = {"rviz2"}
# What config/panoptic.rviz must show, and in which frame (the grid is in base_link, REP 105).
RVIZ_TOPICS = {"/front/image_raw", "/front/panoptic/overlay", "/front/panoptic/grid"}
RVIZ_FIXED_FRAME = "base_link"


# ---- reading the package -------------------------------------------------------------------

def package_name(root):
    return ET.parse(root / "package.xml").getroot().findtext("name")


def package_depends(root):
    tags = ("depend", "exec_depend", "run_depend")
    return {e.text for e in ET.parse(root / "package.xml").getroot() if e.tag in tags}


def cmake_list(root, variable):
    """The items of `foreach(<variable> a b c)` in CMakeLists.txt: what it installs."""
    match = re.search(rf"foreach\({variable}\s+([^)]*)\)", (root / "CMakeLists.txt").read_text())
    assert match, f"CMakeLists.txt has no foreach({variable} ...): the install rules changed"
    return set(match.group(1).split())


def ros_parameter_names(path):
    """Parameter names of a `/**: ros__parameters:` file (nested maps are dotted names)."""
    def flatten(params, prefix=""):
        for key, value in params.items():
            if isinstance(value, dict):
                yield from flatten(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"
    return set(flatten(yaml.safe_load(path.read_text())["/**"]["ros__parameters"]))


# ---- reading the launch file ---------------------------------------------------------------

def _name(func):
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _keyword(call, name):
    return next((k.value for k in call.keywords if k.arg == name), None)


class LaunchFile:
    def __init__(self, path):
        self.tree = ast.parse(path.read_text())
        self.docstring = ast.get_docstring(self.tree) or ""
        self.calls = [n for n in ast.walk(self.tree) if isinstance(n, ast.Call)]
        self.functions = {n.name: n for n in self.tree.body if isinstance(n, ast.FunctionDef)}
        # Every `name = value` anywhere in the file; names are not reused within it.
        self.assigned = {t.id: n.value for n in ast.walk(self.tree) if isinstance(n, ast.Assign)
                         for t in n.targets if isinstance(t, ast.Name)}

    def constant(self, node):
        """The value of a literal, or of a name bound to one; None if it is computed."""
        if isinstance(node, ast.Name) and node.id in self.assigned:
            node = self.assigned[node.id]
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError):
            return None

    def calls_to(self, name):
        return [c for c in self.calls if _name(c.func) == name]

    def arguments(self):
        """{name: default expression} of each DeclareLaunchArgument."""
        declared = {}
        for call in self.calls_to("DeclareLaunchArgument"):
            name = self.constant(call.args[0] if call.args else _keyword(call, "name"))
            declared[name] = _keyword(call, "default_value")
        return declared

    def file_path(self, call, installed_dirs):
        """'config/x.yaml' for a call such as _share('config', 'x.yaml') or
        os.path.join(share, 'config', 'x.yaml'): its string arguments from an installed dir on."""
        parts = [self.constant(a) for a in call.args]
        parts = [p for p in parts if isinstance(p, str)]
        starts = [i for i, p in enumerate(parts) if p in installed_dirs]
        return "/".join(parts[starts[0]:]) if starts and len(parts) > starts[0] + 1 else None

    def nodes(self):
        return self.calls_to("Node")

    def parameter_names(self, node):
        """Names of the parameters a Node call sets itself (not through a file)."""
        names = set()

        def dict_keys(d, prefix=""):
            for key, value in zip(d.keys, d.values):
                key = self.constant(key)
                if isinstance(value, ast.Dict):
                    dict_keys(value, f"{prefix}{key}.")
                else:
                    names.add(f"{prefix}{key}")

        def visit(element):
            if isinstance(element, ast.Name) and element.id in self.assigned:
                visit(self.assigned[element.id])
            elif isinstance(element, ast.Dict):
                dict_keys(element)
            elif isinstance(element, ast.Call) and _name(element.func) in self.functions:
                # A helper of this file that builds parameters: the keys of the dicts it writes.
                names.update(k.arg for k in element.keywords)
                for d in ast.walk(self.functions[_name(element.func)]):
                    if isinstance(d, ast.Dict):
                        dict_keys(d)

        parameters = _keyword(node, "parameters")
        for element in getattr(parameters, "elts", []):
            visit(element)
        return names

    def parameter_files(self, node, installed_dirs):
        """The package files a Node gets as parameter files: directly, or as the default of the
        launch argument that names them (LaunchConfiguration('params_file'))."""
        arguments = self.arguments()
        files = []
        for element in getattr(_keyword(node, "parameters"), "elts", []):
            if isinstance(element, ast.Call) and _name(element.func) == "LaunchConfiguration":
                element = arguments.get(self.constant(element.args[0]))
            if isinstance(element, ast.Call) and self.file_path(element, installed_dirs):
                files.append(self.file_path(element, installed_dirs))
        return files


# ---- the checks: each returns a list of problems -------------------------------------------

def undocumented_arguments(launch):
    declared = set(launch.arguments())
    documented = set(re.findall(r"^\s+(\w+):=", launch.docstring, re.MULTILINE))
    mentioned = set(re.findall(r"\b(\w+):=", launch.docstring))
    return ([f"argument {a!r} is not in the docstring's argument list" for a in declared - documented]
            + [f"docstring names {a}:= but no such argument is declared" for a in mentioned - declared])


def executable_problems(launch, root):
    ours, problems = package_name(root), []
    installed = cmake_list(root, "node")
    for node in launch.nodes():
        package = launch.constant(_keyword(node, "package"))
        executable = launch.constant(_keyword(node, "executable"))
        if package != ours:
            if package not in package_depends(root) | OPTIONAL_PACKAGES:
                problems.append(f"{package}/{executable}: package.xml does not depend on {package!r}")
        elif executable not in installed:
            problems.append(f"{executable!r} is not in CMakeLists.txt's foreach(node ...) list")
        elif not (root / "pisr_ros" / "ros" / f"{executable}.py").is_file():
            problems.append(f"{executable!r}: pisr_ros/ros/{executable}.py does not exist, "
                            "so CMakeLists.txt does not install it")
    return problems


def parameter_problems(launch, root):
    ours, problems = package_name(root), []
    installed_dirs = cmake_list(root, "dir")
    for node in launch.nodes():
        executable = launch.constant(_keyword(node, "executable"))
        if launch.constant(_keyword(node, "package")) != ours:
            continue  # not our parameters to check
        files = launch.parameter_files(node, installed_dirs)
        known = set(IMPLICIT_PARAMETERS)
        for relative in files:
            if (root / relative).is_file():
                known |= ros_parameter_names(root / relative)
            else:
                problems.append(f"{executable}: its parameter file {relative} does not exist")
        for name in sorted(launch.parameter_names(node) - known):
            problems.append(f"{executable}: parameter {name!r} is in none of {files or 'its (no) files'}")
    return problems


def file_problems(launch, root):
    installed_dirs = cmake_list(root, "dir")
    referenced = {launch.file_path(c, installed_dirs) for c in launch.calls} - {None}
    problems = [f"{path} does not exist in the repository" for path in sorted(referenced)
                if not (root / path).is_file()]
    # A .yaml/.rviz named any other way (a bare relative path, an uninstalled dir) is not found
    # once installed: each must be the last part of one of the references above.
    for node in ast.walk(launch.tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.endswith((".yaml", ".rviz")) \
                and not any(path.endswith("/" + node.value) for path in referenced):
            problems.append(f"{node.value!r} is not named from an installed dir {sorted(installed_dirs)}")
    return problems


def package_problems(launch, root):
    ours = package_name(root)
    named = [launch.constant(c.args[0]) for c in launch.calls_to("get_package_share_directory")]
    named += [launch.constant(_keyword(n, "package")) for n in launch.nodes()
              if launch.constant(_keyword(n, "executable")) in cmake_list(root, "node")]
    return [f"names package {p!r}, package.xml says {ours!r}" for p in named if p != ours]


def _checked_arguments():
    return [p for p in inspect.signature(launch_problems).parameters if p != "find_executable"]


def requirement_problems(launch, root):
    """The launch checks what it needs (pisr_ros.ros.launch_checks) before any action that starts
    a node, and hands the check every launch argument it reads."""
    descriptions = launch.calls_to("LaunchDescription")
    if len(descriptions) != 1 or not descriptions[0].args or not isinstance(descriptions[0].args[0], ast.List):
        return ["no LaunchDescription([...]) to read the order of actions from"]
    actions = descriptions[0].args[0].elts
    check = [i for i, a in enumerate(actions) if isinstance(a, ast.Call) and _name(a.func) == "OpaqueFunction"
             and getattr(_keyword(a, "function"), "id", None) == "_check_requirements"]
    if not check:
        return ["the launch does not check its requirements (OpaqueFunction(function=_check_requirements))"]
    problems = []
    for action in actions[:check[0]]:
        if isinstance(action, ast.Call) and _name(action.func) != "DeclareLaunchArgument":
            problems.append(f"{ast.unparse(action)[:60]} starts before the requirements are checked")
    function = launch.functions.get("_check_requirements")
    passed = {n.value for n in ast.walk(function) if isinstance(n, ast.Constant) and isinstance(n.value, str)} \
        if function else set()
    for name in _checked_arguments():
        if name not in passed:
            problems.append(f"_check_requirements does not pass {name!r} to launch_problems")
        if name not in launch.arguments():
            problems.append(f"launch_problems needs {name!r}, which the launch file does not declare")
    return problems


CHECKS = {
    "arguments": lambda launch, root: undocumented_arguments(launch),
    "executables": executable_problems,
    "parameters": parameter_problems,
    "files": file_problems,
    "package": package_problems,
    "requirements": requirement_problems,
}


# ---- (a) the launch file, read without launch ----------------------------------------------

@pytest.mark.parametrize("check", CHECKS)
def test_launch_file(check):
    assert CHECKS[check](LaunchFile(LAUNCH_FILE), ROOT) == []


def test_launch_file_declares_the_documented_interface():
    # The arguments the issue promises users, and the nodes it starts.
    launch = LaunchFile(LAUNCH_FILE)
    assert set(launch.arguments()) == {"camera", "model", "backend", "params_file", "occupancy_grid",
                                       "grid_params_file", "rviz", "use_sim_time"}
    assert launch.constant(launch.arguments()["camera"]) == "/front"
    executables = {launch.constant(_keyword(n, "executable")) for n in launch.nodes()}
    assert executables == {"panoptic_node", "occupancy_grid_node", "rviz2"}
    assert "ros2 launch pisr_ros panoptic.launch.py camera:=/front" in launch.docstring


MUTATIONS = [  # (check, text in the launch file, replacement, expected in a problem)
    ("parameters", '"backend": LaunchConfiguration', '"backnd": LaunchConfiguration', "'backnd'"),
    ("parameters", "_optional_overrides(context),", '_optional_overrides(context), {"overlay_alhpa": 0.3},',
     "'overlay_alhpa'"),
    ("parameters", '_share("config", "panoptic.yaml")', '_share("config", "panoptc.yaml")',
     "config/panoptc.yaml"),
    ("arguments", 'DeclareLaunchArgument("rviz",', 'DeclareLaunchArgument("rviz2",', "'rviz2'"),
    ("arguments", 'DeclareLaunchArgument("rviz",', 'DeclareLaunchArgument("rviz2",', "rviz:="),
    ("executables", 'executable="occupancy_grid_node"', 'executable="occupancy_node"', "'occupancy_node'"),
    ("executables", 'package="rviz2"', 'package="rqt_image_view"', "rqt_image_view"),
    ("files", '_share("config", "panoptic.rviz")', '_share("config", "panoptic_view.rviz")',
     "config/panoptic_view.rviz"),
    ("files", '_share("config", "panoptic.rviz")', '"panoptic.rviz"', "'panoptic.rviz'"),
    ("package", 'PACKAGE = "pisr_ros"', 'PACKAGE = "pisr"', "'pisr'"),
    ("requirements", "OpaqueFunction(function=_check_requirements),\n        OpaqueFunction(function=_panoptic_node),",
     "OpaqueFunction(function=_panoptic_node),\n        OpaqueFunction(function=_check_requirements),",
     "OpaqueFunction(function=_panoptic_node) starts before the requirements are checked"),
    ("requirements", '"grid_params_file", "rviz")', '"grid_params_file")', "does not pass 'rviz'"),
    ("requirements", "OpaqueFunction(function=_check_requirements),", "", "does not check its requirements"),
]


@pytest.mark.parametrize("check,old,new,expected", MUTATIONS)
def test_checks_catch_a_broken_launch_file(tmp_path, check, old, new, expected):
    text = LAUNCH_FILE.read_text()
    assert old in text, "the mutation no longer applies: update it to the launch file"
    broken = tmp_path / "panoptic.launch.py"
    broken.write_text(text.replace(old, new, 1))
    problems = CHECKS[check](LaunchFile(broken), ROOT)
    assert any(expected in p for p in problems), problems
    # ...and the same problem is absent from the real file, so the mutation is what found it.
    assert not any(expected in p for p in CHECKS[check](LaunchFile(LAUNCH_FILE), ROOT))


# ---- parameter files -----------------------------------------------------------------------

def _parameter_files():
    launch, installed_dirs = LaunchFile(LAUNCH_FILE), cmake_list(ROOT, "dir")
    files = {f for node in launch.nodes() for f in launch.parameter_files(node, installed_dirs)}
    return sorted(files | {"config/panoptic.yaml"})


@pytest.mark.parametrize("relative", _parameter_files())
def test_parameter_file_layout(relative):
    # `/**` (any node name, any namespace) because the launch file puts the nodes in the camera's
    # namespace, which the file cannot know.
    data = yaml.safe_load((ROOT / relative).read_text())
    assert list(data) == ["/**"], f"{relative}: top level must be '/**' alone"
    assert list(data["/**"]) == ["ros__parameters"]
    assert data["/**"]["ros__parameters"], f"{relative}: no parameters"


# ---- what the launch checks before it starts a node (pisr_ros.ros.launch_checks) ------------

def _installed_everything(package, executable):
    return None


def _without(*absent):
    return lambda package, executable: f"package {package!r} is not installed" if package in absent else None


def _arguments(tmp_path, **given):
    params = tmp_path / "panoptic.yaml"
    grid = tmp_path / "occupancy_grid.yaml"
    params.write_text("/**:\n  ros__parameters: {}\n")
    grid.write_text("/**:\n  ros__parameters: {}\n")
    return dict(dict(params_file=str(params), occupancy_grid="false", grid_params_file=str(grid), rviz="false"),
                **given)


def test_a_complete_launch_has_no_problems(tmp_path):
    assert launch_problems(**_arguments(tmp_path), find_executable=_installed_everything) == []
    assert launch_problems(**_arguments(tmp_path, occupancy_grid="true", rviz="true"),
                           find_executable=_installed_everything) == []


def test_rviz_without_rviz2_is_named(tmp_path):
    assert launch_problems(**_arguments(tmp_path), find_executable=_without("rviz2")) == []  # not asked for
    (problem,) = launch_problems(**_arguments(tmp_path, rviz="true"), find_executable=_without("rviz2"))
    assert problem.startswith("rviz2 (rviz:=true) cannot start: package 'rviz2' is not installed")
    assert "leave out rviz:=true" in problem and "\n" not in problem


def test_a_params_file_that_does_not_exist_is_named(tmp_path):
    missing = str(tmp_path / "my_panoptic.yaml")
    (problem,) = launch_problems(**_arguments(tmp_path, params_file=missing), find_executable=_installed_everything)
    assert problem.startswith(f"params_file:={missing}: no such file")
    # The grid's file matters only when the grid node starts.
    args = _arguments(tmp_path, grid_params_file=missing)
    assert launch_problems(**args, find_executable=_installed_everything) == []
    args["occupancy_grid"] = "true"
    assert launch_problems(**args, find_executable=_installed_everything) == [
        f"grid_params_file:={missing}: no such file (give the path of a parameters YAML file)"]
    # A folder is not a parameters file either.
    assert launch_problems(**_arguments(tmp_path, params_file=str(tmp_path)), find_executable=_installed_everything)


def test_every_problem_is_reported_at_once(tmp_path):
    problems = launch_problems(**_arguments(tmp_path, params_file="/nonexistent.yaml", rviz="true",
                                            occupancy_grid="true"),
                               find_executable=_without("rviz2", "pisr_ros"))
    assert [p.split(":")[0].split(" ")[0] for p in problems] == [
        "params_file", "panoptic_node", "occupancy_grid_node", "rviz2"]


def test_executables_are_found_in_the_ament_index_as_launch_ros_finds_them(tmp_path, monkeypatch):
    """A real ament index (a prefix with share/ament_index/.../packages/<name> and
    lib/<name>/<executable>), read by ament_index_python."""
    prefix = tmp_path / "prefix"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "viewer").write_text("")
    (prefix / "lib" / "viewer").mkdir(parents=True)
    tool = prefix / "lib" / "viewer" / "viewer"
    tool.write_text("#!/bin/sh\n")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert "not executable" in installed_executable("viewer", "viewer")
    tool.chmod(0o755)
    assert installed_executable("viewer", "viewer") is None
    assert "missing" in installed_executable("viewer", "other")
    assert installed_executable("rviz2", "rviz2") == (
        "package 'rviz2' is not installed (not in the ament index of AMENT_PREFIX_PATH)")


# ---- (b) the launch description, built where launch_ros exists -----------------------------

def test_launch_description_builds(monkeypatch):
    pytest.importorskip("launch_ros")
    import ament_index_python.packages
    from launch import LaunchContext
    from launch.actions import OpaqueFunction
    from launch.utilities import perform_substitutions

    # The source tree stands in for share/pisr_ros (installed or not, this tests this checkout).
    monkeypatch.setattr(ament_index_python.packages, "get_package_share_directory",
                        lambda name: str(ROOT))
    spec = importlib.util.spec_from_file_location("panoptic_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()

    context = LaunchContext()
    arguments = {a.name: perform_substitutions(context, a.default_value)
                 for a in description.get_launch_arguments()}
    assert set(arguments) == set(LaunchFile(LAUNCH_FILE).arguments())
    assert arguments["camera"] == "/front"
    assert arguments["model"] == arguments["backend"] == ""
    assert arguments["occupancy_grid"] == arguments["rviz"] == arguments["use_sim_time"] == "false"
    assert arguments["params_file"] == str(ROOT / "config" / "panoptic.yaml")
    assert arguments["grid_params_file"] == str(ROOT / "config" / "occupancy_grid.yaml")

    # Empty model:= / backend:= leave the params file's values alone; given ones override them.
    context.launch_configurations.update(arguments)
    assert module._optional_overrides(context) == {}
    context.launch_configurations.update(model="m.onnx", backend="onnxruntime")
    assert module._optional_overrides(context) == {"model": "m.onnx", "backend": "onnxruntime"}

    # In order: the requirement check (the ast check above holds it before every node), then the node.
    check, panoptic = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    (node,) = panoptic.execute(context)
    assert (node.node_package, node.node_executable) == ("pisr_ros", "panoptic_node")
    # The check refuses in one line what is missing.
    context.launch_configurations.update(params_file=str(ROOT / "config" / "nonexistent.yaml"))
    with pytest.raises(RuntimeError, match="params_file:=.*nonexistent.yaml: no such file") as refused:
        check.execute(context)
    assert "\n" not in str(refused.value)


# ---- (c) the RViz view ---------------------------------------------------------------------

def _displays(displays):
    for display in displays:
        yield display
        yield from _displays(display.get("Displays", []))  # inside rviz_common/Group


def test_rviz_config_shows_image_overlay_and_grid():
    config = yaml.safe_load(RVIZ_FILE.read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == RVIZ_FIXED_FRAME
    shown = {(d["Class"], d["Topic"]["Value"]) for d in _displays(manager["Displays"]) if "Topic" in d}
    assert shown == {
        ("rviz_default_plugins/Image", "/front/image_raw"),
        ("rviz_default_plugins/Image", "/front/panoptic/overlay"),
        ("rviz_default_plugins/Map", "/front/panoptic/grid"),
    }
    # Best Effort + Volatile subscriptions match every publisher's QoS (see the file's header).
    for display in _displays(manager["Displays"]):
        if "Topic" in display:
            assert display["Topic"]["Reliability Policy"] == "Best Effort"
            assert display["Topic"]["Durability Policy"] == "Volatile"


def test_launch_file_remaps_exactly_the_rviz_topics():
    # The launch file remaps RViz's /front topics to camera:=; a topic added to the .rviz file but
    # not to the launch file would keep showing /front.
    launch = LaunchFile(LAUNCH_FILE)
    camera, topics = launch.constant(ast.Name("RVIZ_CAMERA")), launch.constant(ast.Name("RVIZ_TOPICS"))
    assert {f"{camera}/{topic}" for topic in topics} == RVIZ_TOPICS
