"""The image and its two label maps, painted together so they cannot disagree; cv2 drawing in
fixed point."""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from pisr_ros.data.synth.colours import shaded
from pisr_ros.data.synth.shapes import FACE_LIGHT, FACES

if TYPE_CHECKING:
    from pisr_ros.data.synth.camera import Camera


# cv2 drawing with 4 fractional bits keeps thin far-away shapes from snapping to whole pixels.
_SHIFT = 4
_ONE = 1 << _SHIFT


Tag = tuple  # (labelId, instanceIds value) or None for paint that leaves the labels alone


def _fixed(points: np.ndarray) -> np.ndarray:
    pts = np.clip(np.asarray(points, dtype=np.float64), -1e6, 1e6)
    return np.round(pts * _ONE).astype(np.int32).reshape(-1, 1, 2)


class Canvas:
    """The image and its two label maps, always painted together so they cannot disagree."""

    def __init__(self, cam: Camera):
        self.cam = cam
        self.image = np.zeros((cam.H, cam.W, 3), np.float32)
        self.labels = np.zeros((cam.H, cam.W), np.uint8)
        self.instances = np.zeros((cam.H, cam.W), np.uint16)
        self._next_k: dict[int, int] = {}

    def thing(self, label: int) -> Tag:
        """A new instance of thing class ``label``; k counts from 0 like Cityscapes."""
        k = self._next_k.get(label, 0)
        self._next_k[label] = k + 1
        return (label, label * 1000 + k)

    @staticmethod
    def stuff(label: int) -> Tag:
        return (label, label)

    def _label(self, draw, tag: Tag | None):
        if tag is not None:
            draw(self.labels, int(tag[0]))
            draw(self.instances, int(tag[1]))

    def polys(self, polys: list[np.ndarray], colour, tag: Tag | None = None):
        if not polys:
            return
        pts = [_fixed(p) for p in polys]
        colour = tuple(float(c) for c in colour)
        cv2.fillPoly(self.image, pts, colour, cv2.LINE_8, _SHIFT)
        self._label(lambda a, v: cv2.fillPoly(a, pts, v, cv2.LINE_8, _SHIFT), tag)

    def poly(self, poly: np.ndarray, colour, tag: Tag | None = None):
        self.polys([poly], colour, tag)

    def line(self, p0, p1, width_px: float, colour, tag: Tag | None = None):
        a, b = _fixed(p0).reshape(2), _fixed(p1).reshape(2)
        a, b = (int(a[0]), int(a[1])), (int(b[0]), int(b[1]))
        t = max(1, int(round(width_px)))
        colour = tuple(float(c) for c in colour)
        cv2.line(self.image, a, b, colour, t, cv2.LINE_8, _SHIFT)
        self._label(lambda arr, v: cv2.line(arr, a, b, v, t, cv2.LINE_8, _SHIFT), tag)

    def label_only(self, poly: np.ndarray, tag: Tag):
        """Labels without paint: a bicycle wheel is the bicycle, though the image shows through it."""
        pts = [_fixed(poly)]
        self._label(lambda a, v: cv2.fillPoly(a, pts, v, cv2.LINE_8, _SHIFT), tag)

    def outline(self, poly: np.ndarray, width_px: float, colour):
        t = max(1, int(round(width_px)))
        cv2.polylines(self.image, [_fixed(poly)], True, tuple(float(c) for c in colour), t, cv2.LINE_8, _SHIFT)

    def _roi_mask(self, poly: np.ndarray):
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        x0 = max(int(np.floor(pts[:, 0].min())), 0)
        y0 = max(int(np.floor(pts[:, 1].min())), 0)
        x1 = min(int(np.ceil(pts[:, 0].max())) + 1, self.cam.W)
        y1 = min(int(np.ceil(pts[:, 1].max())) + 1, self.cam.H)
        if x1 <= x0 or y1 <= y0:
            return None
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [_fixed(pts - [x0, y0])], 1, cv2.LINE_8, _SHIFT)
        return (slice(y0, y1), slice(x0, x1)), mask.astype(bool)

    def blend(self, poly: np.ndarray, colour, alpha: float, tag: Tag | None = None):
        """See-through paint (fences, shadows): mixes ``colour`` into what is already there."""
        roi = self._roi_mask(poly)
        if roi is None:
            return
        (sy, sx), mask = roi
        patch = self.image[sy, sx]
        patch[mask] = patch[mask] * (1 - alpha) + np.asarray(colour, np.float32) * alpha
        if tag is not None:
            self.labels[sy, sx][mask] = tag[0]
            self.instances[sy, sx][mask] = tag[1]

    def darken(self, poly: np.ndarray, factor: float):
        roi = self._roi_mask(poly)
        if roi is not None:
            (sy, sx), mask = roi
            self.image[sy, sx][mask] *= factor

    def hexa(self, corners: np.ndarray, colour, tag: Tag | None, light=None):
        """Paints the faces of a convex hexahedron that face the camera."""
        light = FACE_LIGHT if light is None else light
        centre = corners.mean(axis=0)
        eye = np.array([0.0, self.cam.h, 0.0])
        faces = {}
        for name, idx in FACES.items():
            quad = corners[list(idx)]
            n = np.cross(quad[1] - quad[0], quad[3] - quad[0])
            mid = quad.mean(axis=0)
            if np.dot(n, mid - centre) < 0:
                n = -n
            if np.dot(n, eye - mid) > 1e-9:
                self.poly(self.cam.project(*quad.T), shaded(colour, light[name]), tag)
                faces[name] = quad
        return faces
