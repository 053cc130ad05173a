"""Number formats of low-precision hardware: small frozen value objects that describe themselves.

Each format states its facts — its grid (:meth:`~_Format.grid`), the decision points of nearest
rounding between neighbouring values, how many values it has and how many bits its code takes,
whether it is odd-symmetric, whether it has a zero, what it does with +-inf and NaN, and which
:class:`Rounding` modes it supports — and rounds an array onto its grid (``_apply``, called by
:func:`lpfa.quant.quantize`, which checks the arguments). The test kit (:mod:`lpfa.testing`) and
the cost model (:mod:`hwmodels.cost`) ask the format for these facts instead of re-deriving them.

Adding a format: a frozen dataclass here that subclasses :class:`_Format` and defines
``_scale``, ``_top``, ``_unit_grid``, ``_check_fits``, ``_apply`` and the facts that differ from
the defaults, plus its name in ``_FORMAT_NAMES`` (and ``Format``, ``_FORMATS``); then its tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any, ClassVar

import numpy as np

from lpfa.backend import get_xp
from lpfa.quant_kernels import LogKernel, log_kernel, uniform

__all__ = [
    "BF16",
    "FP8_E4M3",
    "FP8_E5M2",
    "FP16",
    "DynamicScale",
    "FixedPoint",
    "Format",
    "Identity",
    "LogFormat",
    "Minifloat",
    "Rounding",
    "Sign",
    "Ternary",
]


class Rounding(Enum):
    """How a value between two neighbouring grid points ``lo < y < hi`` is rounded.

    NEAREST
        The nearest grid point in the format's metric (linear for uniform grids and minifloats,
        logarithmic for :class:`LogFormat`). Ties go to the even integer (``rint``) where the
        decision is made on an integer grid (:class:`FixedPoint`, :class:`Minifloat`: IEEE
        round-half-to-even); each format's docstring states its tie rule.
    STOCHASTIC
        ``hi`` with probability ``(y - lo) / (hi - lo)``, else ``lo``: unbiased,
        ``E[Q(y)] = y`` inside the range, variance ``(hi - y)(y - lo)``. Needs an explicit
        generator ``rng``; one uniform draw ``u`` per element, ``hi`` iff ``u < p``, so the bias is
        at most the draw resolution (2^-24 of a step for float32 draws, 2^-53 for float64).
    TOWARD_ZERO
        The neighbour nearer to zero (truncation): ``|Q(y)| <= |y|`` inside the range.
    """

    NEAREST = "nearest"
    STOCHASTIC = "stochastic"
    TOWARD_ZERO = "toward_zero"


class DynamicScale(Enum):
    """A scale measured from the data: ``max|x|`` over finite entries, mapped to the format's top.

    Which statistic could a hardware channel know? A physical learning channel has a *fixed* scale,
    set at design time, which is what Baldi et al. (2018, section 5) use: alpha = 2^-3 for the
    error signals and 2^-6 for the weight updates. ``PER_ROW`` needs the peak over the units of one
    example (the last axis), i.e. a layer-wide peak detector at the sender whose value must travel
    with the codes. ``PER_TENSOR`` needs the peak over the whole minibatch, which no example's
    channel knows before every example has been processed: a software convenience, not causal for
    online learning.

    Non-finite entries are left out of the maximum; a row (or tensor) with no finite non-zero entry
    gets scale 1. In a format spec the scale field names it: ``log:bits=3,alpha=per_row``,
    ``fixed:bits=8,full_scale=per_tensor``, ``sign:scale=per_row``.

    The statistic is over the array one quantizer call sees. For ``[channel] error_format`` that
    is one layer's J, shape (E, B, N_h): ``per_row`` is each example's peak over the layer's units.
    For ``[channel] update_format`` the calls see chunks of per-example updates, shape
    (E, b, N_out, N_in): ``per_row`` is one example's row of synapses into one unit (the same
    whatever the chunk), while ``per_tensor`` would pool the examples of a chunk, so the channel
    refuses it there.

    PER_TENSOR
        One scale per ensemble member: the peak over every axis but the leading one (lpfa's arrays
        carry the member axis first, so members stay independent); a 0-d or 1-d array is one
        tensor. For a (batch, n) array outside an ensemble, add a leading axis of size 1.
    PER_ROW
        One scale per index of all axes but the last (one per example for ``(batch, n)``); a 0-d or
        1-d array is one row.
    """

    PER_TENSOR = "per_tensor"
    PER_ROW = "per_row"


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(
        v, bool | np.bool_
    )


def _check_int(name: str, v: Any, lo: int, hi: int | None = None) -> None:
    if not _is_int(v) or v < lo or (hi is not None and v > hi):
        upper = f" and <= {hi}" if hi is not None else ""
        raise ValueError(f"{name}={v!r}: must be an int >= {lo}{upper}")


def _check_positive(name: str, v: Any, *, dynamic: bool) -> None:
    if dynamic and isinstance(v, DynamicScale):
        return
    if not _is_real(v) or not math.isfinite(v) or v <= 0:
        also = " or a DynamicScale" if dynamic else ""
        raise ValueError(f"{name}={v!r}: must be a finite float > 0{also}")


def _check_bool(name: str, v: Any) -> None:
    if not isinstance(v, bool):
        raise ValueError(f"{name}={v!r}: must be True or False")


class _Format:
    """What every number format says about itself; each format overrides what differs.

    The defaults describe a saturating grid that holds 0, is odd-symmetric, rounds to nearest at
    the midpoints and supports every :class:`Rounding`. A format defines ``_scale()`` (its scale:
    a float or a :class:`DynamicScale`), ``_top()`` (the largest unit-grid magnitude, where a
    dynamic scale maps the peak), ``_unit_grid()`` (its values for scale 1), ``_check_fits(dtype,
    scale)`` (raises where ``dtype`` cannot hold its values) and ``_apply(x, rounding, rng, out)``.
    """

    __slots__ = ()

    # rounding modes a format cannot do, with the reason given in quantize's error message
    _ROUNDING_GAPS: ClassVar[dict[Rounding, str]] = {}

    @property
    def roundings(self) -> frozenset[Rounding]:
        """The :class:`Rounding` modes :func:`~lpfa.quant.quantize` accepts for this format."""
        return frozenset(r for r in Rounding if r not in self._ROUNDING_GAPS)

    @property
    def odd_symmetric(self) -> bool:
        """Whether ``Q(-x) == -Q(x)`` for every ``x != 0`` under deterministic rounding."""
        return True

    @property
    def has_zero(self) -> bool:
        """Whether 0 is a value, so that ``Q(0) = 0`` under every supported rounding."""
        return True

    @property
    def n_values(self) -> int | None:
        """Number of distinct finite values, ``len(grid)``; None where there is no grid."""
        return len(self._unit_grid())

    @property
    def code_bits(self) -> int | None:
        """Bits of one code: ``ceil(log2(n_values))``; None where there is no grid (the dtype)."""
        return math.ceil(math.log2(self.n_values))

    @property
    def dynamic_scale(self) -> DynamicScale | None:
        """How the scale is measured from the data, or None for a fixed scale."""
        scale = self._scale()
        return scale if isinstance(scale, DynamicScale) else None

    def grid(self, dtype: Any = np.float32) -> np.ndarray:
        """Every value, in ``dtype``, sorted ascending (numpy, on the host).

        These are exactly the values :func:`~lpfa.quant.quantize` can return for finite input of
        that dtype (plus +-inf / NaN where the format overflows to them, see :meth:`nonfinite`).

        Parameters
        ----------
        dtype : numpy float dtype
            The dtype the values are computed in, as :func:`~lpfa.quant.quantize` does.

        Returns
        -------
        numpy.ndarray, shape (n_values,), dtype ``dtype``

        Raises
        ------
        ValueError
            Under a dynamic scale (the grid depends on the data), or where ``dtype`` cannot hold
            the values.
        """
        dt = np.dtype(dtype)
        scale = self._scale()
        if isinstance(scale, DynamicScale):
            raise ValueError(f"fmt={self!r}: grid() needs a fixed scale, not {scale}")
        self._check_fits(dt, scale)
        with np.errstate(all="ignore"):
            values = self._unit_grid().astype(dt) * dt.type(scale)
        return np.unique(values)

    def decision_points(self, dtype: Any = np.float32) -> np.ndarray:
        """Where nearest rounding switches between neighbouring values (float64, ascending).

        ``t[i]`` lies between ``grid[i]`` and ``grid[i + 1]``: inputs above it round up, inputs
        below it down (the tie rule is in the format's docstring). By default the midpoints: the
        format rounds to nearest in the linear metric.

        Returns
        -------
        numpy.ndarray, shape (n_values - 1,), float64
        """
        g = self.grid(dtype).astype(np.float64)
        return (g[:-1] + g[1:]) / 2

    def nonfinite(self, dtype: Any = np.float32) -> tuple[float, float, float]:
        """``(Q(+inf), Q(-inf), Q(nan))`` as Python floats; by default saturation, NaN -> NaN."""
        g = self.grid(dtype)
        return float(g[-1]), float(g[0]), math.nan

    def sign_level(self, rounding: Rounding) -> float | None:
        """The c with ``Q(x) == c * sign(x)`` for every x under ``rounding`` (0 -> 0), else None.

        Then ``Q(r * o) == c * sign(r) * sign(o)``: a sum of quantized products is one product of
        signs (see :meth:`lpfa.crossbar.Crossbar.update`). None by default.
        """
        return None

    def _kernel(self, dtype: np.dtype, rounding: Rounding) -> Any:
        """A precomputed ``kernel(x, out, xp)`` for this rounding and dtype, or None."""
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFormat(_Format):
    r"""Signed powers of two below a scale: the learning-channel quantizer of Baldi et al. (2018).

    Eq. 19:  Q(x) = alpha * sign(x) * 2^round(clip(log2|x / alpha|, -bits + 1, 0)).

    Values
        {0} U {+-alpha * 2^-k : k = 0, ..., bits - 1}: ``2 * bits + 1`` distinct values, range
        [-alpha, alpha]. Q(0) = 0 because sign(0) = 0 (Q(-0.0) is +0.0 too: numpy's sign drops the
        sign of zero). The step is relative: neighbours differ by a factor 2.
    Nearest (eq. 19)
        Rounding is in the log domain: with y = x / alpha (rounded to x's dtype) and
        2^k <= |y| < 2^(k+1), the result is 2^(k+1) iff |y| > 2^k * sqrt(2), else 2^k. There are no
        ties: log2|y| = k + 1/2 needs |y| = 2^k * sqrt(2), which is irrational, so no float hits
        it. The decision is an exact comparison of the mantissa with sqrt(2), so the result is the
        exact-arithmetic value of eq. 19 (evaluating eq. 19 with a float log2 can land on k + 1/2
        and then depends on the tie rule of ``round``; this implementation never does). Values
        above alpha saturate to +-alpha (the upper clip); non-zero values below the lowest level,
        however tiny, go to +-alpha * 2^(-bits + 1), not to zero: that is what the lower clip of
        eq. 19 says. Error: |Q(y) - y| < (2 - sqrt(2)) * 2^k (0.59 of the gap 2^k between the two
        neighbours) inside the range, up to the lowest level itself for tiny inputs.
    Nearest with ``flush_to_zero``
        As above, except that values whose log2 rounds below the lowest level, |y| < 2^(-bits + 1)
        / sqrt(2), go to 0: a zero code below the range, as in the log quantizer of Miyashita
        et al. (2016), whose clip maps an exponent below the range to zero. Baldi et al. do not
        say which their runs used. A flushed negative value gives -0.0 (sign(y) * 0).
    Stochastic
        Unbiased between the neighbouring values of {0} U {+-2^-k}, so tiny inputs go to 0 or to
        the lowest level (not always to the lowest level as in eq. 19); ``flush_to_zero`` does
        not change it.
    Toward zero
        The largest power of two <= |y| (clipped to alpha); inputs below the lowest level go to 0,
        with or without ``flush_to_zero``.
    Non-finite
        NaN -> NaN; +-inf -> +-alpha (saturation, as eq. 19's clip gives).

    Attributes
    ----------
    bits : int
        Number of magnitude levels (>= 1); the paper's "bits" in eq. 19.
    alpha : float or DynamicScale
        The largest magnitude (same units as x), > 0; any float, not only powers of two (with a
        power of two <= 1 the nearest path needs no division). The paper uses 2^-3 for errors and
        2^-6 for weight updates. A :class:`DynamicScale` sets alpha = max|x|.
    flush_to_zero : bool
        Nearest rounding sends values below half a (log) step under the lowest level to 0 instead
        of up to it (default False: eq. 19 as written).
    """

    bits: int
    alpha: float | DynamicScale
    flush_to_zero: bool = False

    def __post_init__(self) -> None:
        _check_int("bits", self.bits, 1)
        _check_positive("alpha", self.alpha, dynamic=True)
        _check_bool("flush_to_zero", self.flush_to_zero)

    @property
    def n_values(self) -> int:
        """``2 * bits + 1``: zero and ``bits`` magnitudes of either sign."""
        return 2 * self.bits + 1

    @property
    def code_bits(self) -> int:
        """``bits``, as Baldi et al. (2018) count a message of eq. 19 (the paper's "bits").

        It is the number of magnitude levels, not ``ceil(log2(n_values))``: the two agree for
        bits = 3 and 4, the paper's settings.
        """
        return self.bits

    def decision_points(self, dtype: Any = np.float32) -> np.ndarray:
        """Geometric means of neighbours (rounding is in the log domain); 0 next to 0, or with
        ``flush_to_zero`` the lowest level / sqrt(2)."""
        g = self.grid(dtype).astype(np.float64)
        lo, hi = g[:-1], g[1:]
        t = np.sign(lo + hi) * np.sqrt(np.abs(lo * hi))
        if self.flush_to_zero:
            t[lo == 0] = hi[lo == 0] / math.sqrt(2)
            t[hi == 0] = lo[hi == 0] / math.sqrt(2)
        return t

    def sign_level(self, rounding: Rounding) -> float | None:
        """alpha at one level, nearest rounding, no zero code and a fixed alpha <= 1 (so that
        x / alpha never underflows): ``{-alpha, alpha}`` and 0 -> 0, eq. 19 as written at 1 bit;
        else None."""
        one_level = self.bits == 1 and not self.flush_to_zero
        return _fixed_sign_level(self.alpha, rounding) if one_level else None

    def _kernel(self, dtype: np.dtype, rounding: Rounding) -> LogKernel | None:
        return _log_plan(self, dtype) if rounding is Rounding.NEAREST else None

    def _scale(self) -> float | DynamicScale:
        return self.alpha

    def _top(self) -> float:
        return 1.0

    def _unit_grid(self) -> np.ndarray:
        pos = np.ldexp(1.0, -np.arange(self.bits))
        return np.concatenate([-pos, [0.0], pos[::-1]])

    def _check_fits(self, dtype: np.dtype, scale: Any) -> None:
        info = np.finfo(dtype)
        # flushing decides at low / sqrt(2), which must be a normal number too
        low = 2.0 ** (1 - self.bits) / (math.sqrt(2) if self.flush_to_zero else 1)
        if low < info.smallest_normal or (
            not isinstance(scale, DynamicScale)
            and (float(dtype.type(scale)) * low < info.smallest_normal or scale > info.max)
        ):
            also = " (with flush_to_zero, the lowest / sqrt(2))" if self.flush_to_zero else ""
            raise ValueError(
                f"x.dtype={dtype}: {self!r} has values{also} outside the normal range of {dtype} "
                f"([{info.smallest_normal:.3g}, {info.max:.3g}]); use fewer bits or a wider dtype"
            )

    def _apply(self, x: Any, rounding: Rounding, rng: Any, out: Any) -> Any:
        xp = get_xp(x)
        dt = x.dtype
        if rounding is Rounding.NEAREST:
            unit = log_kernel(dt, 2.0 ** (1 - self.bits), 1.0, self.flush_to_zero)
            if isinstance(self.alpha, DynamicScale):
                s = _dynamic_scale(x, self.alpha, 1.0)
                if s.ndim == 0:
                    unit(x, out, xp, scale=s)
                else:  # one scale per row: divide and multiply by the broadcast scales
                    unit(x / s, out, xp)
                    xp.multiply(out, s, out=out)
                return out
            kernel = _log_plan(self, dt)
            if kernel is not None:  # alpha = 2^j <= 1: folded into the clip bounds, no division
                kernel(x, out, xp)
            else:
                unit(x, out, xp, scale=dt.type(self.alpha))
            return out
        s = (
            _dynamic_scale(x, self.alpha, 1.0)
            if isinstance(self.alpha, DynamicScale)
            else dt.type(self.alpha)
        )
        y = x / s
        a = xp.abs(y)
        mant, ex = xp.frexp(a)  # a = mant * 2^ex, mant in [0.5, 1)
        low = dt.type(2.0 ** (1 - self.bits))
        if rounding is Rounding.TOWARD_ZERO:
            q = xp.ldexp(xp.ones_like(a), ex - 1)
            q = xp.where(a < low, dt.type(0), q)
        else:
            u = uniform(rng, x, xp)
            frac = 2 * mant - 1  # (a - 2^(ex-1)) / 2^(ex-1), exact
            q = xp.ldexp(xp.ones_like(a), ex - 1 + (u < frac))
            q = xp.where(a < low, xp.where(u < a / low, low, dt.type(0)), q)
        q = xp.where(a >= 1, dt.type(1), q)
        xp.multiply(xp.sign(y), q, out=out)
        xp.multiply(out, s, out=out)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedPoint(_Format):
    r"""A uniform grid of integers times a step, clamped at its ends (an ADC/DAC code).

    Values
        signed:   {k * step : k = -N, ..., N} with N = 2^(bits-1) - 1 (symmetric; the extra
        two's-complement code -2^(bits-1) is not used, so the grid is odd-symmetric);
        unsigned: {k * step : k = 0, ..., N} with N = 2^bits - 1.
        Range [-N * step, N * step] (signed) or [0, N * step]; step = ``step``, or
        ``full_scale / N``.
    Rounding
        Q(x) = step * clip(R(x / step), kmin, N), all in x's dtype, with R = rint for nearest
        (ties to even; with a step that is not a power of two, x / step is rounded first, so a
        value within an ulp of a midpoint may go either way). Toward zero gives the grid value of
        largest magnitude with |Q(x)| <= |x|, stochastic gives the upper of the two grid values
        around x with probability (x - lo) / (hi - lo); both compare x with the grid values
        fl(k * step) themselves, so they are exact and idempotent for any step. Values beyond the
        range saturate (the clamp).
    Non-finite
        NaN -> NaN; +inf -> N * step; -inf -> kmin * step.

    Attributes
    ----------
    bits : int
        Code width: 2..53 when signed, 1..53 when unsigned.
    step : float or None
        Grid spacing (units of x), > 0. Give exactly one of ``step`` and ``full_scale``.
    full_scale : float or DynamicScale or None
        The largest magnitude N * step (units of x), > 0; a :class:`DynamicScale` sets it to
        max|x|.
    signed : bool
        Symmetric signed grid (True) or non-negative grid (False; negative inputs go to 0).
    """

    bits: int
    step: float | None = None
    full_scale: float | DynamicScale | None = None
    signed: bool = True

    def __post_init__(self) -> None:
        _check_bool("signed", self.signed)
        _check_int("bits", self.bits, 2 if self.signed else 1, 53)
        if (self.step is None) == (self.full_scale is None):
            raise ValueError(
                f"step={self.step!r}, full_scale={self.full_scale!r}: give exactly one of step "
                "(grid spacing) or full_scale (largest magnitude)"
            )
        if self.step is not None:
            _check_positive("step", self.step, dynamic=False)
        else:
            _check_positive("full_scale", self.full_scale, dynamic=True)

    @property
    def levels(self) -> int:
        """N: the largest code; the grid is ``{kmin..N} * step``."""
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def n_values(self) -> int:
        """``2 * N + 1`` signed, ``N + 1`` unsigned."""
        return 2 * self.levels + 1 if self.signed else self.levels + 1

    @property
    def code_bits(self) -> int:
        """``bits``, the code width."""
        return self.bits

    @property
    def odd_symmetric(self) -> bool:
        """True when signed (the unsigned grid sends negative inputs to 0)."""
        return self.signed

    def _scale(self) -> float | DynamicScale:
        if self.step is not None:
            return self.step
        if isinstance(self.full_scale, DynamicScale):
            return self.full_scale
        return self.full_scale / self.levels

    def _top(self) -> float:
        return float(self.levels)

    def _unit_grid(self) -> np.ndarray:
        return np.arange(-self.levels if self.signed else 0, self.levels + 1, dtype=np.float64)

    def _check_fits(self, dtype: np.dtype, scale: Any) -> None:
        if self.levels > 2 ** (np.finfo(dtype).nmant + 1):
            raise ValueError(
                f"x.dtype={dtype}: {self!r} has more codes than {dtype} holds integers exactly; "
                "use fewer bits or a wider dtype"
            )

    def _apply(self, x: Any, rounding: Rounding, rng: Any, out: Any) -> Any:
        xp = get_xp(x)
        s = _resolve_scale(x, self._scale(), self._top())
        y = x / s
        if rounding is Rounding.NEAREST:
            k = xp.rint(y)
        elif rounding is Rounding.TOWARD_ZERO:
            # The grid is fl(k * s); x / s may round across an integer, so settle k by comparing
            # grid values with x: the largest |k| with |fl(k * s)| <= |x| (exact, idempotent).
            a = xp.abs(x)
            k = xp.trunc(xp.abs(y))
            k = xp.where((k + 1) * s <= a, k + 1, k)
            k = xp.where(k * s > a, k - 1, k)
            k = k * xp.sign(y)
        else:
            k = xp.floor(y)  # settled as above: fl(k * s) <= x < fl((k + 1) * s)
            k = xp.where((k + 1) * s <= x, k + 1, k)
            k = xp.where(k * s > x, k - 1, k)
            lo = k * s
            p = (x - lo) / ((k + 1) * s - lo)  # Bernoulli(p) between the two neighbours
            k = k + (uniform(rng, x, xp) < p)
        k = xp.clip(k, -self.levels if self.signed else 0, self.levels)
        xp.multiply(k, s, out=out)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Sign(_Format):
    r"""One bit: the sign, times a scale (signSGD / binary error feedback).

    Values
        {-scale, +scale}; range [-scale, scale]; step 2 * scale.
    Nearest
        Q(x) = +scale if x >= 0 else -scale. Zero has no code of its own: +0.0 and -0.0 both map
        to +scale (the code's sign bit is clear).
    Stochastic
        +scale with probability (1 + clip(x / scale, -1, 1)) / 2: unbiased on [-scale, scale];
        Q(0) is +-scale with equal probability.
    Toward zero
        Not available (there is no zero to round toward): ValueError.
    Non-finite
        NaN -> NaN; +-inf -> +-scale.

    Attributes
    ----------
    scale : float or DynamicScale
        Magnitude of both codes (units of x), > 0; a :class:`DynamicScale` sets it to max|x|.
    """

    scale: float | DynamicScale = 1.0

    _ROUNDING_GAPS: ClassVar[dict[Rounding, str]] = {Rounding.TOWARD_ZERO: "Sign has no zero code"}

    def __post_init__(self) -> None:
        _check_positive("scale", self.scale, dynamic=True)

    @property
    def has_zero(self) -> bool:
        """False: 0 maps to +scale."""
        return False

    @property
    def n_values(self) -> int:
        """2."""
        return 2

    def decision_points(self, dtype: Any = np.float32) -> np.ndarray:
        """``[0]``: x >= 0 gives +scale, whatever the scale."""
        return np.zeros(1)

    def _scale(self) -> float | DynamicScale:
        return self.scale

    def _top(self) -> float:
        return 1.0

    def _unit_grid(self) -> np.ndarray:
        return np.array([-1.0, 1.0])

    def _check_fits(self, dtype: np.dtype, scale: Any) -> None:
        return None

    def _apply(self, x: Any, rounding: Rounding, rng: Any, out: Any) -> Any:
        xp = get_xp(x)
        dt = x.dtype
        s = _resolve_scale(x, self.scale, 1.0)
        y = x / s
        if rounding is Rounding.NEAREST:
            q = xp.sign(y)
            q = xp.where(q == 0, dt.type(1), q)
        else:
            u = uniform(rng, x, xp)
            p = (1 + xp.clip(y, -1, 1)) / 2
            q = xp.where(u < p, dt.type(1), dt.type(-1))
            q = xp.where(xp.isnan(y), y, q)
        xp.multiply(q, s, out=out)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Ternary(_Format):
    r"""Three levels {-scale, 0, +scale} with a dead zone (ternary error / weight codes).

    Values
        {-scale, 0, +scale}; range [-scale, scale]; step scale.
    Nearest (thresholded)
        Q(x) = scale * sign(x) if |x| > threshold * scale else 0; |x| = threshold * scale (the
        tie) goes to 0. ``threshold = 0.5`` is nearest rounding.
    Stochastic
        scale * sign(x) with probability min(|x| / scale, 1), else 0: unbiased on [-scale, scale]
        (the threshold is not used).
    Toward zero
        scale * sign(x) if |x| >= scale else 0.
    Non-finite
        NaN -> NaN; +-inf -> +-scale.

    Attributes
    ----------
    threshold : float
        Dead-zone half-width as a fraction of ``scale``, in [0, 1).
    scale : float or DynamicScale
        Magnitude of the non-zero codes (units of x), > 0; a :class:`DynamicScale` sets it to
        max|x|.
    """

    threshold: float = 0.5
    scale: float | DynamicScale = 1.0

    def __post_init__(self) -> None:
        t = self.threshold
        if not _is_real(t) or not 0 <= t < 1:
            raise ValueError(f"threshold={t!r}: must be a float in [0, 1) (a fraction of scale)")
        _check_positive("scale", self.scale, dynamic=True)

    @property
    def n_values(self) -> int:
        """3."""
        return 3

    def decision_points(self, dtype: Any = np.float32) -> np.ndarray:
        """``[-threshold * scale, threshold * scale]``: the dead zone's edges, in ``dtype``."""
        top = float(self.grid(dtype)[-1])  # the scale in dtype
        return np.array([-1.0, 1.0]) * float(np.dtype(dtype).type(self.threshold)) * top

    def sign_level(self, rounding: Rounding) -> float | None:
        """scale with no dead zone (threshold 0), nearest rounding and a fixed scale <= 1; else
        None."""
        return _fixed_sign_level(self.scale, rounding) if self.threshold == 0 else None

    def _scale(self) -> float | DynamicScale:
        return self.scale

    def _top(self) -> float:
        return 1.0

    def _unit_grid(self) -> np.ndarray:
        return np.array([-1.0, 0.0, 1.0])

    def _check_fits(self, dtype: np.dtype, scale: Any) -> None:
        return None

    def _apply(self, x: Any, rounding: Rounding, rng: Any, out: Any) -> Any:
        xp = get_xp(x)
        s = _resolve_scale(x, self.scale, 1.0)
        y = x / s
        a = xp.abs(y)
        if rounding is Rounding.NEAREST:
            keep = a > x.dtype.type(self.threshold)
        elif rounding is Rounding.TOWARD_ZERO:
            keep = a >= 1
        else:
            keep = uniform(rng, x, xp) < xp.minimum(a, 1)
        xp.multiply(xp.sign(y), keep, out=out)  # sign(NaN) * 0 stays NaN
        xp.multiply(out, s, out=out)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Minifloat(_Format):
    r"""A small binary floating-point format (fp8 E4M3 / E5M2, fp16-like, bfloat16-like).

    With e = ``exp_bits``, m = ``man_bits``, b = ``bias`` (default 2^(e-1) - 1),
    emin = 1 - b and emax = 2^e - 2 - b (IEEE-like: the top exponent holds inf/NaN) or
    emax = 2^e - 1 - b (``finite_only``: the top exponent holds numbers, only the all-ones
    mantissa there is NaN, as in OCP fp8 E4M3FN):

    Values
        0, subnormals k * 2^(emin - m) for k = 1..2^m - 1 (if ``subnormals``), normals
        2^E * (1 + f / 2^m) for E = emin..emax, f = 0..2^m - 1, and their negatives.
        max value = 2^emax * (2 - 2^-m) (IEEE-like) or 2^emax * (2 - 2^(1-m)) (finite_only);
        min normal = 2^emin; min subnormal = 2^(emin - m).
        E4M3 (finite_only): 448, 2^-6, 2^-9.  E5M2: 57344, 2^-14, 2^-16.
        fp16: 65504, 2^-14, 2^-24.  bf16: ~3.39e38, 2^-126, 2^-133.
        Step: 2^(E - m) in the binade of 2^E, 2^(emin - m) below min normal.
    Rounding
        On the binade's integer grid: Q(y) = R(y / 2^(E-m)) * 2^(E-m) with R = rint (nearest,
        ties to even: IEEE round-half-to-even, so fp16-like equals numpy's float16 cast), floor
        plus Bernoulli (stochastic, unbiased) or trunc (toward zero). Without subnormals the grid
        below min normal is {0, min normal} and y rounds onto it (nearest, ties to 0; not
        flush-to-zero after rounding).
    Overflow
        Beyond max value: ``saturate`` clamps to +-max (also +-inf -> +-max); otherwise IEEE
        overflow to +-inf (nearest: from max + half a step, ties to even), or NaN for
        ``finite_only`` formats, which have no inf. Round toward zero never makes a finite value
        infinite: it gives +-max (IEEE 754 §4.3.2; fp16: 65536 -> 65504), and +-inf stays +-inf.
        NaN -> NaN always.

    Attributes
    ----------
    exp_bits : int
        Exponent field width, 2..11.
    man_bits : int
        Mantissa (fraction) field width, 0..52 (>= 1 when ``finite_only``).
    bias : int or None
        Exponent bias; None is the IEEE default 2^(exp_bits-1) - 1.
    subnormals : bool
        Whether the grid has subnormals (gradual underflow).
    saturate : bool
        Clamp overflow to +-max value (True) or overflow to +-inf / NaN (False).
    finite_only : bool
        Top exponent holds numbers, not inf/NaN codes (OCP fp8 E4M3FN).
    scale : float or DynamicScale
        Multiplier applied outside the format (units of x): a power of two (a shift of the
        exponent bias, so the scaling is exact): Q(x) = scale * MF(x / scale). A
        :class:`DynamicScale` uses the smallest power of two >= max|x| / max value (fp8
        training's amax scaling, rounded to a shift).
    """

    exp_bits: int
    man_bits: int
    bias: int | None = None
    subnormals: bool = True
    saturate: bool = True
    finite_only: bool = False
    scale: float | DynamicScale = 1.0

    def __post_init__(self) -> None:
        _check_int("exp_bits", self.exp_bits, 2, 11)
        _check_int("man_bits", self.man_bits, 0, 52)
        if self.bias is not None and not _is_int(self.bias):
            raise ValueError(f"bias={self.bias!r}: must be an int or None (IEEE default)")
        _check_bool("subnormals", self.subnormals)
        _check_bool("saturate", self.saturate)
        _check_bool("finite_only", self.finite_only)
        if not isinstance(self.scale, DynamicScale) and (
            not _is_real(self.scale) or self.scale <= 0 or math.frexp(self.scale)[0] != 0.5
        ):
            raise ValueError(
                f"scale={self.scale!r}: must be a power of two > 0 (an exponent-bias shift) or a "
                "DynamicScale"
            )
        if self.finite_only and self.man_bits == 0:
            raise ValueError(
                "man_bits=0: finite_only needs at least one mantissa bit (the all-ones mantissa "
                "of the top exponent encodes NaN)"
            )

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number, 1 - bias."""
        bias = 2 ** (self.exp_bits - 1) - 1 if self.bias is None else self.bias
        return 1 - bias

    @property
    def emax(self) -> int:
        """Exponent of the largest binade."""
        top = 2**self.exp_bits - (1 if self.finite_only else 2)
        return top - 1 + self.emin

    @property
    def max_value(self) -> float:
        """Largest finite value."""
        lost = 1 if self.finite_only else 0  # the NaN code at the top of finite_only formats
        return math.ldexp(2.0 - 2.0 ** (lost - self.man_bits), self.emax)

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value, 2^emin."""
        return math.ldexp(1.0, self.emin)

    @property
    def min_subnormal(self) -> float | None:
        """Smallest positive subnormal value, 2^(emin - man_bits); None without subnormals."""
        return math.ldexp(1.0, self.emin - self.man_bits) if self.subnormals else None

    @property
    def n_values(self) -> int:
        """Zero, the subnormals and normals of either sign (less the NaN code of finite_only)."""
        per_binade = 2**self.man_bits
        positive = (self.emax - self.emin + 1) * per_binade - (1 if self.finite_only else 0)
        if self.subnormals:
            positive += per_binade - 1
        return 2 * positive + 1

    @property
    def code_bits(self) -> int:
        """``1 + exp_bits + man_bits``: sign, exponent and mantissa fields."""
        return 1 + self.exp_bits + self.man_bits

    def nonfinite(self, dtype: Any = np.float32) -> tuple[float, float, float]:
        """Saturating: +-max value; else +-inf, or NaN for ``finite_only`` (it has no inf)."""
        if self.saturate:
            return _Format.nonfinite(self, dtype)
        inf = math.nan if self.finite_only else math.inf
        return inf, -inf, math.nan

    def _scale(self) -> float | DynamicScale:
        return self.scale

    def _top(self) -> float:
        return self.max_value

    def _unit_grid(self) -> np.ndarray:
        m = self.man_bits
        if (self.emax - self.emin + 2) << m > 1 << 21:
            raise ValueError(f"{self!r}: more than 2^22 values; grid() is for small formats")
        frac = np.arange(2**m, dtype=np.float64)
        pos = [np.ldexp(frac[1:] if self.subnormals else frac[:0], self.emin - m)]
        for e in range(self.emin, self.emax + 1):
            pos.append(np.ldexp(2.0**m + frac, e - m))
        p = np.concatenate(pos)
        p = p[p <= self.max_value]
        return np.concatenate([-p[::-1], [0.0], p])

    def _check_fits(self, dtype: np.dtype, scale: Any) -> None:
        info = np.finfo(dtype)
        lowest = self.emin - (self.man_bits if self.subnormals else 0)
        if (
            self.man_bits > info.nmant
            or lowest < info.minexp - info.nmant
            or self.max_value > info.max
        ):
            raise ValueError(
                f"x.dtype={dtype}: {self!r} does not fit in {dtype} (needs man_bits <= "
                f"{info.nmant}, smallest value >= 2^{info.minexp - info.nmant}, max value <= "
                f"{info.max:.4g}); use a wider dtype"
            )

    def _apply(self, x: Any, rounding: Rounding, rng: Any, out: Any) -> Any:
        xp = get_xp(x)
        dt = x.dtype
        s = _resolve_scale(x, self.scale, self.max_value)
        if isinstance(self.scale, DynamicScale):
            mant, ex = xp.frexp(s)  # round up to a power of two: an exact shift
            s = xp.ldexp(xp.ones_like(s), xp.where(mant == 0.5, ex - 1, ex))
        unit = isinstance(s, float | np.floating) and s == 1
        y = x if unit else x / s
        a = xp.abs(y)
        _, ex = xp.frexp(a)  # a = mant * 2^ex, mant in [0.5, 1): exponent E = ex - 1
        e = ex - 1
        shift = xp.maximum(e, self.emin) - self.man_bits  # log2 of the step at a
        if not self.subnormals:
            shift = xp.where(e < self.emin, self.emin, shift)
        k = _round_real(xp.ldexp(a, -shift), rounding, rng, x, xp)
        q = xp.ldexp(k, shift)
        top = dt.type(self.max_value)
        if self.saturate:
            q = xp.minimum(q, top)
        elif rounding is Rounding.TOWARD_ZERO:  # IEEE: finite overflow truncates to the max
            q = xp.where((q > top) & xp.isfinite(a), top, q)
            q = xp.where(q > top, dt.type(np.nan if self.finite_only else np.inf), q)
        else:
            q = xp.where(q > top, dt.type(np.nan if self.finite_only else np.inf), q)
        xp.copysign(q, y, out=out)
        if not unit:
            xp.multiply(out, s, out=out)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity(_Format):
    """No quantization: Q(x) = x (a copy), for every value including NaN and +-inf.

    Useful as the "off" format of a channel in sweeps that name a format per channel. It has no
    grid: :meth:`grid` and :meth:`decision_points` raise, ``n_values`` and ``code_bits`` are None
    (a message takes the dtype's width).
    """

    @property
    def n_values(self) -> None:
        """None: every float of the dtype."""
        return None

    @property
    def code_bits(self) -> None:
        """None: the dtype's width."""
        return None

    def grid(self, dtype: Any = np.float32) -> np.ndarray:
        """Raises ValueError: the identity has no finite grid."""
        raise ValueError(f"fmt={self!r}: grid() needs a format with a finite grid")

    def decision_points(self, dtype: Any = np.float32) -> np.ndarray:
        """Raises ValueError: the identity has no finite grid."""
        return self.grid(dtype)

    def nonfinite(self, dtype: Any = np.float32) -> tuple[float, float, float]:
        """``(inf, -inf, nan)``: passed through."""
        return math.inf, -math.inf, math.nan

    def _scale(self) -> float:
        return 1.0

    def _check_fits(self, dtype: np.dtype, scale: Any) -> None:
        return None

    def _apply(self, x: Any, rounding: Rounding, rng: Any, out: Any) -> Any:
        get_xp(x).copyto(out, x)
        return out


Format = LogFormat | FixedPoint | Sign | Ternary | Minifloat | Identity
_FORMATS = (LogFormat, FixedPoint, Sign, Ternary, Minifloat, Identity)

FP8_E4M3 = Minifloat(exp_bits=4, man_bits=3, finite_only=True)
"""OCP fp8 E4M3FN: max 448, min normal 2^-6, min subnormal 2^-9, saturating."""
FP8_E5M2 = Minifloat(exp_bits=5, man_bits=2)
"""OCP fp8 E5M2 (IEEE-like): max 57344, min normal 2^-14, min subnormal 2^-16, saturating."""
FP16 = Minifloat(exp_bits=5, man_bits=10, saturate=False)
"""IEEE binary16: max 65504, min normal 2^-14, min subnormal 2^-24, overflow to inf."""
BF16 = Minifloat(exp_bits=8, man_bits=7, saturate=False)
"""bfloat16: max ~3.39e38, min normal 2^-126, min subnormal 2^-133, overflow to inf."""


_FORMAT_NAMES: dict[str, Any] = {
    "log": LogFormat,
    "fixed": FixedPoint,
    "sign": Sign,
    "ternary": Ternary,
    "minifloat": Minifloat,
    "identity": Identity,
}
_PRESETS: dict[str, Format] = {
    "fp8_e4m3": FP8_E4M3,
    "fp8_e5m2": FP8_E5M2,
    "fp16": FP16,
    "bf16": BF16,
}


# --- implementation helpers -------------------------------------------------------------------


@cache
def _check_fits_once(fmt: Any, dtype: np.dtype) -> None:
    """``fmt._check_fits`` for a fixed-scale format, remembered per (format, dtype)."""
    fmt._check_fits(dtype, fmt._scale())


def _round_real(z: Any, rounding: Rounding, rng: Any, x: Any, xp: Any) -> Any:
    """Round z to an integer: rint (ties to even), trunc, or floor plus Bernoulli(frac(z))."""
    if rounding is Rounding.NEAREST:
        return xp.rint(z)
    if rounding is Rounding.TOWARD_ZERO:
        return xp.trunc(z)
    fl = xp.floor(z)
    return fl + (uniform(rng, x, xp) < z - fl)  # z - floor(z) is exact


def _dynamic_scale(x: Any, mode: DynamicScale, top: float) -> Any:
    """max|x| over finite entries (per member or per row, keepdims) / top; 1 where that is 0."""
    xp = get_xp(x)
    a = xp.abs(x)
    a = xp.where(xp.isfinite(a), a, x.dtype.type(0))
    if mode is DynamicScale.PER_ROW and x.ndim >= 1:
        m = xp.max(a, axis=-1, keepdims=True)
    elif x.ndim >= 2:  # per member: never a statistic across the ensemble axis
        m = xp.max(a, axis=tuple(range(1, x.ndim)), keepdims=True)
    else:
        m = xp.max(a)
    top = x.dtype.type(top)
    s = m / top
    # a peak near the dtype's largest finite value: top·s can round past it to inf, so the largest
    # code would dequantize to inf; one step smaller keeps every output finite and within the peak
    with np.errstate(over="ignore"):
        s = xp.where(xp.isfinite(s * top), s, s * x.dtype.type(1 - 2.0**-20))
    return xp.where(s > 0, s, x.dtype.type(1)).astype(x.dtype)


def _resolve_scale(x: Any, scale: float | DynamicScale, top: float) -> Any:
    if isinstance(scale, DynamicScale):
        return _dynamic_scale(x, scale, top)
    return x.dtype.type(scale)


def _fixed_sign_level(scale: float | DynamicScale, rounding: Rounding) -> float | None:
    """``scale`` where a format that sends every non-zero x to +-scale does so exactly: nearest
    rounding, a fixed scale, and scale <= 1 (x / scale does not underflow); else None."""
    if rounding is Rounding.NEAREST and not isinstance(scale, DynamicScale) and scale <= 1:
        return float(scale)
    return None


@cache
def _log_plan(fmt: LogFormat, dtype: np.dtype) -> LogKernel | None:
    """Eq. 19's bit kernel with α folded into its bounds when α = 2^j ≤ 1, else None.

    Then x / α is exact (no underflow), so α folds into the clip bounds. The one place that
    decides this, for :meth:`LogFormat._apply` and for the precomputed path of
    :class:`lpfa.quant.Quantizer` (through ``LogFormat._kernel``).
    """
    if isinstance(fmt.alpha, DynamicScale) or dtype.kind != "f" or not dtype.isnative:
        return None
    _check_fits_once(fmt, dtype)  # raises for a format the dtype cannot hold, like quantize
    a = dtype.type(fmt.alpha)
    low = float(a) * 2.0 ** (1 - fmt.bits)
    if math.frexp(float(a))[0] != 0.5 or a > 1 or low < np.finfo(dtype).smallest_normal:
        return None
    return log_kernel(dtype, low, float(a), fmt.flush_to_zero)
