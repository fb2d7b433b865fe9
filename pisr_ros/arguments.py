"""Values the command-line tools parse the same way."""
from __future__ import annotations

from pisr_ros.errors import UsageError


def parse_size(text: str, option: str) -> tuple[int, int]:
    """``HEIGHTxWIDTH`` (like 512x1024) as (H, W); UsageError naming ``option`` otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"{option} must be HEIGHTxWIDTH in pixels, like 512x1024; got {text!r}")
    h, w = int(parts[0]), int(parts[1])
    if h < 32 or w < 32:
        raise UsageError(f"{option} {text}: height and width must be at least 32 pixels")
    return h, w


def resolve_device(device: str) -> str:
    """``--device``: auto (cuda when available), cpu, cuda or cuda:N, checked against this machine."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available here; use --device cpu")
    return device
