"""`pisr-ros train --freeze backbone,detection` (pisr_ros.models.freeze): frozen parts get no
updates -- neither weights nor BatchNorm statistics -- while the rest trains."""
import argparse
import copy

import pytest
import torch
from torch import nn

from pisr_ros.errors import UsageError
from pisr_ros.models.darknet import YoloV3
from pisr_ros.models.freeze import freeze
from pisr_ros.training import train_cli


class Net(nn.Module):
    """A YoloV3 inside a bigger network, as in YOLO-Panoptic."""

    def __init__(self):
        super().__init__()
        self.detector = YoloV3(num_classes=8, width=0.25, depth=0.34)
        self.semantic = nn.Sequential(nn.Conv2d(self.detector.tap_channels[0], 8, 3, padding=1), nn.BatchNorm2d(8))

    def forward(self, x):
        out = self.detector(x)
        return self.semantic(out.taps[0]), out.heads


def _steps(net, n=2):
    torch.manual_seed(0)
    net.train()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=0.05)
    for _ in range(n):
        sem, heads = net(torch.randn(2, 3, 64, 64))
        loss = sem.pow(2).mean() + sum(h.pow(2).mean() for h in heads)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return sorted(k for k, v in module.state_dict().items() if not torch.equal(before[k], v))


def test_frozen_backbone_and_detection_keep_weights_and_statistics_the_rest_trains():
    net = Net()
    assert freeze(net, ("backbone", "detection")) == sum(p.numel() for p in net.detector.parameters())
    net.train()
    assert not any(m.training for part in (net.detector.backbone, net.detector.detection) for m in part.modules())
    assert net.semantic.training
    detector, semantic = _snapshot(net.detector), _snapshot(net.semantic)
    _steps(net)
    assert _changed(detector, net.detector) == []  # running means and variances included
    assert {"0.weight", "1.running_mean"} <= set(_changed(semantic, net.semantic))
    # A deep copy (what export or a checkpoint copy may do) stays frozen the same way.
    clone = copy.deepcopy(net)
    clone.train()
    assert not any(m.training for m in clone.detector.backbone.modules()) and clone.semantic.training


def test_freezing_only_the_backbone_trains_detection():
    net = Net()
    freeze(net, ["backbone"])
    backbone, detection = _snapshot(net.detector.backbone), _snapshot(net.detector.detection)
    _steps(net)
    assert _changed(backbone, net.detector.backbone) == []
    changed = _changed(detection, net.detector.detection)
    assert any(k.endswith("running_mean") for k in changed) and any(k.endswith("out.weight") for k in changed)


def test_unknown_part_names_the_parts_there_are():
    with pytest.raises(UsageError, match=r"no part 'neck'.*backbone, detection"):
        freeze(Net(), ["neck"])
    with pytest.raises(UsageError, match="has no freezable parts"):
        freeze(nn.Conv2d(3, 3, 1), ["backbone"])


def test_train_command_line_takes_freeze():
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    base = ["--config", "c.yaml", "--data", "d", "--out", "o"]
    assert parser.parse_args(base).freeze == ()
    assert parser.parse_args(base + ["--freeze", "backbone, detection"]).freeze == ("backbone", "detection")
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--freeze", ","])
