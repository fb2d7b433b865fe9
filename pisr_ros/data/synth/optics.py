"""The camera's side of the picture: material texture, vignetting, exposure, white balance,
gamma, blur and sensor noise over the painted scene."""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from pisr_ros.data.synth.labels import (
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    FENCE,
    MOTORCYCLE,
    PARKING,
    PERSON,
    RIDER,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    TRAIN,
    TRUCK,
    VEGETATION,
    WALL,
)

if TYPE_CHECKING:  # the scene is passed in; importing it here would be circular
    from pisr_ros.data.synth.street import Street


def finish(scene: Street) -> np.ndarray:
    r, cam = scene.rng, scene.cam
    img = scene.cv.image
    labels = scene.cv.labels
    H, W = cam.H, cam.W
    scale = W / 2048
    noise = _noise_fields(scene, H, W, scale)
    amp = _TEXTURE * r.uniform(0.6, 1.4, size=(1, 4)).astype(np.float32)
    tex = np.ones((H, W), np.float32)
    for i, field in enumerate(noise):
        tex += amp[labels, i] * field
    sky = labels == SKY
    clouds = np.clip(noise[3] - 0.3, 0, None) * r.uniform(0, 50)  # sparse puffs, not a speckle
    img *= tex[..., None]
    img[sky] += clouds[sky, None]
    # Optics and lighting: vignetting, exposure, contrast, white balance, gamma, blur.
    yy, xx = np.ogrid[:H, :W]
    rad2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
    img *= (1 - r.uniform(0.0, 0.25) * rad2 / 2).astype(np.float32)[..., None]
    gain = r.uniform(0.7, 1.25) * r.uniform(0.93, 1.07, 3)
    img *= gain.astype(np.float32)
    contrast = r.uniform(0.75, 1.15)
    img[:] = (img - 110) * contrast + 110
    np.clip(img, 0, 255, out=img)
    gamma = r.uniform(0.85, 1.2)
    img[:] = 255.0 * (img / 255.0) ** gamma
    sigma = r.uniform(0.4, 1.0) * max(scale * 1.5, 0.35)  # optics: never razor sharp
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += r.standard_normal((H, W, 3), dtype=np.float32) * np.float32(r.uniform(1.0, 4.0))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _noise_fields(scene: Street, H, W, scale):
    """Pixel noise and blotches at 4, 16 and 64 (Cityscapes-resolution) pixels."""
    r = scene.rng
    fields = [r.standard_normal((H, W), dtype=np.float32)]
    for cell in (4, 16, 64):
        c = max(cell * scale, 1.0)
        small = r.standard_normal((max(int(H / c), 2), max(int(W / c), 2)), dtype=np.float32)
        fields.append(cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC))
    return fields


def _texture_table() -> np.ndarray:
    """Per-labelId amplitude of the 4 noise fields: how grainy and blotchy each material is."""
    t = np.full((256, 4), 0.02, np.float32)
    t[:, 0] = 0.03
    t[ROAD] = (0.04, 0.03, 0.025, 0.04)
    t[SIDEWALK] = (0.04, 0.04, 0.03, 0.03)
    t[PARKING] = t[ROAD]
    t[BUILDING] = (0.025, 0.025, 0.025, 0.03)
    t[WALL] = (0.04, 0.04, 0.03, 0.03)
    t[FENCE] = (0.05, 0.04, 0.02, 0.02)
    t[VEGETATION] = (0.1, 0.16, 0.08, 0.04)
    t[TERRAIN] = (0.08, 0.1, 0.06, 0.05)
    t[SKY] = (0.004, 0.004, 0.006, 0.01)
    for thing in (PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE):
        t[thing] = (0.02, 0.015, 0.01, 0.01)
    return t


_TEXTURE = _texture_table()
