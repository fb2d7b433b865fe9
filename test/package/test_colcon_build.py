"""The package builds the way `colcon build` builds it on a ROS 2 system.

The ROS 2 build tooling comes from the same PyPI wheels as `make setup`; the build here is the
full one (messages, Python package, node executables, share/), not the messages-only one.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
pytestmark = pytest.mark.slow


def test_package_xml_is_format_3_and_an_interface_package():
    pkg = parse_package(ROOT / "package.xml")  # catkin_pkg validates it as colcon would
    pkg.validate()
    assert pkg.package_format == 3 and pkg.name == "pisr_ros"
    assert pkg.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in pkg.member_of_groups]
    assert {"rclpy", "sensor_msgs", "std_msgs"} <= {d.name for d in pkg.exec_depends + pkg.build_depends}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if shutil.which("colcon", path=str(VENV / "bin")) is None:
        pytest.fail("colcon is not installed in this environment: run `make setup`")
    work = tmp_path_factory.mktemp("colcon")
    src = work / "src" / "pisr_ros"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", "build", "install", "log", ".git", "out", "__pycache__"))
    # The copy's node module is a stand-in, so that running the installed wrapper checks the
    # wrapper (ros2 run's entry point) without starting a node: it says whether it was reached
    # through ros/entry.py (which sets malloc up first), as setup.py's console script does.
    (src / "pisr_ros" / "ros" / "panoptic_node.py").write_text(
        "import sys\n\n\ndef main(argv=None):\n"
        "    print('node main reached', 'pisr_ros.ros.entry' in sys.modules)\n    return 0\n")
    env = dict(os.environ, PATH=f"{VENV / 'bin'}:{os.environ['PATH']}", CMAKE_PREFIX_PATH=str(VENV), AMENT_PREFIX_PATH=str(VENV))
    proc = subprocess.run(
        ["colcon", "--log-level", "error", "build", "--event-handlers", "console_direct-", "--cmake-args", "-DBUILD_TESTING=OFF"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    logs = "\n".join(p.read_text() for p in (work / "log").rglob("stdout_stderr.log"))
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs
    return work / "install"


def _in_installed_env(install, command):
    script = f". {VENV}/bin/activate && . {install}/setup.sh && cd / && {command}"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")})


def test_installs_share_files_executables_and_the_python_package(installed):
    share = installed / "pisr_ros" / "share" / "pisr_ros"
    for d in ("launch", "config", "models", "msg"):
        if (ROOT / d).is_dir():  # git keeps no empty folders
            assert (share / d).is_dir(), d
    assert (share / "msg" / "PanopticInstanceArray.msg").is_file()
    assert (share / "package.xml").is_file()
    assert os.access(installed / "pisr_ros" / "lib" / "pisr_ros" / "panoptic_node", os.X_OK)
    assert os.access(installed / "pisr_ros" / "bin" / "pisr-ros", os.X_OK)


def test_installed_package_imports_messages_and_library_together(installed):
    proc = _in_installed_env(
        installed,
        "python -c 'import pisr_ros, pisr_ros.taxonomy as t; from pisr_ros.msg import PanopticInstanceArray;"
        " print(pisr_ros.__file__, t.NUM_CLASSES, PanopticInstanceArray().label_divisor)'",
    )
    assert proc.returncode == 0, proc.stderr
    path, num, divisor = proc.stdout.split()
    assert path.startswith(str(installed)) and num == "19" and divisor == "0"


def test_node_executable_and_cli_run_from_the_install(installed):
    node = _in_installed_env(installed, f"{installed}/pisr_ros/lib/pisr_ros/panoptic_node")
    assert node.returncode == 0 and node.stdout.strip() == "node main reached True", node.stderr
    cli = _in_installed_env(installed, f"{installed}/pisr_ros/bin/pisr-ros --help")
    assert cli.returncode == 0 and "synth" in cli.stdout, cli.stderr
