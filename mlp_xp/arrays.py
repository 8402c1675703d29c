"""Tiny helpers shared by the namespace-generic modules."""

from __future__ import annotations

import math
from typing import Any

Array = Any
"""Any array of a library that follows the Array API standard."""


def size(a: Array) -> int:
    """Number of elements (``a.size`` is None for some lazy libraries)."""
    return math.prod(a.shape)
