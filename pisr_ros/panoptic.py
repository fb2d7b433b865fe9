"""Panoptic ids, segments and the result every model produces.

Id convention (detectron2's): ``trainId * LABEL_DIVISOR + k`` with k = 1, 2, ... for the
instances of a thing class, k = 0 for a stuff segment, and ``VOID_ID`` (-1) for void. Void is
not 255000, which some evaluators confuse with road (trainId 0).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pisr_ros.taxonomy import IS_THING, NUM_CLASSES, TRAIN_TO_LABEL, VOID_TRAIN_ID

LABEL_DIVISOR = 1000
VOID_ID = -1


def encode(train_id, k=0):
    """Panoptic id(s) of class ``train_id``, instance ``k`` (0 for stuff). Works on arrays."""
    train_id = np.asarray(train_id)
    k = np.asarray(k)
    if np.any((train_id < 0) | (train_id >= NUM_CLASSES)):
        raise ValueError(f"trainId out of range 0..{NUM_CLASSES - 1}")
    if np.any((k < 0) | (k >= LABEL_DIVISOR)):
        raise ValueError(f"instance index out of range 0..{LABEL_DIVISOR - 1}")
    if np.any(IS_THING[train_id] & (k == 0)):
        raise ValueError("thing classes need an instance index k >= 1")
    if np.any(~IS_THING[train_id] & (k != 0)):
        raise ValueError("stuff classes take instance index k = 0")
    out = train_id.astype(np.int32) * LABEL_DIVISOR + k.astype(np.int32)
    return int(out) if out.ndim == 0 else out


def decode(ids):
    """(trainId, k) of panoptic id(s); void (-1) decodes to (255, 0)."""
    ids = np.asarray(ids, dtype=np.int64)
    void = ids < 0
    train_id = np.where(void, VOID_TRAIN_ID, ids // LABEL_DIVISOR)
    k = np.where(void, 0, ids % LABEL_DIVISOR)
    if train_id.ndim == 0:
        return int(train_id), int(k)
    return train_id.astype(np.int32), k.astype(np.int32)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each of ``n_out`` output positions when resizing ``n_in`` positions by
    nearest neighbour at pixel centres (the sampling of ``resize_nearest``)."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.intp), n_in - 1)


def resize_nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``a`` (HxW, any dtype) resized to ``size`` (H, W) by nearest neighbour at pixel centres.

    Index arithmetic rather than cv2: exact for int32 ids on every build, and centre sampling
    does not shift the map by half a pixel as floor sampling does. Rows first, then columns:
    two gathers along one axis each are about twice as fast as one 2-D fancy index.
    """
    h, w = size
    if a.shape[:2] == (h, w):
        return a
    if a.ndim == 2 and h % a.shape[0] == 0 and w % a.shape[1] == 0:
        # Whole-number factors (the network's grid to the camera's): output pixel i samples
        # source i // k. Each source row is widened once, then copied whole into its ky output
        # rows: long contiguous copies (128x256 -> 1024x2048: int32 0.28 ms, uint8 0.11 ms,
        # against 1.09 and 1.33 ms for one broadcast copy element by element, median of 50).
        ky, kx = h // a.shape[0], w // a.shape[1]
        rows = np.repeat(a, kx, axis=1) if kx > 1 else a
        out = np.empty((a.shape[0], ky, w), a.dtype)
        out[...] = rows[:, None, :]
        return out.reshape(h, w)
    rows = a if a.shape[0] == h else np.take(a, nearest_indices(a.shape[0], h), axis=0)
    return rows if a.shape[1] == w else np.take(rows, nearest_indices(a.shape[1], w), axis=1)


