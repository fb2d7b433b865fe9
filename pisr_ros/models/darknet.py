"""Darknet-53 and YOLOv3's neck and three detection heads, laid out in ``yolov3.cfg``'s order.

``YoloV3(num_classes, width, depth)`` is the network YOLO-Panoptic builds on. With width 1 and
depth 1 it is exactly pjreddie's YOLOv3 (so ``pisr_ros.models.darknet_weights`` can read
``yolov3.weights`` and ``darknet53.conv.74`` into it); smaller multipliers give a light network
for the CPU with the same structure.

Why the layout matters: a Darknet weights file is a bare stream of floats, one convolution after
another in the cfg's layer order, with no names. Every convolution here is a ``DarknetConv`` (or,
for the three linear output layers, an ``nn.Conv2d`` with bias), the modules are registered in
that order, and ``forward`` runs them in that order too, so ``YoloV3.convolutions()`` is the
cfg's sequence of convolutional layers. The tests check the execution order against it.

``YoloV3(x)`` returns ``YoloV3Output``:

- ``taps``: the backbone's residual outputs that YOLO-Panoptic's semantic head reads, the
  thesis's "layers 12, 37, 62": cfg layers 11, 36, 61 (0-based), i.e. the ends of stages 2, 3
  and 4 -- 128 channels at stride 4, 256 at stride 8, 512 at stride 16 in the full network
  (times ``width`` in a light one; with ``depth`` < 1 they are still the ends of those stages,
  though the cfg's layer numbers then no longer apply).
- ``heads``: the raw detection outputs at strides 32, 16, 8 (in that order, as in the cfg: the
  first head uses the three largest anchors). Channel ``a * (5 + C) + k`` of a head holds, for
  its anchor ``a``, ``k`` = 0..3: tx, ty, tw, th; 4: objectness logit; 5..: class logits --
  Darknet's own layout, which the weights reader keeps.

Inputs must be a multiple of 32 in both dimensions (the upsampled maps are concatenated with the
backbone's).

``Darknet53`` alone (``YoloV3.backbone``) returns the four stage ends (strides 4, 8, 16, 32);
``YoloV3.detection`` is the neck and heads. These two names are the parts that
``pisr-ros train --freeze backbone,detection`` refers to (``YoloV3.freezable_parts``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

STAGE_BLOCKS = (1, 2, 8, 8, 4)  # residual blocks per stage in Darknet-53
STAGE_CHANNELS = (64, 128, 256, 512, 1024)  # output channels of each stage (full width)
STEM_CHANNELS = 32
HEAD_STRIDES = (32, 16, 8)
NUM_ANCHORS = 3  # per head
BOX_FIELDS = 5  # tx, ty, tw, th, objectness; then the class logits
LEAKY_SLOPE = 0.1


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 8 (at least 8): vectorised kernels like
    multiples of 8, and width 1 keeps Darknet's exact numbers."""
    return max(8, int(round(channels * width / 8)) * 8)


def scaled_blocks(blocks: int, depth: float) -> int:
    return max(1, int(round(blocks * depth)))


