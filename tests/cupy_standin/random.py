"""``cupy.random`` of the stand-in: ``default_rng`` and CuPy 14's ``Generator`` methods only."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.cupy_standin._core import wrap

__all__ = ["Generator", "default_rng"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

# the distributions cupy.random.Generator (cupy/random/_generator_api.pyx) defines; numpy's
# normal, permutation, choice, shuffle, ... are not among them
_DISTRIBUTIONS = (
    "beta", "binomial", "chisquare", "dirichlet", "exponential", "f", "gamma", "geometric",
    "hypergeometric", "logseries", "poisson", "power", "standard_exponential", "standard_gamma",
)  # fmt: skip


class Generator:
    """Draws on the device, like ``cupy.random.Generator``.

    Backed by numpy's Philox bit generator, so its numbers differ from numpy's default (PCG64)
    for the same seed, as CuPy's XORWOW numbers do: a test cannot pass by accident because the two
    backends drew the same values.
    """

    def __init__(self, seed: Any):
        self._g = np.random.Generator(np.random.Philox(seed))

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        """Uniform [0, 1) floats; float32 or float64 only, as CuPy."""
        dt = np.dtype(dtype)
        if dt not in _FLOATS:
            raise TypeError(f"Unsupported dtype {dt.name} for random")
        if out is not None:
            raise NotImplementedError("the stand-in does not take out=")
        return wrap(np.asarray(self._g.random(size, dtype=dt)))

    def standard_normal(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        """N(0, 1) floats; float32 or float64 only, as CuPy."""
        dt = np.dtype(dtype)
        if dt not in _FLOATS:
            raise TypeError(f"Unsupported dtype {dt.name} for standard_normal")
        if out is not None:
            raise NotImplementedError("the stand-in does not take out=")
        return wrap(np.asarray(self._g.standard_normal(size, dtype=dt)))

    def uniform(
        self, low: float = 0.0, high: float = 1.0, size: Any = None, dtype: Any = np.float64
    ):
        """U[low, high) floats (scalar bounds only in the stand-in)."""
        u = self._g.uniform(float(low), float(high), size)
        return wrap(np.asarray(u).astype(dtype, copy=False))

    def integers(self, low: int, high: int | None = None, size: Any = None, dtype: Any = np.int64,
                 endpoint: bool = False) -> Any:  # fmt: skip
        """Uniform integers in [low, high) (or [low, high] with ``endpoint``)."""
        return wrap(np.asarray(self._g.integers(low, high, size, dtype=dtype, endpoint=endpoint)))

    def __getattr__(self, name: str) -> Any:
        if name in _DISTRIBUTIONS:
            method = getattr(self._g, name)
            return lambda *a, **k: wrap(np.asarray(method(*a, **k)))
        raise AttributeError(f"'cupy.random.Generator' object has no attribute {name!r}")


def default_rng(seed: Any = None) -> Generator:
    """A new :class:`Generator` (CuPy: int, array of ints, SeedSequence or None)."""
    if isinstance(seed, Generator):
        return seed
    return Generator(seed)
