"""panoptic_node's parameters, declared once: name, default, description, range, and whether
they may change while the node runs. config/panoptic.yaml holds the same names.

The post-processing parameters are not listed here: they are the model family's settings
(``settings_params``), declared once the model is loaded, with the values the model starts with
(the device's defaults, then those tuned into the model file) as their defaults.

The table type is ``pisr_ros.params`` (shared with occupancy_grid_node); its validation
(``problem``) runs both at start and on ``set_parameters``, so a value refused at run time is
refused at start for the same reason.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from pisr_ros import settings
from pisr_ros.inference.backends import BACKENDS, NOOP
from pisr_ros.inference.model_files import DEFAULT_MODEL
from pisr_ros.params import Param, ParamTable


def _device(value: str) -> str | None:
    if value == "cpu" or value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
        return None
    return f"device must be cpu, cuda or cuda:N, got {value!r}"


def _input_size(value: list) -> str | None:
    if len(value) != 2 or any(not isinstance(v, int) or isinstance(v, bool) for v in value):
        return f"input_size must be [H, W], got {value!r}"
    if list(value) != [0, 0] and any(v < 32 or v % 32 for v in value):
        return f"input_size must be multiples of 32 (at least 32) or [0, 0], got {list(value)}"
    return None


PARAMS = ParamTable((
    Param("model", DEFAULT_MODEL,
          "Checkpoint (.pt) or exported ONNX (.onnx); relative paths are looked up in the current "
          "directory, then in the package's models/."),
    Param("backend", "auto", "Inference backend; auto picks the fastest available; noop runs no network "
          "(benchmarks of the node's own overhead).", choices=("auto", *BACKENDS, NOOP)),
    Param("device", "cpu", "cpu, cuda or cuda:N.", check=_device),
    Param("input_size", [0, 0], "Network input [H, W] in pixels (multiples of 32); [0, 0] = the model's own.",
          check=_input_size),
    Param("threads", 0, "CPU threads for the network; 0 = all cores.", range=(0, 256)),
    Param("pipeline", True, "Run the network of a frame while a second thread post-processes and "
          "publishes the frame before: more frames/s where the network leaves cores idle, one frame "
          "more in flight."),
    Param("input_transport", "raw", "raw: <ns>/image_raw (Image); compressed: <ns>/image_raw/compressed.",
          choices=("raw", "compressed")),
    Param("reliability", "best_effort", "QoS reliability of the image subscription (best_effort matches "
          "camera drivers' sensor-data profile).", choices=("best_effort", "reliable")),
    Param("max_image_pixels", 16_777_216, "Frames with more pixels are refused and counted.",
          range=(1, 268_435_456)),
    Param("overlay_alpha", 0.5, "Class colour weight in panoptic/overlay.", range=(0.0, 1.0), runtime=True),
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", range=(0.1, 60.0)),
))


def settings_params(current) -> ParamTable:
    """The settings of a model family as parameters that may change while the node runs,
    defaulting to ``current`` (the settings the Predictor was built with)."""
    return ParamTable([dataclasses.replace(settings.as_param(item, "cpu"), default=getattr(current, item.name))
                       for item in settings.table(type(current))])


def problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name``, or None (also for names that are
    not ours: use_sim_time and the like)."""
    return PARAMS.problem(name, value)
