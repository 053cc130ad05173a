"""Number formats of low-precision hardware and one pure, vectorised quantizer for them all.

A format is a small frozen value object (:class:`LogFormat`, :class:`FixedPoint`, :class:`Sign`,
:class:`Ternary`, :class:`Minifloat`, :class:`Identity`); :func:`quantize` maps an array onto the
format's grid with a :class:`Rounding` mode. The learning-channel quantizer of Baldi et al. (2018),
eq. 19, is :class:`LogFormat`; its nearest-rounding path works on the float bit pattern and is
exact (it equals eq. 19 evaluated in exact arithmetic, see :class:`LogFormat`).

Every format works in a *unit space*: ``x = s * y`` with a scale ``s`` that is either fixed (a
float) or measured from the data (:class:`DynamicScale`); ``y`` is rounded onto the format's unit
grid and the result is ``s * Q(y)``. All arithmetic is done in ``x``'s dtype; the fixed scale is
rounded to that dtype first.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any

import numpy as np

from lpfa.backend import get_xp

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
    "grid",
    "parse_format",
    "quantize",
    "quantizer",
]

# numpy path of the log quantizer: elements per block, so that a block's temporaries stay in the
# L2 cache (4 arrays x 64 Ki x 4 B = 1 MiB for float32); whole arrays on other backends.
_CHUNK = 1 << 16


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
    gets scale 1.

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


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFormat:
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
            unit = _log_kernel(dt, 2.0 ** (1 - self.bits), 1.0, self.flush_to_zero)
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
            u = _uniform(rng, x, xp)
            frac = 2 * mant - 1  # (a - 2^(ex-1)) / 2^(ex-1), exact
            q = xp.ldexp(xp.ones_like(a), ex - 1 + (u < frac))
            q = xp.where(a < low, xp.where(u < a / low, low, dt.type(0)), q)
        q = xp.where(a >= 1, dt.type(1), q)
        xp.multiply(xp.sign(y), q, out=out)
        xp.multiply(out, s, out=out)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedPoint:
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
            k = k + (_uniform(rng, x, xp) < p)
        k = xp.clip(k, -self.levels if self.signed else 0, self.levels)
        xp.multiply(k, s, out=out)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Sign:
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

    def __post_init__(self) -> None:
        _check_positive("scale", self.scale, dynamic=True)

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
            u = _uniform(rng, x, xp)
            p = (1 + xp.clip(y, -1, 1)) / 2
            q = xp.where(u < p, dt.type(1), dt.type(-1))
            q = xp.where(xp.isnan(y), y, q)
        xp.multiply(q, s, out=out)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Ternary:
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
            keep = _uniform(rng, x, xp) < xp.minimum(a, 1)
        xp.multiply(xp.sign(y), keep, out=out)  # sign(NaN) * 0 stays NaN
        xp.multiply(out, s, out=out)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Minifloat:
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
class Identity:
    """No quantization: Q(x) = x (a copy), for every value including NaN and +-inf.

    Useful as the "off" format of a channel in sweeps that name a format per channel.
    """

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


def parse_format(text: str) -> Format:
    """A format from ``name[:key=value,...]``, e.g. ``log:bits=4,alpha=0.125`` or ``fp8_e4m3``.

    Names: log, fixed, sign, ternary, minifloat, identity, and the presets fp8_e4m3, fp8_e5m2,
    fp16, bf16 (which take no options). Values are Python literals (numbers, True/False, None).
    """
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    if name in _PRESETS and not rest:
        return _PRESETS[name]
    if name not in _FORMAT_NAMES:
        allowed = ", ".join([*_FORMAT_NAMES, *_PRESETS])
        raise ValueError(f"format={text!r}: the name must be one of {allowed}")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"format={text!r}: options are key=value, got {item!r}")
        try:
            kwargs[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(
                f"format={text!r}: {key.strip()}={value.strip()!r} is not a Python literal"
            ) from None
    try:
        return _FORMAT_NAMES[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"format={text!r}: {e}") from None


def quantize(
    x: Any,
    fmt: Format,
    *,
    rounding: Rounding | str = Rounding.NEAREST,
    rng: Any = None,
    out: Any = None,
) -> Any:
    """Round ``x`` onto the grid of ``fmt``; pure, one code path for numpy and CuPy.

    Parameters
    ----------
    x : array, any shape, dtype float16, float32 or float64
        Values to quantize (numpy or CuPy). Python scalars are taken as 0-d float64 numpy arrays.
    fmt : Format
        The number format; its docstring gives range, step, rounding and non-finite behaviour.
    rounding : Rounding or {"nearest", "stochastic", "toward_zero"}
        Rounding mode (see :class:`Rounding`).
    rng : numpy.random.Generator or cupy generator, optional
        Required for ``Rounding.STOCHASTIC`` (one ``rng.random(x.shape, dtype=...)`` draw per call,
        float64 for float64 input, float32 otherwise); ignored otherwise. It must draw on x's
        backend (a CuPy generator for CuPy input), so the uniforms are made where x lives.
    out : array, optional
        Preallocated result with x's shape and dtype on the same backend, not overlapping ``x``
        (saves allocating and paging in a new array: about a fifth of the log quantizer's time on
        1e7 float32 values).

    Returns
    -------
    array, shape and dtype of x, same backend
        A new array (``out`` if given); ``x`` is not modified.

    Raises
    ------
    ValueError
        For a non-float ``x``, an unknown format or rounding, a missing ``rng`` for stochastic
        rounding, a bad ``out``, or a format whose values ``x``'s dtype cannot hold.
    TypeError
        For an ``rng`` that draws on another backend than x's.
    """
    xp = get_xp(x, out)
    x = xp.asarray(x)
    if x.dtype.kind != "f":
        raise ValueError(f"x.dtype={x.dtype}: quantize needs float16, float32 or float64")
    if not isinstance(fmt, _FORMATS):
        names = ", ".join(f.__name__ for f in _FORMATS)
        raise ValueError(f"fmt={fmt!r}: must be one of {names}")
    try:
        rounding = Rounding(rounding)
    except ValueError:
        allowed = ", ".join(r.value for r in Rounding)
        raise ValueError(f"rounding={rounding!r}: must be a Rounding or one of {allowed}") from None
    if rounding is Rounding.STOCHASTIC and rng is None and not isinstance(fmt, Identity):
        raise ValueError(
            "rng=None: rounding=stochastic needs a generator, e.g. numpy.random.default_rng(seed)"
        )
    if out is None:
        out = xp.empty(x.shape, dtype=x.dtype)
    elif out.shape != x.shape or out.dtype != x.dtype or not out.flags.c_contiguous:
        raise ValueError(
            f"out.shape={out.shape}, out.dtype={out.dtype}: must be a C-contiguous array of "
            f"x's shape {x.shape} and dtype {x.dtype}"
        )
    elif xp.may_share_memory(out, x):
        raise ValueError("out: must not overlap x (quantize is pure)")
    if not isinstance(fmt, Identity):
        if isinstance(fmt, Sign) and rounding is Rounding.TOWARD_ZERO:
            raise ValueError(
                "rounding=toward_zero: Sign has no zero code; use nearest or stochastic"
            )
        _check_fits_once(fmt, x.dtype)
    if x.size == 0:
        return out
    if not x.dtype.isnative:  # the bit tricks read native-endian patterns; out keeps x's dtype
        x = x.astype(x.dtype.newbyteorder("="))
    with np.errstate(all="ignore"):  # inf / NaN inputs are part of the documented behaviour
        return fmt._apply(x, rounding, rng, out)


def grid(fmt: Format, dtype: Any = np.float32) -> np.ndarray:
    """All values of a fixed-scale format in ``dtype``, sorted ascending (numpy, on the host).

    These are exactly the values :func:`quantize` can return for finite input of that dtype
    (plus +-inf / NaN where the format overflows to them).

    Parameters
    ----------
    fmt : Format
        A format with a fixed (float) scale; not :class:`Identity`.
    dtype : numpy float dtype
        The dtype the values are computed in, as :func:`quantize` does for input of that dtype.

    Returns
    -------
    numpy.ndarray, shape (n_values,)
        Unique values; for :class:`LogFormat` ``n_values = 2 * bits + 1``.
    """
    dt = np.dtype(dtype)
    if isinstance(fmt, Identity) or not isinstance(fmt, _FORMATS):
        raise ValueError(f"fmt={fmt!r}: grid() needs a format with a finite grid")
    scale = fmt._scale()
    if isinstance(scale, DynamicScale):
        raise ValueError(f"fmt={fmt!r}: grid() needs a fixed scale, not {scale}")
    fmt._check_fits(dt, scale)
    with np.errstate(all="ignore"):
        values = fmt._unit_grid().astype(dt) * dt.type(scale)
    return np.unique(values)


# --- implementation helpers -------------------------------------------------------------------


@cache
def _check_fits_once(fmt: Any, dtype: np.dtype) -> None:
    """``fmt._check_fits`` for a fixed-scale format, remembered per (format, dtype)."""
    fmt._check_fits(dtype, fmt._scale())


@dataclass(frozen=True, slots=True)
class _LogKernel:
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
        if x.ndim and (x.size <= _CHUNK or xp is not np):  # whole array: fewer calls when small
            y = x if scale is None else x / scale
            r = y.view(self.int_type) + self.round_up
            self._finish(y, r, out, xp, scale)
            return
        # numpy, large: block by block, so that the temporaries stay in cache
        flat_x, flat_out = xp.ravel(x), out.reshape(-1)
        n = flat_x.size
        chunk = min(n, _CHUNK)
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
        xp.minimum(m, self.high, out=m)
        if not self.flush:
            xp.maximum(m, self.low, out=m)
        elif self.flush_add is not None:
            xp.add(m, self.flush_add, out=m)
            xp.subtract(m, self.flush_add, out=m)
        else:
            xp.multiply(m, m >= self.low, out=m)
        xp.sign(y, out=out)
        if scale is not None:
            xp.multiply(out, scale, out=out)
        xp.multiply(out, m, out=out)


@cache
def _log_kernel(dtype: np.dtype, low: float, high: float, flush: bool) -> _LogKernel:
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
    return _LogKernel(it, it(2**n - f_min), exp_mask, t(low), t(high), flush, flush_add)


def _log_reference(
    x: np.ndarray, bits: int, alpha: float, flush_to_zero: bool = False
) -> np.ndarray:
    """Eq. 19 written out, evaluated in float64 after y = x / alpha in x's dtype (test oracle).

    For float16 and float32 input this is exact: no such float has log2|y| within 2e-8 of a
    half-integer, far above float64's error. For float64 input it is not exact within about 1e-15
    (relative) of the boundaries alpha * 2^k * sqrt(2), where float64's log2 can return k + 1/2 and
    ``rint``'s ties-to-even decides; :func:`quantize` decides those exactly.
    """
    a = x.dtype.type(alpha)
    with np.errstate(all="ignore"):
        y = (x / a).astype(np.float64)
        e = np.rint(np.log2(np.abs(y)))
        q = np.exp2(np.clip(e, -bits + 1, 0))
        if flush_to_zero:
            q = np.where(e < -bits + 1, 0.0, q)
        return (float(a) * np.sign(y) * q).astype(x.dtype)


def _uniform(rng: Any, x: Any, xp: Any) -> Any:
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


def _round_real(z: Any, rounding: Rounding, rng: Any, x: Any, xp: Any) -> Any:
    """Round z to an integer: rint (ties to even), trunc, or floor plus Bernoulli(frac(z))."""
    if rounding is Rounding.NEAREST:
        return xp.rint(z)
    if rounding is Rounding.TOWARD_ZERO:
        return xp.trunc(z)
    fl = xp.floor(z)
    return fl + (_uniform(rng, x, xp) < z - fl)  # z - floor(z) is exact


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
    s = m / x.dtype.type(top)
    return xp.where(s > 0, s, x.dtype.type(1)).astype(x.dtype)


def _resolve_scale(x: Any, scale: float | DynamicScale, top: float) -> Any:
    if isinstance(scale, DynamicScale):
        return _dynamic_scale(x, scale, top)
    return x.dtype.type(scale)


def quantizer(spec: str | None, rounding: Rounding | str = Rounding.NEAREST, rng: Any = None):
    """A one-argument quantizer ``q(x)`` for a format spec, or None when ``spec`` is None.

    ``q(x)`` equals ``quantize(x, fmt, rounding=rounding, rng=rng)``; ``q.fmt`` is the format and
    ``q.keeps_zero`` says whether q(0) = 0 (worked out once, on the host). For the hot case of the
    learning channel, eq. 19 with nearest rounding and α = 2^j ≤ 1, it runs the same bit-level
    kernel with the constants worked out once per dtype instead of on every call.

    Parameters
    ----------
    spec : str or None
        ``name:key=value,…`` (see :func:`parse_format`).
    rounding : Rounding or str
    rng : generator, optional
        Needed for stochastic rounding (the channel's runtime generator).
    """
    if spec is None:
        return None
    fmt = parse_format(spec)
    rounding = Rounding(rounding) if isinstance(rounding, str) else rounding
    planned = isinstance(fmt, LogFormat) and rounding is Rounding.NEAREST

    def q(x: Any) -> Any:
        kernel = _log_plan(fmt, x.dtype) if planned else None
        if kernel is None or not x.flags.c_contiguous:
            return quantize(x, fmt, rounding=rounding, rng=rng)
        xp = get_xp(x)
        out = xp.empty(x.shape, dtype=x.dtype)
        kernel(x, out, xp)
        return out

    q.fmt = fmt  # type: ignore[attr-defined]
    q.keeps_zero = _keeps_zero(fmt, rounding)  # type: ignore[attr-defined]
    return q


def _keeps_zero(fmt: Format, rounding: Rounding) -> bool:
    """Whether ``fmt`` maps 0 to 0 (a sum of quantized products may then skip zero factors)."""
    try:
        zero = quantize(np.zeros(1), fmt, rounding=rounding, rng=np.random.default_rng(0))
    except ValueError:  # a format float64 cannot hold: claim nothing
        return False
    return bool(zero[0] == 0)


@cache
def _log_plan(fmt: LogFormat, dtype: np.dtype) -> _LogKernel | None:
    """Eq. 19's bit kernel with α folded into its bounds when α = 2^j ≤ 1, else None.

    Then x / α is exact (no underflow), so α folds into the clip bounds. The one place that
    decides this, for :meth:`LogFormat._apply` and for :func:`quantizer`'s precomputed path.
    """
    if isinstance(fmt.alpha, DynamicScale) or dtype.kind != "f" or not dtype.isnative:
        return None
    _check_fits_once(fmt, dtype)  # raises for a format the dtype cannot hold, like quantize
    a = dtype.type(fmt.alpha)
    low = float(a) * 2.0 ** (1 - fmt.bits)
    if math.frexp(float(a))[0] != 0.5 or a > 1 or low < np.finfo(dtype).smallest_normal:
        return None
    return _log_kernel(dtype, low, float(a), fmt.flush_to_zero)
