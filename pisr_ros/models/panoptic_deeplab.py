"""Panoptic-DeepLab (Cheng et al. 2020) with the optional PISR module between its intermediate
and final heads.

Inputs and outputs (``PanopticDeepLab.forward``):
  images (N,3,H,W) float, normalised: (RGB 0..255 - spec.pixel_mean) / spec.pixel_std.
  H and W need not be multiples of 32, but multiples of 32 keep the decoder's maps aligned.
Returns a dict of tensors, all at stride 4 (h = ceil(H/4), w = ceil(W/4) for sizes divisible
by 4), the resolution the heads compute at; post-processing and the loss upsample them:
  "semantic" (N,num_classes,h,w)  logits
  "center"   (N,1,h,w)            center heatmap (raw regression of a 0..1 Gaussian target)
  "offset"   (N,2,h,w)            (dy, dx) from each pixel to its instance center, in *input*
                                  pixels (so upsampling the map needs no rescaling)
and, with PISR on and in training mode, the intermediate heads' outputs
"semantic_aux", "center_aux", "offset_aux" (same shapes) for the loss's gamma term.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pisr_ros.models.backbone import SeparableConv, build_backbone, conv_bn_relu
from pisr_ros.models.pisr import PISR
from pisr_ros.taxonomy import IS_THING, NUM_CLASSES

OUTPUT_STRIDE = 4


def _resize(x, like):
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with depthwise-separable dilated branches."""

    def __init__(self, cin, cout, dilations):
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(cin, cout, 1)] + [SeparableConv(cin, cout, 3, d) for d in dilations])
        # No BN on the pooled branch: a 1x1 map with batch 1 has no batch statistics.
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(conv_bn_relu(cout * (len(dilations) + 2), cout, 1), nn.Dropout(0.1))

    def forward(self, x):
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(outs, dim=1))


class Decoder(nn.Module):
    """ASPP on res5, then upsample + fuse with projected res3, then with projected res2."""

    def __init__(self, in_channels: dict[str, int], spec):
        super().__init__()
        p2, p3 = spec.project_channels
        self.aspp = ASPP(in_channels["res5"], spec.aspp_channels, spec.aspp_dilations)
        self.project3 = conv_bn_relu(in_channels["res3"], p3, 1)
        self.fuse3 = SeparableConv(spec.aspp_channels + p3, spec.channels, spec.kernel_size)
        self.project2 = conv_bn_relu(in_channels["res2"], p2, 1)
        self.fuse2 = SeparableConv(spec.channels + p2, spec.channels, spec.kernel_size)

    def forward(self, feats):
        x = self.aspp(feats["res5"])
        r3, r2 = feats["res3"], feats["res2"]
        x = self.fuse3(torch.cat([_resize(x, r3), self.project3(r3)], dim=1))
        return self.fuse2(torch.cat([_resize(x, r2), self.project2(r2)], dim=1))


class Head(nn.Sequential):
    """``convs`` depthwise-separable convs then a 1x1 predictor."""

    def __init__(self, cin, channels, cout, kernel_size=5, convs=1):
        layers = []
        for _ in range(convs):
            layers.append(SeparableConv(cin, channels, kernel_size))
            cin = channels
        layers.append(nn.Conv2d(cin, cout, 1))
        super().__init__(*layers)


class PanopticDeepLab(nn.Module):
    """The network of a ``ModelSpec``; build it with ``pisr_ros.models.spec.build_model``."""

    output_stride = OUTPUT_STRIDE

    def __init__(self, spec):
        super().__init__()
        if spec.num_classes != NUM_CLASSES:
            raise ValueError(f"num_classes must be {NUM_CLASSES} (the Cityscapes training classes)")
        self.spec = spec
        self.backbone = build_backbone(spec.backbone)
        chans = self.backbone.out_channels
        sd, idc, h = spec.semantic_decoder, spec.instance_decoder, spec.heads
        self.semantic_decoder = Decoder(chans, sd)
        self.instance_decoder = Decoder(chans, idc)

        def heads(extra):
            return (Head(sd.channels + extra, h.semantic_channels, spec.num_classes, h.kernel_size, h.convs),
                    Head(idc.channels + extra, h.center_channels, 1, h.kernel_size, h.convs),
                    Head(idc.channels + extra, h.offset_channels, 2, h.kernel_size, h.convs))

        # With PISR these are the intermediate heads (the paper's semantic/instance generators).
        self.semantic_head, self.center_head, self.offset_head = heads(0)
        self.pisr = None
        if spec.pisr.enabled:
            self.pisr = PISR((sd.channels, idc.channels), IS_THING.tolist(), spec.pisr, OUTPUT_STRIDE)
            pc = spec.pisr.out_channels
            if spec.pisr.fusion == "concat":
                self.final_semantic_head, self.final_center_head, self.final_offset_head = heads(pc)
            else:
                # One head for all corrections: on PISR's coarse grid it costs little, and the
                # semantic and instance outputs read the same F_pan anyway.
                self.refine_head = Head(pc, h.semantic_channels, spec.num_classes + 3, h.kernel_size, h.convs)

    def _predict(self, sem_feat, ins_feat, sem_head, center_head, offset_head):
        # Offsets are learned in grid cells and reported in input pixels (detectron2 does the
        # same multiplication after upsampling).
        return sem_head(sem_feat), center_head(ins_feat), offset_head(ins_feat) * float(OUTPUT_STRIDE)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(images)
        sem_feat = self.semantic_decoder(feats)
        ins_feat = self.instance_decoder(feats)
        semantic, center, offset = self._predict(sem_feat, ins_feat, self.semantic_head,
                                                 self.center_head, self.offset_head)
        if self.pisr is None:
            return {"semantic": semantic, "center": center, "offset": offset}
        feats = [sem_feat, ins_feat]
        if self.spec.pisr.fusion == "concat":
            f_pan = self.pisr(feats, semantic, center, offset)
            out = dict(zip(("semantic", "center", "offset"), self._predict(
                torch.cat([sem_feat, f_pan], dim=1), torch.cat([ins_feat, f_pan], dim=1),
                self.final_semantic_head, self.final_center_head, self.final_offset_head)))
        else:
            f_pan = self.pisr(feats, semantic, center, offset, upsample=False)
            delta = _resize(self.refine_head(f_pan), semantic)
            c = semantic.shape[1]
            out = {"semantic": semantic + delta[:, :c], "center": center + delta[:, c:c + 1],
                   "offset": offset + delta[:, c + 1:] * float(OUTPUT_STRIDE)}
        if self.training:
            out.update(semantic_aux=semantic, center_aux=center, offset_aux=offset)
        return out
