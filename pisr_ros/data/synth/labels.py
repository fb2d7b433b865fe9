"""The Cityscapes labelIds the painter writes, by name, from cityscapesscripts' label table."""
from __future__ import annotations

from cityscapesscripts.helpers.labels import name2label


def _label(name: str) -> int:
    return name2label[name].id


UNLABELED, EGO, BORDER, STATIC, DYNAMIC, GROUND = (
    _label(n) for n in ("unlabeled", "ego vehicle", "rectification border", "static", "dynamic", "ground")
)
ROAD, SIDEWALK, PARKING, RAIL = (_label(n) for n in ("road", "sidewalk", "parking", "rail track"))
BUILDING, WALL, FENCE, GUARD_RAIL = (_label(n) for n in ("building", "wall", "fence", "guard rail"))
POLE, LIGHT, SIGN = (_label(n) for n in ("pole", "traffic light", "traffic sign"))
VEGETATION, TERRAIN, SKY = (_label(n) for n in ("vegetation", "terrain", "sky"))
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = (
    _label(n) for n in ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
)
