"""Properties of every format and rounding mode; the test kit passes our quantizers and catches
a deliberately broken quantizer for each of its contracts."""

import itertools
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpfa.quant import (
    FP8_E4M3,
    FP16,
    DynamicScale,
    FixedPoint,
    Identity,
    LogFormat,
    Minifloat,
    Rounding,
    Sign,
    Ternary,
    grid,
    quantize,
)
from lpfa.testing.contracts import CONTRACTS, Outcome, check_quantizer
from lpfa.testing.oracles import log_reference
from lpfa.testing.strategies import float_arrays, format_values, formats

F32 = np.float32
PROPS = settings(max_examples=60, deadline=None)


def roundings_for(fmt):
    return [r for r in Rounding if not (isinstance(fmt, Sign) and r is Rounding.TOWARD_ZERO)]


@st.composite
def format_and_input(draw, dynamic=False):
    """A format, a rounding it supports, and a float32 array of values that exercise it."""
    fmt = draw(formats(dynamic=dynamic))
    rounding = draw(st.sampled_from(roundings_for(fmt)))
    fixed = not isinstance(fmt, Identity) and fmt.dynamic_scale is None
    values = format_values(fmt) if fixed else None
    x = draw(float_arrays(F32, elements=values, min_dims=1, max_dims=2, min_side=1))
    return fmt, rounding, x


def q(x, fmt, rounding, seed=0):
    return quantize(x, fmt, rounding=rounding, rng=np.random.default_rng(seed))


# --- properties of quantize() over random formats -------------------------------------------------


@PROPS
@given(format_and_input())
def test_output_is_on_the_grid_in_range_and_idempotent(case):
    fmt, rounding, x = case
    out = q(x, fmt, rounding)
    assert out.dtype == x.dtype
    assert out.shape == x.shape
    assert np.array_equal(q(out, fmt, rounding, seed=1), out)
    if isinstance(fmt, Identity):
        assert np.array_equal(out, x)
        return
    g = grid(fmt, F32)
    finite = np.isfinite(out)
    assert np.isin(out[finite], g).all()
    overflow = isinstance(fmt, Minifloat) and not fmt.saturate
    assert finite.all() or overflow
    assert ((out[finite] >= g[0]) & (out[finite] <= g[-1])).all()


@PROPS
@given(format_and_input())
def test_deterministic_rounding_is_monotone_and_odd(case):
    fmt, rounding, x = case
    if rounding is Rounding.STOCHASTIC:
        rounding = Rounding.NEAREST
    xs = np.sort(x.ravel())
    out = q(xs, fmt, rounding)
    assert (np.diff(out.astype(np.float64)) >= 0).all()
    if not (isinstance(fmt, FixedPoint) and not fmt.signed):
        nz = xs[xs != 0]
        assert np.array_equal(q(-nz, fmt, rounding), -q(nz, fmt, rounding))


@PROPS
@given(format_and_input())
def test_error_is_below_one_step_and_toward_zero_never_grows(case):
    fmt, rounding, x = case
    if isinstance(fmt, Identity):
        return
    g = grid(fmt, F32).astype(np.float64)
    c = np.clip(x.astype(np.float64).ravel(), g[0], g[-1])
    out = q(x, fmt, rounding).astype(np.float64).ravel()
    i = np.clip(np.searchsorted(g, c, side="right") - 1, 0, g.size - 1)
    lo, hi = g[i], g[np.minimum(i + 1, g.size - 1)]
    ok = (out == lo) | (out == hi)
    if isinstance(fmt, FixedPoint) and rounding is Rounding.NEAREST:
        ok |= np.isin(out, g) & (np.abs(out - c) <= (hi - lo) / 2 * (1 + 1e-6))  # ulp of x/step
    assert ok.all()
    if rounding is Rounding.TOWARD_ZERO:
        assert (np.abs(out) <= np.abs(c)).all()


@PROPS
@given(format_and_input(dynamic=True))
def test_dynamic_scales_stay_within_the_measured_peak(case):
    fmt, rounding, x = case
    if isinstance(fmt, Identity | Minifloat):
        return
    out = q(x, fmt, rounding)
    scale = fmt.dynamic_scale
    if scale is not None:
        axis = -1 if scale is DynamicScale.PER_ROW else None
        peak = np.max(np.abs(x), axis=axis, keepdims=True).astype(np.float64)  # no overflow
        peak = np.where(peak > 0, peak, 1)
        assert (np.abs(out) <= peak * (1 + 1e-6)).all()


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 12),
    st.sampled_from([2.0**-3, 2.0**-6, 1.0, 0.3, 5.0]),
    st.booleans(),
    float_arrays(F32, min_dims=1, max_dims=1, min_side=1, max_side=50),
)
def test_log_format_equals_the_eq19_reference(bits, alpha, flush, x):
    np.testing.assert_array_equal(
        quantize(x, LogFormat(bits=bits, alpha=alpha, flush_to_zero=flush)),
        log_reference(x, bits, alpha, flush),
    )


