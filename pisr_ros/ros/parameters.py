"""A parameter table (``pisr_ros.params``) as ROS parameters: descriptors and declaring them."""
from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.node import Node

from pisr_ros.params import Param, ParamTable
from pisr_ros.ros.node_main import StartError


def descriptor(param: Param) -> ParameterDescriptor:
    """What ``ros2 param describe`` shows: the description (with the choices), the range, and
    read-only for the parameters that need a restart."""
    d = ParameterDescriptor(name=param.name, description=param.help(), read_only=not param.runtime)
    if param.range is not None and param.type is float:
        d.floating_point_range = [FloatingPointRange(from_value=float(param.range[0]),
                                                     to_value=float(param.range[1]), step=0.0)]
    elif param.range is not None and param.type is int:
        d.integer_range = [IntegerRange(from_value=int(param.range[0]), to_value=int(param.range[1]), step=1)]
    if param.choices:
        d.additional_constraints = "one of: " + ", ".join(param.choices)
    return d


def declare(node: Node, table: ParamTable) -> dict[str, Any]:
    """Declare every parameter of ``table`` on ``node`` and return their values (lists as lists).
    Raises StartError naming every value that is refused: by rclpy (a wrong type, outside the
    range) or by the table's own rules."""
    try:
        for p in table:
            node.declare_parameter(p.name, p.default, descriptor(p))
    except ParameterException as exc:
        # A params file or -p with a wrong type or a value outside the declared range.
        raise StartError(f"invalid parameter: {exc}") from exc
    values = {}
    for p in table:
        value = node.get_parameter(p.name).value
        values[p.name] = list(value) if p.type is list and value is not None else value
    problems = table.problems(values)
    if problems:
        raise StartError("invalid parameters: " + "; ".join(problems))
    return values
