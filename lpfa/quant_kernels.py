"""The bit-level kernel of eq. 19 (Baldi et al. 2018) and the uniform draws of stochastic rounding.

These are the elementwise building blocks behind :func:`lpfa.quant.quantize`; they know nothing
of formats. :class:`LogKernel` rounds in the log domain on the float bit pattern, exactly (see
:class:`lpfa.quant.LogFormat`); device-specific fused kernels belong here, behind the same calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np

from lpfa.backend import get_xp

__all__ = ["CHUNK", "LogKernel", "log_kernel", "uniform"]

# numpy path of the log quantizer: elements per block, so that a block's temporaries stay in the
# L2 cache (4 arrays x 64 Ki x 4 B = 1 MiB for float32); whole arrays on other backends.
CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class LogKernel:
    """Eq. 19 with nearest rounding, on the bit pattern of one float dtype.

    ``out = s * sign(y) * clip(2^round_log2(|y|), low, high)`` with ``y = x / s``. Adding
    ``round_up`` to y's bit pattern carries into the exponent field exactly when the mantissa
    exceeds sqrt(2); masking the exponent field then gives |2^round(log2|y|)| as a float (the sign
    bit and any carry out of inf/NaN are masked away, and the result is never NaN); the clip of
    eq. 19 is then a float max and min; multiplying by sign(y) restores the sign and gives 0 -> 0,
    NaN -> NaN. With ``flush`` the lower clip sends values below ``low`` to 0 instead: adding and
    subtracting ``flush_add`` = low * 2^nmant, whose unit in the last place is ``low``, rounds
    every power of two below ``low`` to 0 and leaves ``low`` ... ``high`` exact (they are
    multiples of that unit, below ``flush_add``). Each step is one cheap ufunc (``np.sign``, the
    dearest, costs about three int or float additions).
    """

    int_type: Any  # numpy integer type of the dtype's width
    round_up: Any  # 2^nmant - (smallest mantissa field f with 1 + f / 2^nmant > sqrt(2))
    exp_mask: Any  # exponent field, as int_type
    low: Any  # lowest and highest magnitude, normal powers of two of the dtype
    high: Any
    flush: bool
    flush_add: Any  # low * 2^nmant, or None where high >= it (then a compare and a product)

    def __call__(self, x: Any, out: Any, xp: Any, scale: Any = None) -> None:
        """Fill ``out`` (x's shape and dtype); ``scale`` is a scalar of x's dtype or None (1)."""
        if x.ndim and (x.size <= CHUNK or xp is not np):  # whole array: fewer calls when small
            y = x if scale is None else x / scale
            r = y.view(self.int_type) + self.round_up
            self._finish(y, r, out, xp, scale)
            return
        # numpy, large: block by block, so that the temporaries stay in cache
        flat_x, flat_out = xp.ravel(x), out.reshape(-1)
        n = flat_x.size
        chunk = min(n, CHUNK)
        r = xp.empty(chunk, dtype=self.int_type)
        y = xp.empty(chunk, dtype=x.dtype) if scale is not None else None
        for i in range(0, n, chunk):
            j = min(i + chunk, n)
            yc = flat_x[i:j] if y is None else xp.divide(flat_x[i:j], scale, out=y[: j - i])
            rc = xp.add(yc.view(self.int_type), self.round_up, out=r[: j - i])
            self._finish(yc, rc, flat_out[i:j], xp, scale)

    def _finish(self, y: Any, r: Any, out: Any, xp: Any, scale: Any) -> None:
        xp.bitwise_and(r, self.exp_mask, out=r)
        m = r.view(y.dtype)  # |2^round(log2|y|)|, never NaN
        xp.minimum(m, _operand(self.high, m, xp), out=m)
        if not self.flush:
            xp.maximum(m, _operand(self.low, m, xp), out=m)
        elif self.flush_add is not None:
            xp.add(m, self.flush_add, out=m)
            xp.subtract(m, self.flush_add, out=m)
        else:
            xp.multiply(m, m >= self.low, out=m)
        xp.sign(y, out=out)
        if scale is not None:
            xp.multiply(out, scale, out=out)
        xp.multiply(out, m, out=out)


def _operand(value: Any, like: Any, xp: Any) -> Any:
    """``value`` as the second operand of a minimum or maximum with ``like``: on numpy an array
    of like's shape, since numpy 2's minimum and maximum with a scalar run about 4x slower than
    with an array (6-7 µs against 1.6 µs on 10⁴ float32 here); the scalar on other backends."""
    if xp is not np:
        return value
    return _filled(value, like.size).reshape(like.shape)


@lru_cache(maxsize=64)
def _filled(value: Any, n: int) -> np.ndarray:
    """A read-only array of n copies of ``value`` (a numpy scalar: its dtype)."""
    a = np.full(n, value)
    a.flags.writeable = False
    return a


@cache
def log_kernel(dtype: np.dtype, low: float, high: float, flush: bool) -> LogKernel:
    """The kernel for ``dtype`` with magnitudes ``low`` ... ``high`` (normal powers of two)."""
    info = np.finfo(dtype)
    n = info.nmant
    it = np.dtype(f"int{info.bits}").type
    # floor(sqrt(2) * 2^n) exactly; sqrt(2) * 2^n is irrational, so the next integer is the
    # smallest mantissa field strictly above sqrt(2).
    f_min = math.isqrt(2 * 4**n) + 1 - 2**n
    exp_mask = it(((1 << (info.bits - n - 1)) - 1) << n)
    add = low * 2.0**n
    flush_add = dtype.type(add) if flush and high < add <= float(info.max) else None
    t = dtype.type
    return LogKernel(it, it(2**n - f_min), exp_mask, t(low), t(high), flush, flush_add)


def uniform(rng: Any, x: Any, xp: Any) -> Any:
    """One uniform [0, 1) draw per element of x, drawn by ``rng`` on x's backend (no copy)."""
    dt = np.float64 if x.dtype == np.float64 else np.float32
    try:
        u = rng.random(x.shape, dtype=dt)
    except (AttributeError, TypeError):
        raise ValueError(
            f"rng={rng!r}: must be a numpy.random.Generator (or a CuPy generator) with "
            "random(shape, dtype=...)"
        ) from None
    drawn_on = get_xp(u)
    if drawn_on is not xp:  # a host stream copied to the device on every call, or the reverse
        raise TypeError(
            f"rng={rng!r} draws {drawn_on.__name__} arrays but x is a {xp.__name__} array: "
            "stochastic rounding draws on x's backend; pass a generator of that backend "
            "(lpfa.backend.runtime_rng(seed, xp))"
        )
    return u
