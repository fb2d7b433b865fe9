"""Parameter tables: each node's parameters declared once, with name, default, description,
range, choices, whether they may change while the node runs, and how a value is checked.

Both nodes declare their ROS parameters from a :class:`ParamTable` (``ros/parameters.py`` turns
an entry into rclpy's descriptor); a command-line tool can derive its flags from the same
entries (:func:`add_argument`). Nothing here imports rclpy, numpy or torch.

A value is checked by :meth:`Param.problem`, which returns the reason it is refused or None:
the same function runs at start and on ``set_parameters``, so a value refused while the node
runs is refused at start for the same reason. Types are strict as ROS's are: a double
parameter refuses ``40`` (a params file must say ``40.0``), and the reason says so.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    name: str
    default: Any  # its type is the parameter's type: bool, int, float, str or a list
    description: str
    range: tuple[float, float] | None = None  # inclusive, as ROS's ranges are
    choices: tuple[str, ...] | None = None
    runtime: bool = False  # may change while the node runs; the others need a restart
    #: A rule beyond type, range and choices: returns why a value is refused, or None.
    check: Callable[[Any], str | None] | None = None

    @property
    def type(self) -> type:
        return type(self.default)

    def help(self) -> str:
        """The description, with the choices when there are some (descriptors, --help)."""
        return self.description + (f" One of: {', '.join(self.choices)}." if self.choices else "")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this parameter, or None."""
        name, kind = self.name, self.type
        if kind is list:
            # rclpy hands integer arrays over as array.array('q').
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                return f"{name} must be a list like {self.default}, got {value!r}"
            value = list(value)
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            return f"{name} must be a floating-point number (write {float(value)!r}), got {value!r}"
        elif type(value) is not kind:
            what = {bool: "true or false", int: "an integer", float: "a floating-point number",
                    str: "a string"}.get(kind, kind.__name__)
            return f"{name} must be {what}, got {value!r}"
        if kind is float and not math.isfinite(value):
            return f"{name} must be a finite number, got {value!r}"
        if kind is str and not self.choices and not value:
            return f"{name} must not be empty: {self.description}"
        if self.choices and value not in self.choices:
            return f"{name} must be one of {', '.join(self.choices)}, got {value!r}"
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            return f"{name} must be in [{self.range[0]}, {self.range[1]}], got {value!r}: {self.description}"
        return self.check(value) if self.check is not None else None


class ParamTable:
    """A node's parameters in declaration order, looked up by name."""

    def __init__(self, params: tuple[Param, ...] | list[Param]):
        self._params = tuple(params)
        self._by_name = {p.name: p for p in self._params}
        if len(self._by_name) != len(self._params):
            raise ValueError("a parameter table names a parameter twice")

    def __iter__(self) -> Iterator[Param]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Param:
        return self._by_name[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self._params}

    def problem(self, name: str, value: Any) -> str | None:
        """Why ``value`` is refused for ``name``; None for names not in the table (use_sim_time
        and the like belong to rclpy)."""
        p = self._by_name.get(name)
        return p.problem(value) if p is not None else None

    def problems(self, values: Mapping[str, Any]) -> list[str]:
        return [reason for name, value in values.items() if (reason := self.problem(name, value))]


def add_argument(parser: argparse.ArgumentParser, param: Param, default: Any = None) -> None:
    """``--<name with dashes>`` for ``param`` (scalars only); the value is checked by the table's
    own rule, so a flag refuses what the parameter refuses. ``default`` None: not given."""
    if param.type is list:
        raise TypeError(f"{param.name}: list parameters have no flag form")

    def parse(text: str) -> Any:
        if param.type is bool:
            if text.lower() not in ("true", "false"):
                raise argparse.ArgumentTypeError(f"{param.name} must be true or false, got {text!r}")
            value = text.lower() == "true"
        else:
            try:
                value = param.type(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{param.name} must be {param.type.__name__}, got {text!r}") from None
        reason = param.problem(value)
        if reason:
            raise argparse.ArgumentTypeError(reason)
        return value

    parse.__name__ = param.type.__name__  # what argparse names in its own messages
    parser.add_argument("--" + param.name.replace("_", "-").replace(".", "-"), type=parse, default=default,
                        metavar=param.type.__name__.upper(), help=param.help())
