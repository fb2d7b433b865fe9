"""How numbers read in the replay report and its plots."""
from __future__ import annotations

import math


def pct(v: float | None) -> str:
    """A fraction as percent with one decimal; '-' for None or NaN."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def ms(v: float | None) -> str:
    return "-" if v is None else f"{1000 * v:.1f}"