@settings(max_examples=40, deadline=None)
@given(float_arrays(F32, min_dims=1, max_dims=1, min_side=1, max_side=50))
def test_fp16_like_equals_the_numpy_cast(x):
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).astype(F32)
    np.testing.assert_array_equal(quantize(x, FP16), want)


# --- the kit passes our own quantizers ----------------------------------------------------------

KIT_FORMATS = [
    LogFormat(bits=4, alpha=0.125),
    LogFormat(bits=3, alpha=0.3),
    FixedPoint(bits=4, step=0.1),
    FixedPoint(bits=3, full_scale=1.0, signed=False),
    Sign(scale=0.5),
    Ternary(threshold=0.7, scale=2.0),
    FP8_E4M3,
    FP16,
    Minifloat(exp_bits=3, man_bits=1, subnormals=False),
    Identity(),
]


@pytest.mark.parametrize(
    ("fmt", "rounding"),
    [(f, r) for f in KIT_FORMATS for r in roundings_for(f)],
    ids=lambda v: v.value if isinstance(v, Rounding) else type(v).__name__,
)
def test_our_quantizers_pass_the_kit(fmt, rounding):
    report = check_quantizer(
        partial(quantize, fmt=fmt, rounding=rounding), fmt, rounding=rounding, max_examples=15
    )
    assert report.ok, f"{fmt}\n{report}"
    assert [r.name for r in report.results] == list(CONTRACTS)


# --- and each contract catches a quantizer that breaks it -----------------------------------------

STEP = FixedPoint(bits=4, step=0.25)  # the grid -1.75, -1.5, ..., 1.75


def nearest(x):
    return quantize(x, STEP)


def wrong_dtype(x):
    return nearest(x).astype(np.float64)


def in_place(x):
    x[...] = nearest(x)
    return x


def off_grid(x):
    return nearest(x) * x.dtype.type(1.01)


def unclamped(x):
    return (np.rint(x * 4) / 4).astype(x.dtype)


def not_idempotent(x):
    return quantize(x + x.dtype.type(0.25), STEP)  # on the grid, but moves grid values up


def not_monotone(x):
    out = nearest(x)
    return np.where((x > 0.3) & (x < 0.6), x.dtype.type(0), out)


def floor_rounding(x):
    return np.clip(np.floor(x * 4) / 4, -1.75, 1.75).astype(x.dtype)


def truncating(x):
    return quantize(x, STEP, rounding=Rounding.TOWARD_ZERO)


def biased(x, rng):
    u = rng.random(x.shape, dtype=np.float32) * 0.8  # rounds up too often
    k = np.floor(x * 4)
    return np.clip((k + (u < x * 4 - k)) / 4, -1.75, 1.75).astype(x.dtype)


_calls = itertools.count()


def unseeded(x, rng):
    return quantize(x, STEP, rounding=Rounding.STOCHASTIC, rng=np.random.default_rng(next(_calls)))


def nan_to_zero(x):
    return nearest(np.nan_to_num(x, nan=0.0))


BROKEN = {
    "dtype_shape": (wrong_dtype, Rounding.NEAREST),
    "on_grid": (off_grid, Rounding.NEAREST),
    "in_range": (unclamped, Rounding.NEAREST),
    "idempotent": (not_idempotent, Rounding.NEAREST),
    "monotone": (not_monotone, Rounding.NEAREST),
    "odd_symmetric": (floor_rounding, Rounding.NEAREST),
    "error_bound": (truncating, Rounding.NEAREST),
    "unbiased": (biased, Rounding.STOCHASTIC),
    "reproducible": (unseeded, Rounding.STOCHASTIC),
    "nonfinite": (nan_to_zero, Rounding.NEAREST),
}


def test_every_contract_has_a_broken_quantizer():
    assert set(BROKEN) == set(CONTRACTS)


@pytest.mark.parametrize("contract", CONTRACTS)
def test_each_contract_catches_its_broken_quantizer(contract):
    broken, rounding = BROKEN[contract]
    report = check_quantizer(broken, STEP, rounding=rounding, contracts=[contract], max_examples=50)
    result = report[contract]
    assert result.outcome is Outcome.FAILS, str(report)
    assert result.example is not None
    assert result.detail
    assert result.line().startswith(f"FAILS    {contract}: x=")
    assert not report.ok


def test_in_place_quantizer_fails_dtype_shape():
    report = check_quantizer(in_place, STEP, contracts=["dtype_shape"], max_examples=50)
    assert report["dtype_shape"].outcome is Outcome.FAILS


def test_failing_examples_are_shrunk():
    result = check_quantizer(truncating, STEP, contracts=["error_bound"])["error_bound"]
    assert result.example.size == 1  # hypothesis shrinks the array to the one bad element


def test_the_kit_tells_flush_to_zero_from_eq19_as_written():
    # each log quantizer fails the other's contract just below the lowest level
    flush = LogFormat(bits=3, alpha=0.125, flush_to_zero=True)
    plain = LogFormat(bits=3, alpha=0.125)
    for claimed, actual in ((flush, plain), (plain, flush)):
        report = check_quantizer(
            lambda x, f=actual: quantize(x, f), claimed, contracts=["error_bound"]
        )
        assert report["error_bound"].outcome is Outcome.FAILS, str(report)
