"""Panoptic-DeepLab (+ PISR) as a model family: ``ModelSpec``, the network, its three heads at
stride 4, the Panoptic-DeepLab loss and targets, and center-grouping post-processing."""
from __future__ import annotations

import torch

from pisr_ros.families.base import HeadOutput
from pisr_ros.models.panoptic_deeplab import OUTPUT_STRIDE, PanopticDeepLab
from pisr_ros.postprocess.panoptic_deeplab import PanopticDeepLabSettings, panoptic_deeplab_postprocess


class PanopticDeepLabFamily:
    name = "panoptic_deeplab"
    settings_class = PanopticDeepLabSettings
    loss_parts = ("semantic", "center", "offset", "semantic_aux", "center_aux", "offset_aux")

    @property
    def spec_class(self):
        from pisr_ros.models.spec import ModelSpec

        return ModelSpec

    def outputs(self, spec) -> tuple[HeadOutput, ...]:
        return (HeadOutput("semantic", spec.num_classes, OUTPUT_STRIDE), HeadOutput("center", 1, OUTPUT_STRIDE),
                HeadOutput("offset", 2, OUTPUT_STRIDE))

    def build_model(self, spec) -> torch.nn.Module:
        return PanopticDeepLab(spec)

    def postprocess(self, heads, input_size, settings):
        return panoptic_deeplab_postprocess(heads["semantic"], heads["center"], heads["offset"],
                                            input_size=input_size, cfg=settings)

    def fake_heads(self, spec, input_size, device):
        semantic, center, offset = (torch.zeros(o.shape(1, input_size), device=device) for o in self.outputs(spec))
        semantic[:, 0] = 1.0  # road everywhere, no centers
        return {"semantic": semantic, "center": center, "offset": offset}

    def loss(self, spec) -> torch.nn.Module:
        from pisr_ros.models.losses import PanopticDeepLabLoss

        return PanopticDeepLabLoss(spec.loss)

    def dataset(self, root, split, spec, **options):
        from pisr_ros.data.dataset import CityscapesPanoptic

        return CityscapesPanoptic(root, split, tuple(spec.input_size), **options)


FAMILY = PanopticDeepLabFamily()
