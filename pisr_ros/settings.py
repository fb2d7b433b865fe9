"""Settings declared once: a frozen dataclass whose fields carry their description, range and
per-device defaults, from which node parameters, command-line flags and YAML comments derive.

    @dataclass(frozen=True)
    class MySettings:
        threshold: float = setting(0.5, "Minimum score.", range=(0.0, 1.0))
        kernel: int = setting(7, "Window in cells (odd).", range=(1, 31), odd=True, cpu=3)

    table(MySettings)                       # (SettingInfo, ...) in field order
    for_device(MySettings, "cpu")           # MySettings(threshold=0.5, kernel=3)
    resolve(MySettings, "cpu", stored={"cpu": {"threshold": 0.3}}, kernel=5)

The field's own default is the reference value (a GPU's, the paper's); ``cpu=`` names where a
CPU differs. Values stored in a model (``stored``: {device type: {name: value}}) come between the
device's defaults and what a user passes. Only torch-free, rclpy-free code here: the node, the
command line and the post-processing all read it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

DEVICE_TYPES = ("cpu", "cuda")
_META = "pisr_ros.setting"


@dataclass(frozen=True)
class SettingInfo:
    name: str
    default: Any  # the reference value (the field's own default)
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    odd: bool = False
    per_device: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def type(self) -> type:
        return type(self.default)

    def default_for(self, device: str) -> Any:
        return self.per_device.get(device_type(device), self.default)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable here, or None."""
        kind = self.type
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            return f"{self.name} must be a {kind.__name__}, got {value!r}"
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
        if self.range and not self.range[0] <= value <= self.range[1]:
            return f"{self.name} must be in [{self.range[0]}, {self.range[1]}], got {value!r}"
        if self.odd and value % 2 == 0:
            return f"{self.name} must be odd, got {value}"
        return None

    def help(self, device: str | None = None) -> str:
        """The description with the default(s), for --help and parameter descriptors."""
        if device is not None:
            return f"{self.description} (default on {device_type(device)}: {self.default_for(device)})"
        others = "".join(f", {d}: {v}" for d, v in self.per_device.items())
        return f"{self.description} (default: {self.default}{others})"


def setting(default: Any, description: str, *, range: tuple[float, float] | None = None,
            choices: tuple[str, ...] | None = None, odd: bool = False, **per_device: Any):
    """A dataclass field that is a setting; ``per_device`` (``cpu=...``) where a device differs."""
    unknown = set(per_device) - set(DEVICE_TYPES)
    if unknown:
        raise TypeError(f"unknown device type(s) {sorted(unknown)}; known: {DEVICE_TYPES}")
    meta = {"description": description, "range": range, "choices": choices, "odd": odd,
            "per_device": dict(per_device)}
    return dataclasses.field(default=default, metadata={_META: meta})


def table(cls) -> tuple[SettingInfo, ...]:
    """The settings of a settings dataclass, in field order (plain fields are not settings)."""
    return tuple(SettingInfo(name=f.name, default=f.default, **f.metadata[_META])
                 for f in dataclasses.fields(cls) if _META in f.metadata)


def info(cls, name: str) -> SettingInfo:
    for item in table(cls):
        if item.name == name:
            return item
    raise KeyError(name)


def device_type(device) -> str:
    text = str(getattr(device, "type", device))
    return "cuda" if text.startswith("cuda") else text


def for_device(cls, device):
    """``cls`` with every setting at its default for ``device``."""
    return cls(**{s.name: s.default_for(device) for s in table(cls)})


def problems(cls, values: Mapping[str, Any]) -> list[str]:
    known = {s.name: s for s in table(cls)}
    out = [f"unknown setting {name!r}; known: {', '.join(known)}" for name in values if name not in known]
    out += [p for name, v in values.items() if name in known and (p := known[name].problem(v))]
    return out


def resolve(cls, device, stored: Mapping[str, Mapping[str, Any]] | None = None, **overrides):
    """Settings for ``device``: its defaults, then what the model stored for this device type,
    then ``overrides`` (values the user gave; None means not given). Raises ValueError naming
    every value that is refused."""
    stored_here = dict((stored or {}).get(device_type(device), {}))
    given = {k: v for k, v in overrides.items() if v is not None}
    for source, values in (("stored in the model", stored_here), ("given", given)):
        found = problems(cls, values)
        if found:
            raise ValueError(f"settings {source}: " + "; ".join(found))
    base = for_device(cls, device)
    kinds = {s.name: s.type for s in table(cls)}
    merged = {k: kinds[k](v) for k, v in {**stored_here, **given}.items()}
    return dataclasses.replace(base, **merged)


def check(settings) -> None:
    """Raise ValueError naming every setting of ``settings`` its declaration refuses (for a
    settings dataclass's ``__post_init__``: a refused value never makes an instance)."""
    found = problems(type(settings), values(settings))
    if found:
        raise ValueError("; ".join(found))


def values(settings) -> dict[str, Any]:
    """The setting fields of a settings instance as a plain dict."""
    return {s.name: getattr(settings, s.name) for s in table(type(settings))}


def as_param(item: SettingInfo, device=None, *, runtime: bool = True):
    """``item`` as a node parameter / command-line flag entry (``pisr_ros.params.Param``):
    defaulting to its value on ``device``, or, without one, described with every device's
    default (for a flag whose default is "not given")."""
    from pisr_ros.params import Param

    def odd(value):
        return f"{item.name} must be odd, got {value}" if item.odd and value % 2 == 0 else None

    default = item.default_for(device) if device is not None else item.default
    description = item.description if device is not None else item.help()
    return Param(item.name, default, description, range=item.range, choices=item.choices, runtime=runtime,
                 check=odd if item.odd else None)
