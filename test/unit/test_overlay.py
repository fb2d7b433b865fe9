"""overlay() against a per-pixel loop written from its definition."""
import numpy as np
import pytest

from pisr_ros.overlay import OUTLINE_BGR, overlay
from pisr_ros.panoptic import encode, semantic_of
from pisr_ros.taxonomy import IS_THING, NUM_CLASSES, TRAIN_COLORS


def random_ids(rng, h, w):
    """Blocky id maps (as a network's map resized up) with void, stuff and several instances."""
    choices = [-1]
    for cls in range(NUM_CLASSES):
        choices += [encode(cls, k) for k in ((1, 2, 3) if IS_THING[cls] else (0,))]
    small = rng.choice(np.array(choices, np.int32), size=(h // 2, w // 2))
    return np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)


def reference(image_bgr, id_map, alpha):
    h, w = id_map.shape
    out = np.zeros((h, w, 3), np.uint8)
    for y in range(h):
        for x in range(w):
            cls = 255 if id_map[y, x] < 0 else id_map[y, x] // 1000
            colour = TRAIN_COLORS[cls][::-1].astype(np.float64)  # RGB table, BGR image
            out[y, x] = np.clip(np.rint(alpha * colour + (1 - alpha) * image_bgr[y, x]), 0, 255)
            thing = cls != 255 and IS_THING[cls]
            for ny, nx in ((y, x + 1), (y + 1, x)):
                if ny < h and nx < w and id_map[ny, nx] != id_map[y, x]:
                    other = id_map[ny, nx]
                    if thing or (other >= 0 and IS_THING[other // 1000]):
                        out[y, x] = OUTLINE_BGR
    return out


@pytest.mark.parametrize("alpha", [0.5, 0.25, 1.0])
def test_overlay_equals_the_reference(alpha):
    rng = np.random.default_rng(3)
    for _ in range(3):
        ids = random_ids(rng, 24, 40)
        image = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
        got = overlay(image, semantic_of(ids), ids, alpha)
        assert got.dtype == np.uint8 and got.shape == image.shape
        np.testing.assert_array_equal(got, reference(image, ids, alpha))


def test_outline_only_around_things():
    ids = np.zeros((8, 8), np.int32)  # road (stuff)
    ids[:, 4:] = encode(8, 0)  # vegetation (stuff): a stuff-stuff border has no outline
    image = np.zeros((8, 8, 3), np.uint8)
    assert not (overlay(image, semantic_of(ids), ids) == 255).all(axis=2).any()
    ids[2:4, 1:3] = encode(13, 1)  # a car
    white = (overlay(image, semantic_of(ids), ids) == 255).all(axis=2)
    assert white[2:4, 2].all() and white[3, 1:3].all() and white[1, 1:3].all() and white[2:4, 0].all()
    assert white.sum() == 7  # the car's right and lower rim, and the pixels left of and above it
