"""What a quantizer under test claims: its grid, decision points, symmetry and non-finite images.

Read from an lpfa format (which states these facts itself), from a grid of representable values,
or from nothing; the strategies aim their values at these claims and the contracts check them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lpfa.quant import Format

__all__ = ["Claims", "claims_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Claims:
    """What the contracts need to know about a quantizer, in float64 (values of ``dtype``)."""

    grid: np.ndarray | None  # sorted representable values; None: every float (Identity)
    thresholds: np.ndarray | None  # nearest-rounding decision points, len(grid) - 1
    odd: bool  # odd-symmetric for x != 0
    inf_image: tuple[float, float] | None  # q(+inf), q(-inf); None: saturate or pass through
    identity: bool = False
    overflows: bool = False  # overflows to inf/NaN beyond the grid: draw values within it


def claims_of(fmt: Format | None, grid: Any, dtype: Any, odd: bool | None = None) -> Claims:
    """The claims of a format (asked of the format), of a grid (midpoints), or of neither."""
    dt = np.dtype(dtype)
    if fmt is not None and grid is not None:
        raise ValueError("fmt and grid: give one of them (the grid of a format is grid(fmt))")
    if fmt is None:
        return _grid_claims(grid, dt, odd)
    if not isinstance(fmt, Format):
        raise ValueError(f"fmt={fmt!r}: must be an lpfa.quant format")
    if fmt.dynamic_scale is not None:
        raise ValueError(
            f"fmt={fmt!r}: check_quantizer needs a fixed scale (its grid depends on the data "
            "under a DynamicScale)"
        )
    odd = fmt.odd_symmetric if odd is None else odd
    up, down, _ = fmt.nonfinite(dt)
    if fmt.n_values is None:  # every float: the identity
        return Claims(grid=None, thresholds=None, odd=odd, inf_image=(up, down), identity=True)
    return Claims(
        grid=fmt.grid(dt).astype(np.float64),
        thresholds=fmt.decision_points(dt),
        odd=odd,
        inf_image=(up, down),
        overflows=not math.isfinite(up),
    )


def _grid_claims(grid: Any, dt: np.dtype, odd: bool | None) -> Claims:
    if grid is None:
        return Claims(grid=None, thresholds=None, odd=bool(odd), inf_image=None)
    g = np.unique(np.asarray(grid, dtype=dt)).astype(np.float64)
    g = g[np.isfinite(g)]
    if g.size == 0:
        raise ValueError("grid=[]: needs at least one finite value")
    symmetric = bool(np.array_equal(g, -g[::-1]))
    return Claims(
        grid=g,
        thresholds=(g[:-1] + g[1:]) / 2,
        odd=symmetric if odd is None else odd,
        inf_image=None,
    )
