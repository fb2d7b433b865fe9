"""PISR: Panoptic, Instance and Semantic Relations (Borse et al., CVPR 2022, section 3).

From the intermediate predictions of a base model (semantic logits, center heatmap, offsets)
and its feature map F, PISR builds one encoding per semantic class and per top-K instance,
re-weights them with a small sigmoid MLP, and runs two-stage Panoptic Relational Attention
to produce F_pan, which the final heads read. Every choice the paper leaves open is written
down, with its reason, in docs/pisr_design_choices.md.

Everything here exports to ONNX (opset 17) with TensorRT-friendly ops: Conv, MatMul, Softmax,
MaxPool, TopK (fixed K), Sigmoid, elementwise arithmetic, Resize.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pisr_ros.models.backbone import SeparableConv, conv_bn_relu


def select_centers(center: torch.Tensor, k: int, nms_kernel: int):
    """Top-``k`` local maxima of a center heatmap (N,1,h,w): scores (N,k) and grid rows,
    cols (N,k) as floats. Non-maxima score 0, so with fewer than k peaks the rest of the K
    slots get score 0 (their instance heatmaps vanish; see ``instance_heatmaps``)."""
    n, _, h, w = center.shape
    pooled = F.max_pool2d(center, nms_kernel, stride=1, padding=nms_kernel // 2)
    peaks = torch.relu(center * (center == pooled).to(center.dtype))
    scores, index = peaks.flatten(1).topk(k, dim=1)
    # Truncating division exports as one integer Div (indices are non-negative).
    rows = torch.div(index, w, rounding_mode="trunc")
    cols = index - rows * w
    return scores, rows.to(center.dtype), cols.to(center.dtype)


def instance_heatmaps(center, offset, things, k, nms_kernel, radius, stride):
    """The K initial instance heatmaps I (N,K,h*w) of PISR section 3.2.

    Each pixel votes for the center it regresses to (its position plus its offset); the
    heatmap of center k is ``score_k * max(0, 1 - |c_k - (p + o(p))| / radius) * things(p)``:
    the paper's ``1 - C |M - (p + O)|`` with C = 1/radius, clamped at 0, weighted by the
    center's score so padded top-K slots add nothing, and masked by the soft things
    probability ``things`` (N,h*w).

    ``offset`` (N,2,h,w) is (dy, dx) in input pixels; ``stride`` is input pixels per grid
    cell and ``radius`` is in input pixels.
    """
    n, _, h, w = center.shape
    scores, cy, cx = select_centers(center, k, nms_kernel)
    # Integer ranges, then cast: TensorRT's ONNX parser takes a float Range only when its
    # bounds are initializers, which traced sizes are not.
    ys = torch.arange(h, device=center.device).to(center.dtype).view(1, h, 1)
    xs = torch.arange(w, device=center.device).to(center.dtype).view(1, 1, w)
    ry = (ys + offset[:, 0] / stride).reshape(n, 1, h * w)
    rx = (xs + offset[:, 1] / stride).reshape(n, 1, h * w)
    # + 1e-6 keeps sqrt's gradient finite where a pixel regresses exactly onto a center.
    dist = torch.sqrt((ry - cy.unsqueeze(2)) ** 2 + (rx - cx.unsqueeze(2)) ** 2 + 1e-6)
    cone = torch.relu(1.0 - dist * (stride / radius))
    return cone * scores.unsqueeze(2) * things.unsqueeze(1)


def average_pool(x: torch.Tensor, s: int, channels: int) -> torch.Tensor:
    """s x s average pooling with stride s, as a fixed depthwise conv. Same numbers; but
    ONNX Runtime's AveragePool took ~8 ms of the light model's 512x1024 run on 2 cores,
    while its blocked-layout depthwise conv does not show in the profile. ``channels`` is
    x.shape[1] as a Python int: an exported graph needs the kernel's shape as a constant."""
    weight = torch.full((channels, 1, s, s), 1.0 / (s * s), dtype=x.dtype, device=x.device)
    return F.conv2d(x, weight, stride=s, groups=channels)


