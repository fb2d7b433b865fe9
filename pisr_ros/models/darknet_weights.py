"""Read pjreddie's Darknet weights (``yolov3.weights``, ``darknet53.conv.74``) into ``YoloV3``,
and carry the 80 COCO classes over to the 8 Cityscapes thing classes.

The format: a header of major, minor, revision (int32 each) and ``seen`` (images trained on:
int64 when ``major*10 + minor >= 2`` and both are below 1000, else int32), then little-endian
float32s, one convolutional layer after another in the cfg's order: for a layer with batch norm
its beta, gamma, running mean, running variance (``out`` floats each), for one without, its
bias; then its weights, OIHW. Nothing in the file names a layer, so the only checks possible are
the header and the size, and both are made exactly: a file of another size was written for
another network and would load shifted garbage.

``darknet53.conv.74`` is ``darknet partial`` of the classifier at layer 74: the backbone's 52
convolutions alone, which fill ``YoloV3.backbone`` and leave the detection layers as built.

Rider has no COCO class. A rider is, to a COCO detector, a person (on a bicycle or motorcycle),
so rider's class row starts as a copy of person's -- the right features to fine-tune from -- with
its logit lowered by ``RIDER_LOGIT_OFFSET`` so that an imported, not yet fine-tuned detector does
not report every person a second time as a rider: where person scores p, rider scores about
p/99 (for small p). With ``--freeze detection`` (the thesis's setup) riders therefore stay
almost never detected; only training the detection head teaches rider apart from person.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pisr_ros.errors import UsageError
from pisr_ros.models.darknet import BOX_FIELDS, NUM_ANCHORS, YoloV3

COCO_CLASSES = 80
# The COCO classes (0-based, in Darknet's coco.names order) that are Cityscapes things.
COCO_INDEX = {"person": 0, "bicycle": 1, "car": 2, "motorcycle": 3, "bus": 5, "train": 6, "truck": 7}
RIDER_SOURCE = "person"
RIDER_LOGIT_OFFSET = math.log(99.0)  # sigmoid(l - log 99) ~ sigmoid(l) / 99 for small scores
SUPPORTED_MAJOR = 0  # every Darknet release so far writes 0.x.y


@dataclass(frozen=True)
class DarknetHeader:
    major: int
    minor: int
    revision: int
    seen: int
    nbytes: int  # 16 or 20

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}.{self.revision}"


def seen_is_int64(major: int, minor: int) -> bool:
    return major * 10 + minor >= 2 and major < 1000 and minor < 1000


def float_count(convs: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]) -> int:
    """Floats a Darknet file stores for these layers."""
    return sum(conv.out_channels * (4 if bn is not None else 1) + conv.weight.numel() for conv, bn in convs)


def read_header(path: str | Path) -> DarknetHeader:
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except FileNotFoundError as exc:
        raise UsageError(f"no Darknet weights file at {path}") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(head) < 12:
        raise UsageError(f"{path}: {len(head)} bytes, too short for a Darknet weights header (12 bytes of "
                         "version, then seen and the floats); copy the file again")
    major, minor, revision = (int(v) for v in np.frombuffer(head[:12], "<i4"))
    wide = seen_is_int64(major, minor)
    nbytes = 20 if wide else 16
    if len(head) < nbytes:
        raise UsageError(f"{path}: {len(head)} bytes, too short for a Darknet weights header ({nbytes} bytes)")
    seen = int(np.frombuffer(head[12:nbytes], "<i8" if wide else "<i4")[0])
    header = DarknetHeader(major, minor, revision, seen, nbytes)
    if major != SUPPORTED_MAJOR:
        raise UsageError(f"{path}: Darknet weights version {header.version} is not one this reader knows "
                         f"(Darknet writes {SUPPORTED_MAJOR}.x.y); is it a Darknet .weights file?")
    return header


def _size_problem(path, header: DarknetHeader, expected: dict[str, int], actual: int) -> UsageError:
    wanted = " or ".join(f"{header.nbytes + 4 * n:,} bytes ({what})" for what, n in expected.items())
    return UsageError(f"{path}: expected {wanted} for a version {header.version} header, found {actual:,} bytes; "
                      "the file is cut short or was written for another network")


def load_convolutions(path: str | Path, convs: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]],
                      what: str = "these layers") -> DarknetHeader:
    """Fill ``convs`` (in file order) from ``path``, which must hold exactly their floats."""
    header = read_header(path)
    actual = os.path.getsize(path)
    count = float_count(convs)
    if actual != header.nbytes + 4 * count:
        raise _size_problem(path, header, {what: count}, actual)
    _fill(path, header, convs, count)
    return header


def _fill(path, header: DarknetHeader, convs, count: int) -> None:
    data = np.fromfile(str(path), dtype="<f4", count=count, offset=header.nbytes)
    if data.size != count:  # changed under us
        raise UsageError(f"{path}: could read only {data.size:,} of {count:,} floats; copy the file again")
    if not np.isfinite(data).all():
        raise UsageError(f"{path}: holds {int((~np.isfinite(data)).sum()):,} NaN or infinite values; "
                         "it is not a usable weights file")
    values = torch.from_numpy(data)
    at = 0

    def take(t: torch.Tensor) -> None:
        nonlocal at
        with torch.no_grad():
            t.copy_(values[at:at + t.numel()].view_as(t))
        at += t.numel()

    for conv, bn in convs:
        if bn is not None:
            for t in (bn.bias, bn.weight, bn.running_mean, bn.running_var):  # beta, gamma, mean, var
                take(t)
        else:
            take(conv.bias)
        take(conv.weight)
    assert at == count


def read_yolov3(path: str | Path) -> tuple[YoloV3, str, DarknetHeader]:
    """The 80-class full-size YoloV3 from ``yolov3.weights`` (part "full") or with only its
    backbone from ``darknet53.conv.74`` (part "backbone"), told apart by the file's size."""
    header = read_header(path)
    model = YoloV3(num_classes=COCO_CLASSES)
    parts = {"full": model.convolutions(), "backbone": model.convolutions("backbone")}
    counts = {"full": float_count(parts["full"]), "backbone": float_count(parts["backbone"])}
    actual = os.path.getsize(path)
    for part, count in counts.items():
        if actual == header.nbytes + 4 * count:
            _fill(path, header, parts[part], count)
            return model, part, header
    raise _size_problem(path, header, {"yolov3.weights: 80-class YOLOv3": counts["full"],
                                       "darknet53.conv.74: Darknet-53 backbone": counts["backbone"]}, actual)


