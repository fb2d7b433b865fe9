"""Freeze named parts of a network for training (``pisr-ros train --freeze backbone,detection``).

A network offers its parts by a ``freezable_parts() -> {name: module}`` method; when the
top-level network has none, the first submodule that has one speaks for it (YOLO-Panoptic's
``YoloV3`` offers "backbone" and "detection", see ``pisr_ros.models.darknet``). A frozen part
gets no gradients and its BatchNorm layers stay in eval mode, keeping their loaded running
statistics: the thesis trained YOLO-Panoptic's semantic and mask heads on a frozen COCO
Darknet-53 and YOLOv3, and BN statistics drifting under the new heads' batches would change
the frozen detector all the same.
"""
from __future__ import annotations

import types

from torch import nn

from pisr_ros.errors import UsageError


def freezable_parts(model: nn.Module) -> dict[str, nn.Module]:
    for module in model.modules():
        provider = getattr(module, "freezable_parts", None)
        if callable(provider):
            return dict(provider())
    return {}


def _train_stays_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def freeze(model: nn.Module, names: list[str] | tuple[str, ...]) -> int:
    """Freeze the parts ``names`` of ``model``; the number of parameters (scalars) frozen.
    UsageError naming the parts there are when one is unknown."""
    parts = freezable_parts(model)
    unknown = [n for n in names if n not in parts]
    if unknown:
        there = ", ".join(parts) if parts else "none (this model family has no freezable parts)"
        raise UsageError(f"--freeze {','.join(names)}: no part {unknown[0]!r} in this network; its parts: {there}")
    count = 0
    for name in names:
        part = parts[name]
        for p in part.parameters():
            if p.requires_grad:
                count += p.numel()
            p.requires_grad_(False)
        # model.train() reaches every submodule through its ``train``: this one answers with
        # eval. A bound method (not a closure) so that a deep copy binds to the copy.
        part.train = types.MethodType(_train_stays_eval, part)
        part.eval()
    return count
