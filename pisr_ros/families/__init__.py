"""Model families: everything that differs between Panoptic-DeepLab and YOLO-Panoptic, behind
one interface (``pisr_ros.families.base.ModelFamily``), looked up by the name in a spec's
``family:`` field.

    family = get_family("panoptic_deeplab")
    model = family.build_model(spec)
    heads = model(images)                                   # {name: tensor} per family.outputs(spec)
    batch = family.postprocess(heads, input_size, settings) # id maps: the same for every family

Everything after the network (Predictor, node, replay-eval, evaluator, grid) sees only the
family's post-processed id maps and ``PanopticResult``. Adding a family is a module that defines
a ``FAMILY`` object plus one line in ``BUILTIN``; tests and plug-ins may also ``register`` one.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping

from pisr_ros.errors import UsageError
from pisr_ros.families.base import FamilyBatch, HeadOutput, ModelFamily

DEFAULT_FAMILY = "panoptic_deeplab"  # specs and checkpoints written before `family:` existed

# name -> module defining FAMILY; imported on first use, so that naming a family costs nothing.
BUILTIN: dict[str, str] = {
    "panoptic_deeplab": "pisr_ros.families.panoptic_deeplab",
    "yolo_panoptic": "pisr_ros.families.yolo_panoptic",
}
_LOADED: dict[str, ModelFamily] = {}

__all__ = ["BUILTIN", "DEFAULT_FAMILY", "FamilyBatch", "HeadOutput", "ModelFamily", "family_names",
           "family_of", "get_family", "register", "unregister"]


def register(family: ModelFamily) -> ModelFamily:
    """Make ``family`` known under ``family.name`` (a plug-in, or a test's toy family)."""
    if not family.name or not isinstance(family.name, str):
        raise ValueError("a family needs a name")
    _LOADED[family.name] = family
    return family


def unregister(name: str) -> None:
    _LOADED.pop(name, None)


def family_names() -> list[str]:
    return sorted(set(BUILTIN) | set(_LOADED))


def get_family(name: str) -> ModelFamily:
    """The family called ``name``; UsageError naming the known ones otherwise."""
    if name in _LOADED:
        return _LOADED[name]
    if name not in BUILTIN:
        raise UsageError(f"unknown model family {name!r}; known: {', '.join(family_names())}")
    family = importlib.import_module(BUILTIN[name]).FAMILY
    _LOADED[name] = family
    return family


def family_of(spec) -> ModelFamily:
    """The family of a spec object or of a spec dict (``family`` absent: Panoptic-DeepLab)."""
    name = spec.get("family", DEFAULT_FAMILY) if isinstance(spec, Mapping) else getattr(spec, "family", DEFAULT_FAMILY)
    return get_family(name)
