"""Which scene is which: the synthetic cities of each split, the Cityscapes image id of a scene,
and the random generator that is all a scene depends on."""
from __future__ import annotations

import numpy as np

from pisr_ros import cityscapes_layout as layout

#: Synthetic cities per split; disjoint, like Cityscapes' own splits.
CITIES = {
    "train": ("alphaville", "betatown", "gammaburg", "deltaport"),
    "val": ("epsilonfield", "zetaheim"),
    "test": ("etacity",),
}

#: Cityscapes' annotated frame is the 20th of each 30-frame snippet.
FRAME = 19


_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZE = (1024, 2048)


def image_id_of(split: str, index: int) -> str:
    """The Cityscapes image id of scene ``index`` of ``split`` (cities take turns)."""
    cities = CITIES[split]
    return layout.image_id(cities[index % len(cities)], index // len(cities), FRAME)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_CODE[split], index])
