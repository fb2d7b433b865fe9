"""pisr_ros.params: the one parameter-table type both nodes declare from."""
import argparse
import array
import math
import subprocess
import sys

import pytest

from pisr_ros.params import Param, ParamTable, add_argument


def test_values_are_checked_by_type_range_choices_and_rule():
    ratio = Param("ratio", 0.5, "A ratio.", range=(0.0, 1.0))
    assert ratio.problem(0.25) is None and ratio.problem(1.0) is None
    assert "write 1.0" in ratio.problem(1)  # ROS refuses an integer for a double: say how to write it
    assert "[0.0, 1.0]" in ratio.problem(1.5)
    assert "finite" in ratio.problem(math.nan) and "finite" in Param("x", 0.0, "X.").problem(math.inf)
    assert "true or false" in Param("flag", False, "F.").problem(1)
    assert "an integer" in Param("n", 3, "N.").problem(True)
    mode = Param("mode", "a", "M.", choices=("a", "b"))
    assert mode.problem("b") is None and "one of a, b, got 'c'" in mode.problem("c")
    assert "must not be empty" in Param("frame", "base_link", "F.").problem("")
    odd = Param("k", 3, "K.", range=(1, 9), check=lambda v: None if v % 2 else f"k must be odd, got {v}")
    assert odd.problem(5) is None and odd.problem(4) == "k must be odd, got 4" and "[1, 9]" in odd.problem(11)
    size = Param("size", [0, 0], "S.")
    assert size.problem(array.array("q", [32, 64])) is None  # how rclpy hands integer arrays over
    assert "must be a list" in size.problem("32x64")


def test_a_table_looks_up_by_name_and_leaves_other_names_alone():
    table = ParamTable([Param("a", 1, "A.", range=(0, 2)), Param("b", "x", "B.")])
    assert table.names() == ("a", "b") and table.defaults() == {"a": 1, "b": "x"} and "a" in table
    assert table.problem("use_sim_time", True) is None  # rclpy's, not the table's
    assert table.problems({"a": 3, "b": "y"}) == ["a must be in [0, 2], got 3: A."]
    with pytest.raises(ValueError, match="twice"):
        ParamTable([Param("a", 1, "A."), Param("a", 2, "A.")])


def test_both_nodes_use_the_table_and_their_defaults_pass_their_own_checks():
    from pisr_ros.grid.config import PARAMETERS
    from pisr_ros.ros.panoptic_params import PARAMS

    for table in (PARAMS, PARAMETERS):
        assert isinstance(table, ParamTable) and all(isinstance(p, Param) for p in table)
        assert table.problems(table.defaults()) == []
    assert not PARAMETERS["use_odom"].runtime and PARAMETERS["camera.pitch"].runtime
    assert PARAMS["device"].problem("gpu") and PARAMS["input_size"].problem([100, 200])


def test_the_table_and_the_grid_settings_import_without_rclpy():
    probe = "import sys, pisr_ros.params, pisr_ros.grid.config; print('rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_a_command_line_flag_refuses_what_the_parameter_refuses(capsys):
    parser = argparse.ArgumentParser(prog="tool")
    add_argument(parser, Param("center_threshold", 0.1, "Minimum score.", range=(0.0, 1.0)))
    add_argument(parser, Param("use_odom", False, "Fuse in odom."))
    args = parser.parse_args(["--center-threshold", "0", "--use-odom", "true"])
    assert args.center_threshold == 0.0 and args.use_odom is True  # a falsy value is kept
    assert parser.parse_args([]).center_threshold is None  # not given
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--center-threshold", "2"])
    assert stop.value.code == 2 and "center_threshold must be in [0.0, 1.0]" in capsys.readouterr().err
    assert "Minimum score." in parser.format_help()
