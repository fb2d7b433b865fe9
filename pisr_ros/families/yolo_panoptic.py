"""YOLO-Panoptic (Diaz-Zapata 2020) as a model family: ``YoloPanopticSpec``, the network
(Darknet-53 + YOLOv3 + PPM semantic head), its five outputs, the YOLOv3 + semantic + mask loss
and targets, and post-processing with the box-guided mask head (docs/yolo_panoptic.md).

The mask head has weights but runs after the network, on the boxes NMS keeps: ``postprocessor``
takes them from the torch network in memory, from a checkpoint's ``mask_head.*`` weights, or,
for an ONNX file served alone, from its metadata (``MASK_HEAD_METADATA``, written by
``onnx_metadata`` at export). The spatial ranking module of ``merge: ranking`` (trained after the
network by `pisr-ros train-ranking`) travels the same way: the checkpoint's ``spatial_ranking``
entry, or ``RANKING_METADATA``; a model without it serves ``merge: heuristic`` only.
"""
from __future__ import annotations

import base64
import copy
import io

import torch

from pisr_ros.errors import UsageError
from pisr_ros.families.base import HeadOutput
from pisr_ros.postprocess.yolo_panoptic import YoloPanopticPostprocessor, YoloPanopticSettings

MASK_HEAD_METADATA = "pisr_ros.yolo_panoptic.mask_head"  # base64 of torch.save(mask head state_dict)
MASK_HEAD_PREFIX = "mask_head."
RANKING_METADATA = "pisr_ros.yolo_panoptic.spatial_ranking"  # base64 of torch.save(ranking state_dict)


def encode_state(state: dict) -> str:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().float() for k, v in state.items()}, buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_state(text: str) -> dict:
    return torch.load(io.BytesIO(base64.b64decode(text)), map_location="cpu", weights_only=True)


