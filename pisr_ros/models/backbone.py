"""Backbones: a configurable ResNet (the paper's ResNet-50) and a light MobileNetV2-style net.

Both return a dict of feature maps keyed like detectron2's ResNet: ``res2`` (stride 4),
``res3`` (stride 8) and ``res5`` (the deepest, stride ``output_stride``), which is what the
Panoptic-DeepLab decoders consume. ``out_channels`` gives each map's channel count.

torchvision is not a dependency, so the ResNet is written here; its parameter names do not
follow torchvision's, so ImageNet weights need a key map to load.
"""
from __future__ import annotations

import torch
from torch import nn

FEATURE_KEYS = ("res2", "res3", "res5")


def conv_bn_relu(cin, cout, k=3, stride=1, dilation=1, groups=1, relu=True) -> nn.Sequential:
    layers = [
        nn.Conv2d(cin, cout, k, stride, padding=dilation * (k - 1) // 2, dilation=dilation,
                  groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SeparableConv(nn.Sequential):
    """Depthwise kxk + pointwise 1x1, each with BN and ReLU (Panoptic-DeepLab's DSConv)."""

    def __init__(self, cin, cout, k=5, dilation=1):
        super().__init__(
            conv_bn_relu(cin, cin, k, dilation=dilation, groups=cin),
            conv_bn_relu(cin, cout, 1),
        )


# ----------------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, dilation=1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = conv_bn_relu(cin, planes, 3, stride, dilation)
        self.conv2 = conv_bn_relu(planes, cout, 3, 1, dilation, relu=False)
        self.shortcut = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, dilation=1):
        super().__init__()
        cout = planes * self.expansion
        # Stride in the 3x3 (the "ResNet v1.5" placement, STRIDE_IN_1X1=False in detectron2):
        # a strided 1x1 would skip three quarters of its input.
        self.conv1 = conv_bn_relu(cin, planes, 1)
        self.conv2 = conv_bn_relu(planes, planes, 3, stride, dilation)
        self.conv3 = conv_bn_relu(planes, cout, 1, relu=False)
        self.shortcut = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


def _shortcut(cin, cout, stride):
    if stride == 1 and cin == cout:
        return nn.Identity()
    return conv_bn_relu(cin, cout, 1, stride, relu=False)


RESNET_LAYERS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
                 50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class ResNet(nn.Module):
    """ResNet-18/34/50/101 with a configurable base width and output stride (32, 16 or 8).

    ``stem="deeplab"`` uses three 3x3 convs (DeepLab's "R-52" stem) instead of one 7x7.
    Output stride below 32 dilates the last stages instead of striding them (DeepLab), with
    multi-grid rates ``multi_grid`` in res5.
    """

    def __init__(self, depth=50, width=64, output_stride=16, stem="basic", multi_grid=(1, 2, 4)):
        super().__init__()
        if depth not in RESNET_LAYERS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_LAYERS)}, got {depth}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        block, counts = RESNET_LAYERS[depth]
        if stem == "basic":
            self.stem = nn.Sequential(conv_bn_relu(3, width, 7, 2), nn.MaxPool2d(3, 2, 1))
            stem_out = width
        elif stem == "deeplab":
            self.stem = nn.Sequential(
                conv_bn_relu(3, width, 3, 2), conv_bn_relu(width, width, 3),
                conv_bn_relu(width, 2 * width, 3), nn.MaxPool2d(3, 2, 1))
            stem_out = 2 * width
        else:
            raise ValueError(f"ResNet stem must be 'basic' or 'deeplab', got {stem!r}")
        strides = [1, 2, 2, 2]
        dilations = [1, 1, 1, 1]
        if output_stride <= 16:
            strides[3], dilations[3] = 1, 2
        if output_stride == 8:
            strides[2], dilations[2], dilations[3] = 1, 2, 4
        cin = stem_out
        stages = []
        for i, (n, s, d) in enumerate(zip(counts, strides, dilations)):
            planes = width * 2 ** i
            grid = multi_grid if i == 3 else (1,) * n
            blocks = []
            for j in range(n):
                rate = d * grid[j % len(grid)]
                blocks.append(block(cin, planes, s if j == 0 else 1, rate))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.res2, self.res3, self.res4, self.res5 = stages
        self.out_channels = {"res2": width * block.expansion, "res3": 2 * width * block.expansion,
                             "res5": 8 * width * block.expansion}
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r2 = self.res2(self.stem(x))
        r3 = self.res3(r2)
        r5 = self.res5(self.res4(r3))
        return {"res2": r2, "res3": r3, "res5": r5}


# -------------------------------------------------------------------------------- MobileNet
class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear project, residual if shapes agree."""

    def __init__(self, cin, cout, stride, expand, dilation=1):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn_relu(cin, hidden, 1)] if expand != 1 else []
        layers += [conv_bn_relu(hidden, hidden, 3, stride, dilation, groups=hidden),
                   conv_bn_relu(hidden, cout, 1, relu=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileNet(nn.Module):
    """A MobileNetV2-style backbone for CPUs: ``stages`` is a list of (expand, channels,
    repeats, stride) rows after a stride-2 stem of ``stem_channels``.

    ``res2``/``res3`` are the last maps at stride 4/8, ``res5`` the last map. Output stride
    16 (instead of 32) turns the strides after 16 into dilations.
    """

    def __init__(self, stages, stem_channels=16, output_stride=32):
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride must be 16 or 32, got {output_stride}")
        self.stem = conv_bn_relu(3, stem_channels, 3, 2)
        cin, stride, dilation = stem_channels, 2, 1
        blocks, taps = [], {}
        for expand, cout, repeats, s in stages:
            for j in range(repeats):
                step = s if j == 0 else 1
                if step > 1 and stride * step > output_stride:
                    blocks.append(InvertedResidual(cin, cout, 1, expand, dilation))
                    dilation *= step
                else:
                    blocks.append(InvertedResidual(cin, cout, step, expand, dilation))
                    stride *= step
                cin = cout
                if stride in (4, 8):
                    taps[stride] = len(blocks) - 1
        if 4 not in taps or 8 not in taps:
            raise ValueError("MobileNet stages must produce maps at stride 4 and 8")
        self.blocks = nn.ModuleList(blocks)
        self._tap2, self._tap3 = taps[4], taps[8]
        self.out_channels = {"res2": blocks[self._tap2].body[-1][0].out_channels,
                             "res3": blocks[self._tap3].body[-1][0].out_channels,
                             "res5": cin}
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        out = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self._tap2:
                out["res2"] = x
            elif i == self._tap3:
                out["res3"] = x
        out["res5"] = x
        return out


def build_backbone(spec) -> nn.Module:
    """The backbone a ``BackboneSpec`` describes (see ``pisr_ros.models.spec``)."""
    if spec.name == "resnet":
        return ResNet(spec.depth, spec.width, spec.output_stride, spec.stem, tuple(spec.multi_grid))
    if spec.name == "mobilenet":
        return MobileNet([tuple(row) for row in spec.stages], spec.width, spec.output_stride)
    raise ValueError(f"unknown backbone {spec.name!r}; use 'resnet' or 'mobilenet'")