class DarknetConv(nn.Module):
    """Darknet's ``[convolutional]`` with ``batch_normalize=1``: conv (no bias), BN, LeakyReLU 0.1.
    Padding is ``k // 2``, as Darknet's ``pad=1``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Residual(nn.Module):
    """1x1 to half the channels, 3x3 back, plus the input (Darknet's ``[shortcut] from=-3``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.reduce = DarknetConv(channels, channels // 2, 1)
        self.expand = DarknetConv(channels // 2, channels, 3)

    def forward(self, x):
        return x + self.expand(self.reduce(x))


class Stage(nn.Sequential):
    """A stride-2 3x3 convolution, then ``blocks`` residual blocks."""

    def __init__(self, cin: int, cout: int, blocks: int):
        super().__init__(DarknetConv(cin, cout, 3, stride=2), *[Residual(cout) for _ in range(blocks)])


class Darknet53(nn.Module):
    """The backbone: cfg layers 0-74 (52 convolutions at full depth). ``forward`` returns the
    ends of stages 2-5: strides 4, 8, 16, 32 (cfg layers 11, 36, 61, 74 at full depth)."""

    def __init__(self, width: float = 1.0, depth: float = 1.0):
        super().__init__()
        stem = scaled_channels(STEM_CHANNELS, width)
        self.stem = DarknetConv(3, stem, 3)
        stages, cin = [], stem
        for channels, blocks in zip(STAGE_CHANNELS, STAGE_BLOCKS):
            cout = scaled_channels(channels, width)
            stages.append(Stage(cin, cout, scaled_blocks(blocks, depth)))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(scaled_channels(c, width) for c in STAGE_CHANNELS[1:])

    def forward(self, x) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs[1], outs[2], outs[3], outs[4]


class HeadScale(nn.Module):
    """One of YOLOv3's three detection scales, in cfg order: five alternating 1x1/3x3 convs
    (``body``), a 3x3 (``tail``) and the linear 1x1 output with bias (``out``); then, for the
    first two scales, the 1x1 ``lateral`` conv whose upsampled output feeds the next scale
    (cfg layers 84 and 96, which come after this scale's output layer in the file)."""

    def __init__(self, cin: int, channels: int, out_channels: int, lateral: bool):
        super().__init__()
        c, c2 = channels, channels * 2
        self.body = nn.Sequential(DarknetConv(cin, c, 1), DarknetConv(c, c2, 3), DarknetConv(c2, c, 1),
                                  DarknetConv(c, c2, 3), DarknetConv(c2, c, 1))
        self.tail = DarknetConv(c, c2, 3)
        self.out = nn.Conv2d(c2, out_channels, 1, bias=True)
        self.lateral = DarknetConv(c, c // 2, 1) if lateral else None

    def forward(self, x) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.body(x)
        pred = self.out(self.tail(x))
        if self.lateral is None:
            return pred, None
        return pred, F.interpolate(self.lateral(x), scale_factor=2.0, mode="nearest")


class YoloV3Detection(nn.Module):
    """YOLOv3's neck and heads (cfg layers 75-106): reads the backbone's strides 8, 16, 32 and
    returns the raw head outputs at strides 32, 16, 8."""

    def __init__(self, backbone_channels: tuple[int, int, int, int], num_classes: int, width: float = 1.0):
        super().__init__()
        _, c8, c16, c32 = backbone_channels
        out = NUM_ANCHORS * (BOX_FIELDS + num_classes)
        h32, h16, h8 = (scaled_channels(c, width) for c in (512, 256, 128))
        self.scales = nn.ModuleList([
            HeadScale(c32, h32, out, lateral=True),
            HeadScale(c16 + h32 // 2, h16, out, lateral=True),
            HeadScale(c8 + h16 // 2, h8, out, lateral=False),
        ])

    def forward(self, s8, s16, s32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p32, up = self.scales[0](s32)
        p16, up = self.scales[1](torch.cat([up, s16], 1))  # Darknet's [route] -1, 61: upsampled first
        p8, _ = self.scales[2](torch.cat([up, s8], 1))
        return p32, p16, p8


class YoloV3Output(NamedTuple):
    taps: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # cfg layers 11, 36, 61 (strides 4, 8, 16)
    heads: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # strides 32, 16, 8


class YoloV3(nn.Module):
    """Darknet-53 + YOLOv3's detection; see the module docstring for what ``forward`` returns."""

    def __init__(self, num_classes: int = 80, width: float = 1.0, depth: float = 1.0):
        super().__init__()
        self.num_classes = num_classes
        self.width, self.depth = width, depth
        self.backbone = Darknet53(width, depth)
        self.detection = YoloV3Detection(self.backbone.out_channels, num_classes, width)

    @property
    def tap_channels(self) -> tuple[int, int, int]:
        return self.backbone.out_channels[:3]

    @property
    def head_channels(self) -> int:
        return NUM_ANCHORS * (BOX_FIELDS + self.num_classes)

    def forward(self, x) -> YoloV3Output:
        s4, s8, s16, s32 = self.backbone(x)
        return YoloV3Output((s4, s8, s16), self.detection(s8, s16, s32))

    def convolutions(self, part: str | None = None) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
        """(conv, its BN or None) for every convolutional layer, in cfg order: the order of a
        Darknet weights file. ``part`` = "backbone" or "detection" restricts it to that module."""
        root = self if part is None else self.freezable_parts()[part]
        return darknet_convolutions(root)

    def freezable_parts(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "detection": self.detection}


def darknet_convolutions(module: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """Registration order of ``module``'s convolutions, each with its BN: a ``DarknetConv``'s conv
    and BN, or a bare ``nn.Conv2d`` (an output layer) with None."""
    out = []
    inside = set()
    for m in module.modules():
        if isinstance(m, DarknetConv):
            out.append((m.conv, m.bn))
            inside.add(id(m.conv))
        elif isinstance(m, nn.Conv2d) and id(m) not in inside:
            out.append((m, None))
    return out