class PISR(nn.Module):
    """F_pan from decoder features and intermediate predictions.

    ``forward(features, semantic, center, offset)``: ``features`` (N,Cin,h,w) is what the
    base decoders produced at stride ``stride`` (or a list of maps whose channels add up to
    Cin, concatenated here); ``semantic`` (N,num_classes,h,w) logits,
    ``center`` (N,1,h,w), ``offset`` (N,2,h,w) in input pixels are the intermediate heads'
    outputs. Returns F_pan (N, spec.out_channels, h, w), or with ``upsample=False`` on the grid
    PISR ran on (``spec.downsample`` times coarser). With ``return_extras=True`` also a
    dict with the encodings ``E`` (N,L,C) before re-weighting, the weights ``omega``
    (N,L,1) (None without re-weighting) and the attention map (N,L,h',w'), where
    L = num_classes + K and (h',w') is the grid PISR ran on (``spec.downsample`` times
    coarser than the input maps).
    """

    def __init__(self, in_channels: int | tuple[int, ...], thing_mask, spec, stride: int = 4):
        super().__init__()
        self.spec = spec
        self.stride = stride
        self.k = spec.top_k
        # One entry per feature map forward() receives (the model passes its two decoders').
        self.in_splits = tuple(in_channels) if isinstance(in_channels, (tuple, list)) else (in_channels,)
        in_channels = sum(self.in_splits)
        c, ck, cv = spec.channels, spec.key_channels, spec.value_channels
        num_classes = len(thing_mask)
        self.num_categories = num_classes + spec.top_k
        self.register_buffer("thing_mask", torch.tensor(thing_mask, dtype=torch.float32).view(1, -1, 1),
                             persistent=False)
        self.in_proj = conv_bn_relu(in_channels, c, 1)
        self.reweight = (nn.Sequential(nn.Linear(c, spec.reweight_hidden), nn.ReLU(inplace=True),
                                       nn.Linear(spec.reweight_hidden, 1), nn.Sigmoid())
                         if spec.reweight else None)
        self.g_s = nn.Sequential(nn.Linear(c, ck), nn.ReLU(inplace=True), nn.Linear(ck, ck))
        self.h = nn.Sequential(SeparableConv(c, ck, 3) if spec.separable else conv_bn_relu(c, ck, 3),
                               conv_bn_relu(ck, ck, 1))
        self.g_p = nn.Linear(self.num_categories, self.num_categories)
        self.g_q = nn.Sequential(nn.Linear(c, cv), nn.ReLU(inplace=True), nn.Linear(cv, cv))
        self.out_proj = conv_bn_relu(cv, spec.out_channels, 1)

    def encodings(self, feats, semantic, center, offset, stride):
        """E_pan = [S; I] F^T, normalised per category (N,L,C), and F (N,C,h,w)."""
        feat = self.in_proj(feats)
        n, c, h, w = feat.shape
        # softmax over channels, written out: ONNX Runtime runs a Softmax on a non-last axis
        # as transpose, softmax, transpose, which cost 1.3 ms of the light model's 512x1024 run.
        exp = torch.exp(semantic - semantic.amax(dim=1, keepdim=True))
        probs = (exp / exp.sum(dim=1, keepdim=True)).reshape(n, -1, h * w)
        things = (probs * self.thing_mask).sum(1)
        inst = instance_heatmaps(center, offset, things, self.k, self.spec.nms_kernel,
                                 self.spec.heatmap_radius, stride)
        cat = torch.cat([probs, inst], dim=1)
        # Divide by (mass + 1 cell): present categories get their mean feature, absent or
        # empty ones (mass << 1) shrink towards 0, and the scale does not grow with h*w.
        enc = torch.matmul(cat, feat.reshape(n, c, h * w).transpose(1, 2))
        enc = enc / (cat.sum(dim=2, keepdim=True) + 1.0)
        return enc, feat

    def forward(self, feats, semantic, center, offset, return_extras: bool = False, upsample: bool = True):
        if isinstance(feats, torch.Tensor):
            feats = [feats]
        size = feats[0].shape[-2:]
        s = self.spec.downsample
        if s > 1:
            # Work on a coarser grid: features, logits and offsets averaged, centers max-pooled
            # so that peaks survive.
            feats = [average_pool(f, s, c) for f, c in zip(feats, self.in_splits, strict=True)]
            semantic = average_pool(semantic, s, self.num_categories - self.k)
            offset = average_pool(offset, s, 2)
            center = F.max_pool2d(center, s, s)
        # Concatenated after pooling: a concat on the coarse grid moves s*s times less memory.
        feats = torch.cat(feats, dim=1) if len(feats) > 1 else feats[0]
        raw, feat = self.encodings(feats, semantic, center, offset, self.stride * s)
        omega = self.reweight(raw) if self.reweight is not None else None
        enc = raw * omega if omega is not None else raw
        n, c, h, w = feat.shape
        # Pixels-major layout (N,hw,.) keeps both softmax and g_p on the last axis, which
        # CPUs run without a transpose.
        query = self.h(feat).reshape(n, -1, h * w).transpose(1, 2)  # h(F)^T: (N,hw,Ck)
        keys = self.g_s(enc)  # g_s(E~): (N,L,Ck)
        # Stage 1: F_sp = g_s(E~)^T h(F), as attention over the L categories at each pixel.
        logits = torch.matmul(query, keys.transpose(1, 2)) * (keys.shape[-1] ** -0.5)
        attention = torch.softmax(logits, dim=2)  # (N,hw,L)
        # Stage 2: F_pan = g_q(E~)^T g_p(F_sp); g_p (a 1x1 conv over categories) mixes them,
        # g_q maps them back to features.
        values = self.g_q(enc)  # (N,L,Cv)
        # g_p(A) V = A (W_p^T V) + b_p V: the same product with g_p moved onto the L x Cv
        # values instead of the hw x L attention map.
        mixed = torch.matmul(self.g_p.weight.t(), values)
        f_pan = torch.matmul(attention, mixed) + torch.matmul(self.g_p.bias, values).unsqueeze(1)  # (N,hw,Cv)
        f_pan = f_pan.transpose(1, 2).reshape(n, -1, h, w)
        f_pan = self.out_proj(f_pan)
        if s > 1 and upsample:
            f_pan = F.interpolate(f_pan, size=size, mode="bilinear", align_corners=False)
        if return_extras:
            return f_pan, {"E": raw, "omega": omega,
                           "attention": attention.transpose(1, 2).reshape(n, -1, h, w)}
        return f_pan