def thing_class_sources(thing_names: list[str]) -> list[tuple[int, float]]:
    """For each of our detection classes (in ``thing_names`` order): the COCO class its row is
    copied from and the offset added to its logit's bias."""
    out = []
    for name in thing_names:
        if name in COCO_INDEX:
            out.append((COCO_INDEX[name], 0.0))
        elif name == "rider":
            out.append((COCO_INDEX[RIDER_SOURCE], -RIDER_LOGIT_OFFSET))
        else:
            raise UsageError(f"detection class {name!r} has no COCO class to start from")
    return out


def transfer_coco(source: YoloV3, target: YoloV3, thing_names: list[str], detection: bool = True) -> int:
    """Copy ``source`` (80 COCO classes) into ``target`` (``len(thing_names)`` classes, same width
    and depth): every tensor as it is, except the three output layers, whose per-anchor class rows
    are picked by ``thing_class_sources``. With ``detection`` False only the backbone is copied
    (from darknet53.conv.74, the detection layers hold no trained values). Returns the number
    of tensors copied."""
    if (target.width, target.depth) != (source.width, source.depth):
        raise UsageError(f"Darknet weights fit width {source.width} and depth {source.depth}; the spec's "
                         f"network has width {target.width} and depth {target.depth} (use the full spec)")
    if target.num_classes != len(thing_names):
        raise UsageError(f"the spec's detector has {target.num_classes} classes, expected {len(thing_names)}")
    src = source.state_dict()
    dst = target.state_dict()
    outputs = {id(conv) for conv, bn in target.convolutions() if bn is None}
    out_names = {f"{name}.{p}" for name, m in target.named_modules() if id(m) in outputs for p in ("weight", "bias")}
    rows = _output_rows(thing_class_sources(thing_names))
    copied = 0
    for name in dst:
        if not detection and not name.startswith("backbone."):
            continue
        if name in out_names:
            value = src[name][rows[0]].clone()
            if name.endswith(".bias"):
                value += rows[1]
        else:
            value = src[name]
        if value.shape != dst[name].shape:
            raise UsageError(f"Darknet tensor {name} {tuple(value.shape)} does not fit {tuple(dst[name].shape)}")
        dst[name] = value.clone()
        copied += 1
    target.load_state_dict(dst)
    return copied


def _output_rows(sources: list[tuple[int, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices into an 80-class output layer for a ``len(sources)``-class one, and the bias
    offset of each row (Darknet's layout: per anchor, 4 box values, objectness, class logits)."""
    src_fields, dst_fields = BOX_FIELDS + COCO_CLASSES, BOX_FIELDS + len(sources)
    index, offset = [], []
    for a in range(NUM_ANCHORS):
        index += [a * src_fields + k for k in range(BOX_FIELDS)]
        offset += [0.0] * BOX_FIELDS
        for coco, shift in sources:
            index.append(a * src_fields + BOX_FIELDS + coco)
            offset.append(shift)
    assert len(index) == NUM_ANCHORS * dst_fields
    return torch.tensor(index), torch.tensor(offset)
