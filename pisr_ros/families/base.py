"""What a model family provides (``ModelFamily``), and the two small records it shares with
the rest of the code: the heads it outputs (``HeadOutput``) and what its post-processing
returns (``FamilyBatch``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class HeadOutput:
    """One output tensor of a family's network: (N, channels, ceil(H/stride), ceil(W/stride))
    for an (N, 3, H, W) input. ONNX files, TensorRT engines and backends name outputs by ``name``."""

    name: str
    channels: int
    stride: int

    def shape(self, batch: int, input_size: tuple[int, int]) -> tuple[int, int, int, int]:
        h, w = input_size
        return batch, self.channels, -(-h // self.stride), -(-w // self.stride)


class FamilyBatch(Protocol):
    """Post-processed batch, tensors on the heads' device, all on one grid (N, h, w)."""

    id_map: torch.Tensor  # int32, trainId*1000+k, -1 void
    confidence: torch.Tensor  # float32 in [0, 1]
    semantic: torch.Tensor  # the semantic head's own argmax (trainIds): what mIoU is scored on


class ModelFamily(Protocol):
    """A model family. ``spec_class`` needs the fields ``family``, ``name``, ``input_size``,
    ``pixel_mean``, ``pixel_std`` and ``to_dict()`` / ``from_dict()`` (``pisr_ros.models.spec.SpecBase``
    gives the last two); ``settings_class`` is a frozen dataclass of ``pisr_ros.settings`` fields."""

    name: str
    spec_class: type
    settings_class: type
    loss_parts: tuple[str, ...]  # names of the loss terms training logs

    def outputs(self, spec) -> tuple[HeadOutput, ...]:
        """The network's outputs, in the order ONNX files list them."""

    def build_model(self, spec) -> torch.nn.Module:
        """The network: normalised (N,3,H,W) float images -> {output name: tensor}."""

    def postprocess(self, heads: dict[str, torch.Tensor], input_size: tuple[int, int], settings) -> FamilyBatch:
        """Id maps of a batch of heads from a network run at ``input_size`` (H, W)."""

    # Optional: a family whose post-processing has learnt weights (YOLO-Panoptic's mask head runs
    # on the boxes the network found) defines
    #     postprocessor(info: ModelInfo, device, model: nn.Module | None) -> postprocess-like callable
    # built once per Predictor (``model``: the torch network when one is in memory, else None and
    # the weights come from ``info.path``); without it the Predictor calls ``postprocess``.

    def fake_heads(self, spec, input_size: tuple[int, int], device: torch.device) -> dict[str, torch.Tensor]:
        """Heads of one image of an empty road at no cost (batch 1), for the no-op backend."""

    def loss(self, spec) -> torch.nn.Module:
        """The training loss: (outputs, targets) -> {part: scalar tensor} with a "total" part."""

    def dataset(self, root, split: str, spec, **options) -> Any:
        """Training (or evaluation) samples of a Cityscapes-layout split with this family's targets."""
