"""``cupy.linalg`` of the stand-in: what lpfa uses (``pinv`` counts a device sync)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.cupy_standin._core import call, counter

__all__ = ["inv", "norm", "pinv", "solve"]


def pinv(a: Any, rcond: float = 1e-15) -> Any:
    """Moore-Penrose pseudoinverse; a sync, as CuPy's SVD-based ``pinv`` reads the rank back."""
    counter.sync("linalg.pinv")
    return call(np.linalg.pinv, "linalg.pinv", (a,), {"rcond": rcond})


def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    """Matrix or vector norm (a 0-d device array for a full reduction)."""
    return call(
        np.linalg.norm, "linalg.norm", (x,), {"ord": ord, "axis": axis, "keepdims": keepdims}
    )


def inv(a: Any) -> Any:
    """Matrix inverse."""
    return call(np.linalg.inv, "linalg.inv", (a,), {})


def solve(a: Any, b: Any) -> Any:
    """Solution of a x = b."""
    return call(np.linalg.solve, "linalg.solve", (a, b), {})
