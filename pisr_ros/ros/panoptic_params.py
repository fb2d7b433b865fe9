"""panoptic_node's parameters, declared once: name, default, description, range, and whether
they may change while the node runs. config/panoptic.yaml holds the same names.

Validation is one function (``problem``) used both at start and on ``set_parameters``, so a
value refused at run time is refused at start for the same reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from pisr_ros.inference.backends import BACKENDS, NOOP


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    runtime: bool = False  # may change while running; the others need a restart

    def descriptor(self) -> ParameterDescriptor:
        text = self.description + (f" One of: {', '.join(self.choices)}." if self.choices else "")
        d = ParameterDescriptor(name=self.name, description=text, read_only=not self.runtime)
        if self.range is not None and isinstance(self.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(self.range[0]), to_value=float(self.range[1]))]
        elif self.range is not None and isinstance(self.default, int):
            d.integer_range = [IntegerRange(from_value=int(self.range[0]), to_value=int(self.range[1]))]
        return d


PARAMS: tuple[Param, ...] = (
    Param("model", "pd_light_pisr_residual_synth.pt",
          "Checkpoint (.pt) or exported ONNX (.onnx); relative paths are looked up in the current "
          "directory, then in the package's models/."),
    Param("backend", "auto", "Inference backend; auto picks the fastest available; noop runs no network "
          "(benchmarks of the node's own overhead).", choices=("auto", *BACKENDS, NOOP)),
    Param("device", "cpu", "cpu, cuda or cuda:N."),
    Param("input_size", [0, 0], "Network input [H, W] in pixels (multiples of 32); [0, 0] = the model's own."),
    Param("threads", 0, "CPU threads for the network; 0 = all cores.", range=(0, 256)),
    Param("pipeline", True, "Run the network of a frame while a second thread post-processes and "
          "publishes the frame before: more frames/s where the network leaves cores idle, one frame "
          "more in flight."),
    Param("center_threshold", 0.1, "Minimum center heatmap score of an instance.", range=(0.0, 1.0), runtime=True),
    Param("nms_kernel", 0, "Center NMS window in grid cells (odd); 0 = 7 on GPU, 3 on CPU.", range=(0, 31), runtime=True),
    Param("top_k", 200, "At most this many instances per frame.", range=(1, 1000), runtime=True),
    Param("stuff_area", 2048, "Stuff segments smaller than this many pixels (at 1024x2048) become void.",
          range=(0, 1_000_000), runtime=True),
    Param("input_transport", "raw", "raw: <ns>/image_raw (Image); compressed: <ns>/image_raw/compressed.",
          choices=("raw", "compressed")),
    Param("reliability", "best_effort", "QoS reliability of the image subscription (best_effort matches "
          "camera drivers' sensor-data profile).", choices=("best_effort", "reliable")),
    Param("max_image_pixels", 16_777_216, "Frames with more pixels are refused and counted.",
          range=(1, 268_435_456)),
    Param("overlay_alpha", 0.5, "Class colour weight in panoptic/overlay.", range=(0.0, 1.0), runtime=True),
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", range=(0.1, 60.0)),
)
BY_NAME = {p.name: p for p in PARAMS}


def problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name``, or None."""
    p = BY_NAME.get(name)
    if p is None:
        return None  # not ours (use_sim_time and the like)
    if isinstance(p.default, list):
        # rclpy hands integer arrays over as array.array('q').
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            return f"{name} must be a list like {p.default}, got {value!r}"
        value = list(value)
    if type(value) is not type(p.default):
        if not (isinstance(p.default, float) and isinstance(value, int) and not isinstance(value, bool)):
            return f"{name} must be a {type(p.default).__name__}, got {value!r}"
    if p.choices and value not in p.choices:
        return f"{name} must be one of {', '.join(p.choices)}, got {value!r}"
    if p.range and not p.range[0] <= value <= p.range[1]:
        return f"{name} must be in [{p.range[0]}, {p.range[1]}], got {value!r}"
    if name == "nms_kernel" and value and value % 2 == 0:
        return f"nms_kernel must be odd (or 0 for the device's default), got {value}"
    if name == "device" and not (value == "cpu" or value == "cuda" or
                                 (value.startswith("cuda:") and value[5:].isdigit())):
        return f"device must be cpu, cuda or cuda:N, got {value!r}"
    if name == "input_size":
        if len(value) != 2 or any(not isinstance(v, int) for v in value):
            return f"input_size must be [H, W], got {value!r}"
        if list(value) != [0, 0] and any(v < 32 or v % 32 for v in value):
            return f"input_size must be multiples of 32 (at least 32) or [0, 0], got {list(value)}"
    if name == "model" and not value:
        return "model must name a checkpoint (.pt) or ONNX file (.onnx)"
    return None
