"""The class table: Cityscapes' 19 training classes, derived from cityscapesscripts' label table.

Everything the project knows about classes comes from here: names, trainIds, labelIds, which
classes are countable things, and their colours. The table is read from
``cityscapesscripts.helpers.labels`` rather than copied, so it cannot drift from the benchmark.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

#: Semantic void in trainId maps (the Cityscapes convention).
VOID_TRAIN_ID = 255
#: Void labelId in labelIds PNGs ("unlabeled").
VOID_LABEL_ID = 0


@dataclass(frozen=True)
class PanopticClass:
    train_id: int
    label_id: int
    name: str
    is_thing: bool
    color: tuple[int, int, int]  # RGB


def _training_classes() -> tuple[PanopticClass, ...]:
    rows = [lab for lab in _CITYSCAPES_LABELS if 0 <= lab.trainId < VOID_TRAIN_ID]
    rows.sort(key=lambda lab: lab.trainId)
    classes = tuple(
        PanopticClass(lab.trainId, lab.id, lab.name, bool(lab.hasInstances), tuple(lab.color))
        for lab in rows
    )
    if [c.train_id for c in classes] != list(range(len(classes))):
        raise RuntimeError("cityscapesscripts' label table no longer has contiguous trainIds")
    return classes


CLASSES: tuple[PanopticClass, ...] = _training_classes()
NUM_CLASSES = len(CLASSES)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
THING_TRAIN_IDS: tuple[int, ...] = tuple(c.train_id for c in CLASSES if c.is_thing)
STUFF_TRAIN_IDS: tuple[int, ...] = tuple(c.train_id for c in CLASSES if not c.is_thing)
#: Boolean mask over trainIds 0..NUM_CLASSES-1.
IS_THING = np.array([c.is_thing for c in CLASSES], dtype=bool)

#: Lookup tables; index with a uint8 map (or any ints in range) to convert a whole image.
#: trainId -> labelId; 255 (void) -> 0 (unlabeled).
TRAIN_TO_LABEL = np.full(256, VOID_LABEL_ID, dtype=np.uint8)
#: labelId -> trainId; labelIds without a training class -> 255.
LABEL_TO_TRAIN = np.full(256, VOID_TRAIN_ID, dtype=np.uint8)
#: trainId -> RGB colour; void is black.
TRAIN_COLORS = np.zeros((256, 3), dtype=np.uint8)
for _c in CLASSES:
    TRAIN_TO_LABEL[_c.train_id] = _c.label_id
    LABEL_TO_TRAIN[_c.label_id] = _c.train_id
    TRAIN_COLORS[_c.train_id] = _c.color

#: labelId -> RGB colour for every Cityscapes label (what gtFine_color.png uses).
LABEL_COLORS = np.zeros((256, 3), dtype=np.uint8)
for _lab in _CITYSCAPES_LABELS:
    if 0 <= _lab.id < 256:
        LABEL_COLORS[_lab.id] = _lab.color


def by_name(name: str) -> PanopticClass:
    """The training class called ``name`` (Cityscapes spelling, e.g. ``"traffic light"``)."""
    for c in CLASSES:
        if c.name == name:
            return c
    raise KeyError(f"no training class named {name!r}; known: {', '.join(CLASS_NAMES)}")


def by_label_id(label_id: int) -> PanopticClass:
    train_id = int(LABEL_TO_TRAIN[label_id]) if 0 <= label_id < 256 else VOID_TRAIN_ID
    if train_id == VOID_TRAIN_ID:
        raise KeyError(f"labelId {label_id} is not one of the {NUM_CLASSES} training classes")
    return CLASSES[train_id]