class YoloPanopticFamily:
    name = "yolo_panoptic"
    settings_class = YoloPanopticSettings

    @property
    def loss_parts(self) -> tuple[str, ...]:
        from pisr_ros.models.yolo_losses import LOSS_PARTS

        return LOSS_PARTS

    @property
    def spec_class(self):
        from pisr_ros.models.yolo_panoptic.spec import YoloPanopticSpec

        return YoloPanopticSpec

    def outputs(self, spec) -> tuple[HeadOutput, ...]:
        from pisr_ros.models.darknet import BOX_FIELDS, NUM_ANCHORS

        det = NUM_ANCHORS * (BOX_FIELDS + len(spec.thing_ids))
        return (HeadOutput("det32", det, 32), HeadOutput("det16", det, 16), HeadOutput("det8", det, 8),
                HeadOutput("semantic", spec.num_classes, 4), HeadOutput("mask_features", spec.mask_channels, 4))

    def build_model(self, spec) -> torch.nn.Module:
        from pisr_ros.models.yolo_panoptic.network import YoloPanoptic

        return YoloPanoptic(spec)

    def _mask_head(self, spec) -> torch.nn.Module:
        from pisr_ros.models.yolo_panoptic.network import BoxMaskHead

        return BoxMaskHead(spec.mask_channels + 1, spec.mask_head_channels, spec.mask_head)

    def postprocessor(self, info, device, model=None) -> YoloPanopticPostprocessor:
        """The post-processing callable with the mask head's weights and, where the model file has
        them, the spatial ranking module's (see the module docstring)."""
        spec = info.model_spec
        stored = self._stored_weights(info)
        ranking = self._ranking(info, spec, stored.get("ranking"))
        head = getattr(model, "mask_head", None) if model is not None else None
        if head is not None:
            if next(head.parameters()).dtype != torch.float32:  # a half-precision torch backend
                head = copy.deepcopy(head).float()
            return YoloPanopticPostprocessor(spec, head, device, ranking, info.path.name)
        head = self._mask_head(spec)
        try:
            head.load_state_dict(stored["mask_head"])
        except RuntimeError as exc:
            raise UsageError(f"{info.path}: its mask head weights do not fit its spec ({exc}); export it again "
                             "with `pisr-ros export`") from exc
        return YoloPanopticPostprocessor(spec, head, device, ranking, info.path.name)

    def _ranking(self, info, spec, state):
        from pisr_ros.models.yolo_panoptic.spatial_ranking import load_ranking

        if state is None:
            return None
        try:
            return load_ranking(state, spec.num_things, spec.ranking.kernel, str(info.path))
        except ValueError as exc:
            raise UsageError(str(exc)) from exc

    def _stored_weights(self, info) -> dict:
        """{"mask_head": state, "ranking": state or None} from the model file (nothing for a model
        in memory, whose mask head the caller has and which has no ranking module)."""
        if info.kind == "checkpoint":
            from pisr_ros.models.spec import read_checkpoint
            from pisr_ros.models.yolo_panoptic.spatial_ranking import CHECKPOINT_KEY, ranking_state

            ckpt = read_checkpoint(info.path)
            weights = ckpt["state_dict"]
            ranking = None
            if CHECKPOINT_KEY in ckpt:
                try:
                    ranking = ranking_state(ckpt[CHECKPOINT_KEY], str(info.path))
                except ValueError as exc:
                    raise UsageError(str(exc)) from exc
            return {"mask_head": {k[len(MASK_HEAD_PREFIX):]: v for k, v in weights.items()
                                  if k.startswith(MASK_HEAD_PREFIX)}, "ranking": ranking}
        if info.kind == "onnx":
            import onnx

            meta = {p.key: p.value for p in onnx.load(str(info.path), load_external_data=False).metadata_props}
            if MASK_HEAD_METADATA not in meta:
                raise UsageError(f"{info.path} has no mask head weights in its metadata ({MASK_HEAD_METADATA}); "
                                 "export it again with `pisr-ros export --model CHECKPOINT.pt --out FILE.onnx`")
            out = {"ranking": None}
            for key, name, what in ((MASK_HEAD_METADATA, "mask_head", "mask head"),
                                    (RANKING_METADATA, "ranking", "spatial ranking")):
                if key not in meta:
                    continue
                try:
                    out[name] = decode_state(meta[key])
                except Exception as exc:  # noqa: BLE001 - base64/zip/unpickler errors of a damaged entry
                    raise UsageError(f"{info.path}: its {what} metadata cannot be read ({type(exc).__name__}); "
                                     "export it again with `pisr-ros export`") from exc
            return out
        if info.kind == "module":
            return {"ranking": None}
        raise UsageError(f"{info.path}: YOLO-Panoptic's mask head weights come from a checkpoint or an ONNX file "
                         "exported by `pisr-ros export`")

    def onnx_metadata(self, model, spec, checkpoint: dict | None = None) -> dict[str, str]:
        """Extra ONNX metadata: the mask head's weights, which are not part of the graph, and the
        spatial ranking module's where ``checkpoint`` (the exported file's dict) has them."""
        from pisr_ros.models.yolo_panoptic.spatial_ranking import CHECKPOINT_KEY, ranking_state

        meta = {MASK_HEAD_METADATA: encode_state(model.mask_head.state_dict())}
        if checkpoint is not None and CHECKPOINT_KEY in checkpoint:
            try:
                meta[RANKING_METADATA] = encode_state(ranking_state(checkpoint[CHECKPOINT_KEY], "the checkpoint"))
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
        return meta

    def postprocess(self, heads, input_size, settings):
        raise UsageError("YOLO-Panoptic's post-processing needs its mask head's weights: "
                         "use family.postprocessor(info, device, model) (the Predictor does)")

    def fake_heads(self, spec, input_size, device):
        heads = {o.name: torch.zeros(o.shape(1, input_size), device=device) for o in self.outputs(spec)}
        fields = 5 + len(spec.thing_ids)
        for name in ("det32", "det16", "det8"):
            heads[name].view(1, -1, fields, *heads[name].shape[-2:])[:, :, 4] = -20.0  # no objects
        heads["semantic"][:, 0] = 1.0  # road everywhere
        return heads

    def loss(self, spec) -> torch.nn.Module:
        from pisr_ros.models.yolo_losses import YoloPanopticLoss

        return YoloPanopticLoss(spec)

    def dataset(self, root, split, spec, **options):
        from pisr_ros.data.yolo_targets import YoloPanopticDataset

        return YoloPanopticDataset(root, split, tuple(spec.input_size), spec.thing_ids, **options)


FAMILY = YoloPanopticFamily()
