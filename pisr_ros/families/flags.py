"""Command-line flags for every family's post-processing settings, derived from their settings
dataclasses (``pisr_ros.settings``), so that `predict`, `replay-eval` and `tune-postprocess` offer
exactly the settings the node has as parameters, with the same ranges and descriptions.

A flag's default is "not given" (None): then the model's tuned value or the device's default
applies, and a value of 0 or false is forwarded like any other.
"""
from __future__ import annotations

import argparse
from typing import Any

from pisr_ros import settings
from pisr_ros.errors import UsageError
from pisr_ros.families import family_names, get_family
from pisr_ros.params import add_argument


def add_setting_flags(parser: argparse.ArgumentParser, title: str = "post-processing (default: the model's "
                      "tuned value, else the device's default)") -> None:
    """One ``--name`` flag per setting name across all families."""
    group = parser.add_argument_group(title)
    seen: dict[str, list[str]] = {}
    for name in family_names():
        for item in settings.table(get_family(name).settings_class):
            if item.name in seen:
                seen[item.name].append(name)
                continue
            seen[item.name] = [name]
            add_argument(group, settings.as_param(item))


def given_settings(args: argparse.Namespace, settings_class) -> dict[str, Any]:
    """The settings flags the user gave, for a model whose family has ``settings_class``;
    UsageError when one of them belongs to another family only."""
    own = {item.name for item in settings.table(settings_class)}
    every = {item.name for name in family_names() for item in settings.table(get_family(name).settings_class)}
    given = {name: getattr(args, name) for name in every if getattr(args, name, None) is not None}
    foreign = sorted(set(given) - own)
    if foreign:
        flags = ", ".join("--" + n.replace("_", "-") for n in foreign)
        raise UsageError(f"{flags}: not a setting of this model's family; its settings are "
                         + ", ".join("--" + n.replace("_", "-") for n in sorted(own)))
    return {name: value for name, value in given.items() if name in own}