def semantic_of(id_map: np.ndarray) -> np.ndarray:
    """The trainId map (uint8, 255 void) of a panoptic id map."""
    return np.where(id_map < 0, VOID_TRAIN_ID, id_map // LABEL_DIVISOR).astype(np.uint8)


@dataclass(frozen=True)
class Segment:
    """One non-void id of an id map, with the statistics the instance message carries."""

    id: int
    class_id: int  # trainId
    is_thing: bool
    area: int  # pixels
    bbox: tuple[int, int, int, int]  # x, y, width, height (pixels, inclusive extent)
    centroid: tuple[float, float]  # x, y (pixel centres)
    score: float = 1.0


def segments_of(id_map: np.ndarray, confidence: np.ndarray | None = None,
                size: tuple[int, int] | None = None) -> list[Segment]:
    """Every non-void segment of ``id_map``, sorted by id, without Python loops over pixels.

    ``score`` is the mean of ``confidence`` (same shape as ``id_map``) over the segment when
    given, else 1.0. With ``size`` (H, W), the segments are those of
    ``resize_nearest(id_map, size)`` (scored on ``resize_nearest(confidence, size)``), exactly,
    but computed on the small map: each source pixel stands for the block of output pixels
    that sample it. A network's 128x256 map resized to a 1024x2048 camera frame costs 64x less.
    """
    if id_map.ndim != 2:
        raise ValueError(f"id map must be HxW, got shape {id_map.shape}")
    if confidence is not None and confidence.shape != id_map.shape:
        raise ValueError(f"confidence {confidence.shape} must have the id map's shape {id_map.shape}")
    h, w = id_map.shape
    out_h, out_w = size if size is not None else (h, w)
    if id_map.size == 0 or out_h == 0 or out_w == 0:
        return []
    # Per source row: how many output rows sample it, the sum of their indices, the first and
    # the last of them (identity when not resizing).
    src_rows, src_cols = nearest_indices(h, out_h), nearest_indices(w, out_w)
    row_n = np.bincount(src_rows, minlength=h).astype(np.float64)
    col_n = np.bincount(src_cols, minlength=w).astype(np.float64)
    row_sum = np.bincount(src_rows, weights=np.arange(out_h, dtype=np.float64), minlength=h)
    col_sum = np.bincount(src_cols, weights=np.arange(out_w, dtype=np.float64), minlength=w)
    row_first = np.full(h, -1, np.intp)
    row_first[src_rows[::-1]] = np.arange(out_h)[::-1]
    row_last = np.full(h, -1, np.intp)
    row_last[src_rows] = np.arange(out_h)
    col_first = np.full(w, -1, np.intp)
    col_first[src_cols[::-1]] = np.arange(out_w)[::-1]
    col_last = np.full(w, -1, np.intp)
    col_last[src_cols] = np.arange(out_w)
    # Ids are small (< NUM_CLASSES * LABEL_DIVISOR), so a histogram over id + 1 finds the
    # segments and a lookup table numbers them: no sort of the image, unlike np.unique.
    shifted = id_map.ravel().astype(np.intp) + 1  # void (-1) -> 0
    if shifted.min() < 0 or shifted.max() > NUM_CLASSES * LABEL_DIVISOR:
        raise ValueError(f"id map holds ids outside -1..{NUM_CLASSES * LABEL_DIVISOR - 1}")
    present = np.flatnonzero(np.bincount(shifted))
    n = len(present)
    lut = np.zeros(present[-1] + 1, dtype=np.intp)
    lut[present] = np.arange(n)
    inverse = lut[shifted]
    pixel_rows = np.repeat(np.arange(h, dtype=np.intp), w)
    pixel_cols = np.tile(np.arange(w, dtype=np.intp), h)
    # Output pixels per segment and source row / column; a source pixel weighs row_n * col_n.
    weight = np.outer(row_n, col_n).ravel()
    row_hist = np.bincount(inverse * h + pixel_rows, weights=weight, minlength=n * h).reshape(n, h)
    col_hist = np.bincount(inverse * w + pixel_cols, weights=weight, minlength=n * w).reshape(n, w)
    area = row_hist.sum(1)
    safe = np.maximum(area, 1)
    # Mean output row: each source row contributes the mean index of the rows that sample it.
    cy = row_hist @ (row_sum / np.maximum(row_n, 1)) / safe
    cx = col_hist @ (col_sum / np.maximum(col_n, 1)) / safe
    row_any = row_hist > 0
    col_any = col_hist > 0
    y0 = row_first[row_any.argmax(1)]
    y1 = row_last[h - 1 - row_any[:, ::-1].argmax(1)]
    x0 = col_first[col_any.argmax(1)]
    x1 = col_last[w - 1 - col_any[:, ::-1].argmax(1)]
    if confidence is not None:
        score = np.bincount(inverse, weights=confidence.ravel() * weight, minlength=n) / safe
    else:
        score = np.ones(n)
    out = []
    for i, seg_id in enumerate((present - 1).tolist()):
        if seg_id < 0 or area[i] == 0:  # void, or only in source pixels no output pixel samples
            continue
        cls = seg_id // LABEL_DIVISOR
        out.append(
            Segment(
                id=seg_id,
                class_id=cls,
                is_thing=bool(IS_THING[cls]),
                area=int(round(area[i])),
                bbox=(int(x0[i]), int(y0[i]), int(x1[i] - x0[i] + 1), int(y1[i] - y0[i] + 1)),
                centroid=(float(cx[i]), float(cy[i])),
                score=float(score[i]),
            )
        )
    return out


@dataclass
class PanopticResult:
    """What a model makes of one image."""

    id_map: np.ndarray  # HxW int32, trainId*1000+k, -1 void
    confidence: np.ndarray | None = None  # HxW float32 in [0, 1]
    segments: list[Segment] = field(default=None)  # filled from id_map when not given
    # semantic_of(id_map), when the producer made it more cheaply (e.g. on a smaller map).
    semantic_map: np.ndarray | None = field(default=None, repr=False)
    # HxW uint8 trainIds of the model's semantic head before merging, when asked for: unlike
    # ``semantic`` it keeps thing pixels that joined no instance and stuff below the area
    # threshold, so semantic mIoU is scored on it.
    semantic_head: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.id_map.ndim != 2 or self.id_map.dtype != np.int32:
            raise ValueError(f"id_map must be HxW int32, got {self.id_map.shape} {self.id_map.dtype}")
        if self.segments is None:
            self.segments = segments_of(self.id_map, self.confidence)

    @property
    def semantic(self) -> np.ndarray:
        """HxW uint8 trainIds of the panoptic segments (255 void)."""
        if self.semantic_map is None:
            self.semantic_map = semantic_of(self.id_map)
        return self.semantic_map


def to_cityscapes_panoptic(id_map: np.ndarray, scores: Mapping[int, float] | None = None
                           ) -> tuple[np.ndarray, list[dict]]:
    """An id map as a Cityscapes/COCO panoptic PNG (HxWx3 RGB uint8) and its ``segments_info``.

    PNG id = R + 256 G + 256^2 B, 0 = void; ``category_id`` is the Cityscapes labelId. Segment ids
    are labelId*1000+k for things and labelId for stuff, as in Cityscapes' own ground truth.
    ``scores`` (id map id -> confidence) adds a ``score`` to those segments (box AP ranks by it).
    """
    train_id, k = decode(id_map)
    void = id_map < 0
    png_id = np.where(void, 0, TRAIN_TO_LABEL[np.where(void, 0, train_id)].astype(np.int64) * LABEL_DIVISOR + k)
    # Stuff: labelId alone (k == 0 gives labelId*1000; Cityscapes writes plain labelId).
    png_id = np.where(~void & (k == 0), png_id // LABEL_DIVISOR, png_id)
    rgb = np.stack([png_id % 256, (png_id // 256) % 256, png_id // 65536], axis=-1).astype(np.uint8)
    info = []
    for seg in segments_of(id_map):
        label_id = int(TRAIN_TO_LABEL[seg.class_id])
        sid = label_id * LABEL_DIVISOR + seg.id % LABEL_DIVISOR if seg.is_thing else label_id
        x, y, w, h = seg.bbox
        info.append(
            {"id": int(sid), "category_id": label_id, "area": seg.area, "bbox": [x, y, w, h], "iscrowd": 0}
        )
        if scores is not None and seg.id in scores:
            info[-1]["score"] = float(scores[seg.id])
    return rgb, info


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of a COCO/Cityscapes panoptic PNG (HxWx3 RGB)."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
