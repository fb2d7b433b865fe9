"""The picture people look at in RViz: class colours over the camera image, instance outlines."""
from __future__ import annotations

import cv2
import numpy as np

from pisr_ros.taxonomy import IS_THING, TRAIN_COLORS

OUTLINE_BGR = (255, 255, 255)
# Lookup tables over all 256 uint8 values, for cv2.LUT: trainId -> BGR (void 255 black, so gaps
# in the labels show as darkened image) and trainId -> "is a thing class".
_BGR_LUT = np.zeros((256, 1, 3), np.uint8)
_BGR_LUT[:len(TRAIN_COLORS), 0] = TRAIN_COLORS[:, ::-1]
_THING_LUT = np.zeros(256, np.uint8)
_THING_LUT[:len(IS_THING)] = IS_THING


def overlay(image_bgr: np.ndarray, semantic: np.ndarray, id_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """HxWx3 uint8 BGR: ``alpha`` x class colour + (1 - alpha) x image, with a one-pixel white
    outline where one thing instance meets anything else. ``semantic`` (uint8 trainIds, 255
    void) is the class part of ``id_map``; both have the image's size.

    Table lookups in cv2 and one scatter of the outline pixels: at 1024x2048 this takes ~7 ms
    where numpy's fancy indexing and boolean-mask assignment took 33 ms (docs/panoptic_node.md).
    """
    colours = cv2.LUT(cv2.cvtColor(semantic, cv2.COLOR_GRAY2BGR), _BGR_LUT)
    out = cv2.addWeighted(colours, float(alpha), np.ascontiguousarray(image_bgr), 1.0 - float(alpha), 0.0)
    things = cv2.LUT(semantic, _THING_LUT).view(bool)
    edge = np.zeros(id_map.shape, bool)
    # A pixel is on the outline when its right or lower neighbour has another id and either is a thing.
    edge[:, :-1] |= (id_map[:, :-1] != id_map[:, 1:]) & (things[:, :-1] | things[:, 1:])
    edge[:-1, :] |= (id_map[:-1, :] != id_map[1:, :]) & (things[:-1, :] | things[1:, :])
    out.reshape(-1, 3)[np.flatnonzero(edge)] = OUTLINE_BGR
    return out
