"""The picture people look at in RViz: class colours over the camera image, instance outlines."""
from __future__ import annotations

import cv2
import numpy as np

from pisr_ros.panoptic import LABEL_DIVISOR
from pisr_ros.taxonomy import TRAIN_COLORS

# trainId -> BGR; void (255) is black, so gaps in the labels show as darkened image.
_BGR_LUT = np.ascontiguousarray(TRAIN_COLORS[:, ::-1])
OUTLINE_BGR = (255, 255, 255)


def overlay(image_bgr: np.ndarray, semantic: np.ndarray, id_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """HxWx3 uint8 BGR: ``alpha`` x class colour + (1 - alpha) x image, with a one-pixel white
    outline where one thing instance meets anything else. ``semantic`` (uint8 trainIds, 255
    void) and ``id_map`` have the image's size."""
    colours = _BGR_LUT[semantic]
    out = cv2.addWeighted(colours, float(alpha), np.ascontiguousarray(image_bgr), 1.0 - float(alpha), 0.0)
    things = id_map % LABEL_DIVISOR > 0  # k >= 1; void (-1) % 1000 = 999 is excluded below
    things &= id_map >= 0
    edge = np.zeros(id_map.shape, bool)
    # A pixel is on the outline when its right or lower neighbour has another id and either is a thing.
    edge[:, :-1] |= (id_map[:, :-1] != id_map[:, 1:]) & (things[:, :-1] | things[:, 1:])
    edge[:-1, :] |= (id_map[:-1, :] != id_map[1:, :]) & (things[:-1, :] | things[1:, :])
    out[edge] = OUTLINE_BGR
    return out
