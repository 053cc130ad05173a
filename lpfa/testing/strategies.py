"""Hypothesis strategies for quantizer tests: float arrays, values aimed at a format, formats.

Values follow the house rule ``floats(width=32, allow_nan=False, allow_infinity=False,
allow_subnormal=False)`` unless asked otherwise; :func:`format_values` adds the grid points and
decision points of a format, nudged by a few ulps, where rounding mistakes live.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lpfa import quant
from lpfa.quant import (
    DynamicScale,
    FixedPoint,
    Format,
    Identity,
    LogFormat,
    Minifloat,
    Sign,
    Ternary,
)
from lpfa.testing.claims import Claims, claims_of

__all__ = ["float_arrays", "format_values", "formats"]


def _finite(
    dtype: Any = np.float32, min_value: float | None = None, max_value: float | None = None
) -> st.SearchStrategy[float]:
    """``floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)``; width 16
    for float16. Bounds are rounded inward to that width."""
    width = 16 if np.dtype(dtype) == np.float16 else 32
    ft = np.float16 if width == 16 else np.float32

    def inward(v: float | None, up: bool) -> float | None:
        if v is None:
            return None
        w = ft(np.clip(v, -np.finfo(ft).max, np.finfo(ft).max))
        if (float(w) < v) if up else (float(w) > v):
            w = np.nextafter(w, ft(np.inf if up else -np.inf))
        return float(w)

    return st.floats(
        min_value=inward(min_value, True),
        max_value=inward(max_value, False),
        width=width,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=False,
    )


def float_arrays(
    dtype: Any = np.float32,
    *,
    elements: st.SearchStrategy | None = None,
    shape: tuple[int, ...] | st.SearchStrategy | None = None,
    min_dims: int = 0,
    max_dims: int = 3,
    min_side: int = 0,
    max_side: int = 6,
    min_value: float | None = None,
    max_value: float | None = None,
) -> st.SearchStrategy[np.ndarray]:
    """Numpy float arrays of finite, normal float32-representable values (or ``elements``).

    Parameters
    ----------
    dtype : numpy float dtype
        float16, float32 or float64 (the default values are float32 numbers, float16 for float16).
    elements : strategy, optional
        Element values; default ``floats(width=32, allow_nan=False, allow_infinity=False,
        allow_subnormal=False)`` within ``[min_value, max_value]``.
    shape : tuple or strategy, optional
        Default: any shape with ``min_dims..max_dims`` axes of ``min_side..max_side`` elements
        (empty arrays included when ``min_side`` is 0).
    """
    if elements is None:
        elements = _finite(dtype, min_value, max_value)
    if shape is None:
        shape = hnp.array_shapes(
            min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
        )
    return hnp.arrays(dtype, shape, elements=elements)


def _nudge(v: float, n: int, dtype: Any) -> float:
    """``v`` moved by ``n`` units in the last place of ``dtype`` (not into the subnormals)."""
    x = np.asarray(v, dtype=dtype)
    for _ in range(abs(n)):
        x = np.nextafter(x, np.asarray(np.inf if n > 0 else -np.inf, dtype=dtype))
    if x != 0 and abs(x) < np.finfo(dtype).smallest_normal:
        return float(np.asarray(v, dtype=dtype))
    return float(x)


def format_values(
    fmt: Format | None = None, *, grid: Any = None, dtype: Any = np.float32
) -> st.SearchStrategy[float]:
    """Values that exercise a format: uniform over 3x its range, its grid points and decision
    points nudged by up to 2 ulps (ties and boundaries), and values between its small levels.

    Parameters
    ----------
    fmt : Format, optional
        A fixed-scale format; or give ``grid``; with neither, floats in [-1e3, 1e3].
    grid : array-like, optional
        The representable values.
    dtype : numpy float dtype
        The values are exactly representable in it.
    """
    return _values(claims_of(fmt, grid, dtype), dtype)


def _values(spec: Claims, dtype: Any) -> st.SearchStrategy[float]:
    g = spec.grid
    if g is None:
        return _finite(dtype, -1e3, 1e3)
    top = float(np.max(np.abs(g)))
    limit = top if spec.overflows else 3 * top
    uniform = _finite(dtype, -limit, limit)
    marks = np.concatenate([g, spec.thresholds])
    marks = np.unique(marks[np.isfinite(marks)]).tolist()
    nudged = st.builds(partial(_nudge, dtype=dtype), st.sampled_from(marks), st.integers(-2, 2))
    nonzero = [v for v in g.tolist() if v != 0]
    if not nonzero:
        return st.one_of(uniform, nudged)
    between = st.builds(
        lambda v, j: _nudge(v * 0.75**j, 0, dtype), st.sampled_from(nonzero), st.integers(1, 6)
    )
    return st.one_of(uniform, nudged, between)


def formats(*, dynamic: bool = False) -> st.SearchStrategy[Format]:
    """Formats of every kind with small parameters (fixed scales unless ``dynamic``)."""
    alphas = st.sampled_from([1.0, 0.125, 2.0**-6, 0.3, 1.7, 4.0])
    scales: st.SearchStrategy = alphas
    if dynamic:
        scales = st.one_of(alphas, st.sampled_from(list(DynamicScale)))
    fixed = st.one_of(
        st.builds(
            FixedPoint,
            bits=st.integers(2, 10),
            step=st.sampled_from([1.0, 0.25, 0.1, 2.0**-6]),
            signed=st.booleans(),
        ),
        st.builds(FixedPoint, bits=st.integers(2, 10), full_scale=scales, signed=st.booleans()),
    )
    shifts: st.SearchStrategy = st.sampled_from([1.0, 2.0**-4, 8.0])  # Minifloat: powers of 2
    if dynamic:
        shifts = st.one_of(shifts, st.sampled_from(list(DynamicScale)))
    minifloats = st.one_of(
        st.sampled_from([quant.FP8_E4M3, quant.FP8_E5M2, quant.FP16, quant.BF16]),
        st.builds(
            Minifloat,
            exp_bits=st.integers(2, 5),
            man_bits=st.integers(0, 4),
            subnormals=st.booleans(),
            saturate=st.booleans(),
            scale=shifts,
        ),
    )
    return st.one_of(
        st.builds(LogFormat, bits=st.integers(1, 8), alpha=scales, flush_to_zero=st.booleans()),
        fixed,
        st.builds(Sign, scale=scales),
        st.builds(Ternary, threshold=st.sampled_from([0.0, 0.25, 0.5, 0.7]), scale=scales),
        minifloats,
        st.just(Identity()),
    )
