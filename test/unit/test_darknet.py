"""Darknet-53 + YOLOv3 (pisr_ros.models.darknet): shapes per scale, and the convolutions in
yolov3.cfg's layer order -- checked against a table written here from the cfg, and against the
order in which ``forward`` actually runs them."""
import pytest
import torch
from torch import nn

from pisr_ros.models.darknet import YoloV3


def yolov3_cfg_convolutions(classes=80):
    """(in, out, kernel, stride, batch_normalize) of every [convolutional] of pjreddie's
    yolov3.cfg, in file order, written out from the cfg (not from the module)."""
    rows = [(3, 32, 3, 1, True)]
    cin = 32
    for cout, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
        rows.append((cin, cout, 3, 2, True))
        for _ in range(blocks):
            rows += [(cout, cout // 2, 1, 1, True), (cout // 2, cout, 3, 1, True)]
        cin = cout
    out = 3 * (5 + classes)
    for cin, c, lateral in ((1024, 512, True), (768, 256, True), (384, 128, False)):
        rows += [(cin, c, 1, 1, True), (c, 2 * c, 3, 1, True), (2 * c, c, 1, 1, True),
                 (c, 2 * c, 3, 1, True), (2 * c, c, 1, 1, True), (c, 2 * c, 3, 1, True),
                 (2 * c, out, 1, 1, False)]
        if lateral:  # layers 84 / 96: the 1x1 before [upsample]
            rows.append((c, c // 2, 1, 1, True))
    return rows


def _executed_convs(model, x):
    order = []
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(mod))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return order


def test_full_network_matches_yolov3_cfg_in_file_and_execution_order():
    model = YoloV3(num_classes=80).eval()
    table = yolov3_cfg_convolutions(80)
    convs = model.convolutions()
    assert len(table) == len(convs) == 75
    for i, ((cin, cout, k, stride, bn), (conv, norm)) in enumerate(zip(table, convs)):
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (cin, cout, (k, k), (stride, stride)), i
        assert (norm is not None) == bn and (conv.bias is None) == bn, i
    # Darknet runs its layers in file order; so must forward, or weights land on the wrong layer.
    executed = _executed_convs(model, torch.zeros(1, 3, 64, 64))
    assert executed == [conv for conv, _ in convs]
    assert len(model.convolutions("backbone")) == 52  # darknet53.conv.74 holds these


@pytest.mark.parametrize("width,depth,classes", [(1.0, 1.0, 8), (0.25, 0.34, 8)])
def test_taps_and_heads_shapes_per_scale(width, depth, classes):
    model = YoloV3(num_classes=classes, width=width, depth=depth).eval()
    h, w = 64, 96
    with torch.no_grad():
        out = model(torch.zeros(2, 3, h, w))
    full = (128, 256, 512)
    for tap, channels, stride, want in zip(out.taps, model.tap_channels, (4, 8, 16), full):
        assert tap.shape == (2, channels, h // stride, w // stride)
        if width == 1.0:
            assert channels == want
    for head, stride in zip(out.heads, (32, 16, 8)):
        assert head.shape == (2, 3 * (5 + classes), h // stride, w // stride)
    assert model.head_channels == 3 * (5 + classes)
    # Same structure at any depth: the execution order is still the registration order.
    assert _executed_convs(model, torch.zeros(1, 3, 32, 32)) == [c for c, _ in model.convolutions()]


def test_light_network_is_smaller_and_every_parameter_gets_a_gradient():
    model = YoloV3(num_classes=8, width=0.25, depth=0.34)
    assert sum(p.numel() for p in model.parameters()) < 0.1 * sum(p.numel() for p in YoloV3(8).parameters())
    out = model(torch.randn(1, 3, 64, 64))
    sum(t.float().pow(2).mean() for t in (*out.taps, *out.heads)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
