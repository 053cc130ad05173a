"""Number formats of low-precision hardware and one pure, vectorised quantizer for them all.

A format is a small frozen value object (:class:`LogFormat`, :class:`FixedPoint`, :class:`Sign`,
:class:`Ternary`, :class:`Minifloat`, :class:`Identity`, defined in :mod:`lpfa.quant_formats`)
that describes itself: its grid, its decision points, bits, symmetry, zero, non-finite images and
roundings. :func:`quantize` maps an array onto the format's grid with a :class:`Rounding` mode;
:func:`quantizer` makes a one-argument :class:`Quantizer` from a format spec (what the channel and
the arrays call). The learning-channel quantizer of Baldi et al. (2018), eq. 19, is
:class:`LogFormat`; its nearest-rounding path works on the float bit pattern and is exact (it
equals eq. 19 evaluated in exact arithmetic, see :class:`LogFormat` and
:mod:`lpfa.quant_kernels`).

Every format works in a *unit space*: ``x = s * y`` with a scale ``s`` that is either fixed (a
float) or measured from the data (:class:`DynamicScale`); ``y`` is rounded onto the format's unit
grid and the result is ``s * Q(y)``. All arithmetic is done in ``x``'s dtype; the fixed scale is
rounded to that dtype first.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lpfa.backend import get_xp
from lpfa.quant_formats import (
    _FORMAT_NAMES,
    _FORMATS,
    _PRESETS,
    BF16,
    FP8_E4M3,
    FP8_E5M2,
    FP16,
    DynamicScale,
    FixedPoint,
    Format,
    Identity,
    LogFormat,
    Minifloat,
    Rounding,
    Sign,
    Ternary,
    _check_fits_once,
)

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
    "Quantizer",
    "Rounding",
    "Sign",
    "Ternary",
    "grid",
    "parse_format",
    "quantize",
    "quantizer",
]


_DYNAMIC = {d.value: d for d in DynamicScale}


def parse_format(text: str) -> Format:
    """A format from ``name[:key=value,...]``, e.g. ``log:bits=4,alpha=0.125`` or ``fp8_e4m3``.

    Names: log, fixed, sign, ternary, minifloat, identity, and the presets fp8_e4m3, fp8_e5m2,
    fp16, bf16 (which take no options). Values are Python literals (numbers, True/False, None) or
    the name of a :class:`DynamicScale` for a scale measured from the data:
    ``log:bits=3,alpha=per_row``.
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
        value = value.strip()
        try:
            kwargs[key.strip()] = _DYNAMIC.get(value.lower()) or ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ValueError(
                f"format={text!r}: {key.strip()}={value!r} is not a Python literal or one of "
                f"{', '.join(_DYNAMIC)}"
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
    rounding = _check_call(fmt, rounding, rng)
    if out is None:
        out = xp.empty(x.shape, dtype=x.dtype)
    elif out.shape != x.shape or out.dtype != x.dtype or not out.flags.c_contiguous:
        raise ValueError(
            f"out.shape={out.shape}, out.dtype={out.dtype}: must be a C-contiguous array of "
            f"x's shape {x.shape} and dtype {x.dtype}"
        )
    elif xp.may_share_memory(out, x):
        raise ValueError("out: must not overlap x (quantize is pure)")
    _check_fits_once(fmt, x.dtype)
    if x.size == 0:
        return out
    if not x.dtype.isnative:  # the bit tricks read native-endian patterns; out keeps x's dtype
        x = x.astype(x.dtype.newbyteorder("="))
    with np.errstate(all="ignore"):  # inf / NaN inputs are part of the documented behaviour
        return fmt._apply(x, rounding, rng, out)


def grid(fmt: Format, dtype: Any = np.float32) -> np.ndarray:
    """All values of a fixed-scale format in ``dtype``, sorted ascending: ``fmt.grid(dtype)``.

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
    numpy.ndarray, shape (fmt.n_values,)
        Unique values; for :class:`LogFormat` ``2 * bits + 1`` of them.
    """
    if not isinstance(fmt, _FORMATS):
        raise ValueError(f"fmt={fmt!r}: grid() needs a format with a finite grid")
    return fmt.grid(dtype)


def _check_call(fmt: Any, rounding: Any, rng: Any) -> Rounding:
    """The Rounding of a call, after checking the format, the rounding and the generator."""
    if not isinstance(fmt, _FORMATS):
        names = ", ".join(f.__name__ for f in _FORMATS)
        raise ValueError(f"fmt={fmt!r}: must be one of {names}")
    try:
        rounding = Rounding(rounding)
    except ValueError:
        allowed = ", ".join(r.value for r in Rounding)
        raise ValueError(f"rounding={rounding!r}: must be a Rounding or one of {allowed}") from None
    if rounding not in fmt.roundings:
        allowed = " or ".join(r.value for r in Rounding if r in fmt.roundings)
        why = fmt._ROUNDING_GAPS[rounding]
        raise ValueError(f"rounding={rounding.value}: {why}; use {allowed}")
    if rounding is Rounding.STOCHASTIC and rng is None and fmt.n_values is not None:
        raise ValueError(
            "rng=None: rounding=stochastic needs a generator, e.g. numpy.random.default_rng(seed)"
        )
    return rounding


@dataclass(frozen=True, kw_only=True)
class Quantizer:
    """A one-argument quantizer: ``q(x) == quantize(x, q.fmt, rounding=q.rounding, rng=q.rng)``.

    What the learning channel and the arrays call on every signal (made by :func:`quantizer`).
    For the hot case of the learning channel, eq. 19 with nearest rounding and α = 2^j ≤ 1, it
    runs the format's bit-level kernel with the constants worked out once per dtype instead of on
    every call. Its fields live in the instance ``__dict__`` (no slots), so wrappers made with
    ``functools.wraps`` carry them.

    Attributes
    ----------
    fmt : Format
        The number format.
    rounding : Rounding
    rng : generator, optional
        Needed for stochastic rounding (the channel's runtime generator).
    keeps_zero : bool
        Whether q(0) = 0 (``fmt.has_zero``): a sum of quantized products may skip zero factors.
    sign_level : float or None
        c where q(x) = c · sign(x) for every x (``fmt.sign_level(rounding)``): then a sum of
        quantized products q(r_b · o_b) is c times a product of signs.
    """

    fmt: Format
    rounding: Rounding = Rounding.NEAREST
    rng: Any = None
    keeps_zero: bool = field(init=False)
    sign_level: float | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounding", _check_call(self.fmt, self.rounding, self.rng))
        object.__setattr__(self, "keeps_zero", self.fmt.has_zero)
        object.__setattr__(self, "sign_level", self.fmt.sign_level(self.rounding))

    def __call__(self, x: Any) -> Any:
        """``quantize(x, fmt, rounding=rounding, rng=rng)``: a new array, x's shape and dtype."""
        kernel = self.fmt._kernel(x.dtype, self.rounding)
        if kernel is None or not x.flags.c_contiguous:
            return quantize(x, self.fmt, rounding=self.rounding, rng=self.rng)
        xp = get_xp(x)
        out = xp.empty(x.shape, dtype=x.dtype)
        kernel(x, out, xp)
        return out


def quantizer(
    spec: str | Format | None, rounding: Rounding | str = Rounding.NEAREST, rng: Any = None
) -> Quantizer | None:
    """A :class:`Quantizer` for a format spec (or a format), or None when ``spec`` is None.

    Parameters
    ----------
    spec : str, Format or None
        ``name:key=value,…`` (see :func:`parse_format`), or a format object.
    rounding : Rounding or str
    rng : generator, optional
        Needed for stochastic rounding (the channel's runtime generator).

    Raises
    ------
    ValueError
        For a bad spec, or a rounding the format does not support.
    """
    if spec is None:
        return None
    fmt = parse_format(spec) if isinstance(spec, str) else spec
    return Quantizer(fmt=fmt, rounding=rounding, rng=rng)
