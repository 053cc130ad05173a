"""Number formats and quantize(): examples, edges, documented semantics and field validation."""

import math
from fractions import Fraction

import numpy as np
import pytest

from lpfa import quant
from lpfa.backend import to_numpy
from lpfa.quant import (
    BF16,
    FP8_E4M3,
    FP8_E5M2,
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
    parse_format,
    quantize,
    quantizer,
)
from lpfa.quant_kernels import CHUNK
from lpfa.testing.cli import check_quantizer_main
from lpfa.testing.oracles import log_reference

F32 = np.float32
ALL_FORMATS = [
    LogFormat(bits=4, alpha=0.125),
    FixedPoint(bits=4, step=0.25),
    Sign(),
    Ternary(),
    FP8_E4M3,
    Identity(),
]


def q32(values, fmt, **kw):
    return quantize(np.asarray(values, dtype=F32), fmt, **kw)


def special_floats32():
    """Every exponent at mantissas near the sqrt(2) boundary, powers of two and their neighbours,
    subnormals, zeros and non-finite values: float32, both signs."""
    m = np.arange(0x3504F4 - 40, 0x3504F4 + 40, dtype=np.int64)
    e = np.arange(0, 255, dtype=np.int64)
    near_sqrt2 = ((e[:, None] << 23) | m[None, :]).ravel().astype(np.int32).view(F32)
    pow2 = (e << 23).astype(np.int32).view(F32)
    up = np.nextafter(pow2, F32(np.inf))
    down = np.nextafter(pow2, F32(0))
    sub = np.arange(1, 3000, 7, dtype=np.int32).view(F32)
    x = np.concatenate([near_sqrt2, pow2, up, down, sub, [0.0, np.inf, np.nan]]).astype(F32)
    return np.concatenate([x, -x])


# --- LogFormat (Baldi et al. 2018, eq. 19) --------------------------------------------------------


def test_log_format_documented_values_at_the_edges():
    fmt = LogFormat(bits=3, alpha=0.125)
    x = [0.0, -0.0, 0.125, -0.125, 1.0, -7.0, 1e-30, -1e-30, np.inf, -np.inf, np.nan]
    q = q32(x, fmt)
    want = [0, 0, 0.125, -0.125, 0.125, -0.125, 0.03125, -0.03125, 0.125, -0.125, np.nan]
    np.testing.assert_array_equal(q, np.asarray(want, dtype=F32))
    assert not np.signbit(q[1])  # Q(-0.0) = +0.0: sign(-0.0) is 0


def test_log_format_flush_to_zero_sends_the_lower_half_step_to_zero():
    fmt = LogFormat(bits=3, alpha=0.125, flush_to_zero=True)
    edge = 0.03125 / math.sqrt(2)  # half a log-step below the lowest level 2^-5
    below, above = F32(edge * (1 - 1e-6)), F32(edge * (1 + 1e-6))
    x = [0.0, below, above, -above, 1e-30, 0.2, np.inf, -np.inf, np.nan]
    q = q32(x, fmt)
    want = [0, 0, 0.03125, -0.03125, 0, 0.125, 0.125, -0.125, np.nan]
    np.testing.assert_array_equal(q, np.asarray(want, dtype=F32))
    # above the lowest level nothing changes
    y = np.geomspace(0.0222, 10, 5001).astype(F32)
    np.testing.assert_array_equal(quantize(y, fmt), quantize(y, LogFormat(bits=3, alpha=0.125)))
    # toward zero flushes anyway; the option changes nearest rounding only
    tz = LogFormat(bits=3, alpha=0.125)
    np.testing.assert_array_equal(
        quantize(y, fmt, rounding="toward_zero"), quantize(y, tz, rounding="toward_zero")
    )


def test_log_format_flush_to_zero_is_validated_and_parsed():
    assert parse_format("log:bits=3,alpha=0.125,flush_to_zero=True").flush_to_zero is True
    with pytest.raises(ValueError, match=r"flush_to_zero=1: must be True or False"):
        LogFormat(bits=3, alpha=0.125, flush_to_zero=1)


@pytest.mark.parametrize("flush", [False, True])
@pytest.mark.parametrize("bits", range(1, 9))
def test_log_format_has_2_bits_plus_1_values(bits, flush):
    fmt = LogFormat(bits=bits, alpha=0.125, flush_to_zero=flush)
    sweep = np.concatenate([np.geomspace(1e-12, 1e3, 20001), [0.0]]).astype(F32)
    sweep = np.concatenate([sweep, -sweep])
    assert np.unique(quantize(sweep, fmt)).size == 2 * bits + 1
    assert grid(fmt).size == 2 * bits + 1
    np.testing.assert_array_equal(np.unique(quantize(sweep, fmt)), grid(fmt))


def test_log_format_rounds_in_the_log_domain_at_sqrt2():
    fmt = LogFormat(bits=8, alpha=1.0)
    for k in range(7):
        edge = F32(2.0**-k / math.sqrt(2))  # boundary between 2^-k and 2^-(k+1)
        below, above = F32(edge * (1 - 1e-6)), F32(edge * (1 + 1e-6))
        assert q32([below], fmt)[0] == 2.0 ** -(k + 1)
        assert q32([above], fmt)[0] == 2.0**-k
    # The linear midpoint 0.75 is above sqrt(2) / 2 ~ 0.7071, so it goes up to 1 ...
    assert q32([0.75], fmt)[0] == 1.0
    # ... and 0.7 is below the log-domain boundary, so it goes down although 0.7 > 0.5 + 0.5 / 2.
    assert q32([0.7], fmt)[0] == 0.5


@pytest.mark.parametrize("flush", [False, True])
def test_log_format_float32_bit_trick_equals_eq19_reference(flush):
    x = special_floats32()
    for alpha in (2.0**-3, 2.0**-6, 1.0, 0.3, 4.0, 1e-30, 2.0**-100):
        for bits in (1, 2, 3, 8, 20):
            got = quantize(x, LogFormat(bits=bits, alpha=alpha, flush_to_zero=flush))
            want = log_reference(x, bits, alpha, flush)
            np.testing.assert_array_equal(got, want, err_msg=f"alpha={alpha} bits={bits}")


@pytest.mark.parametrize("flush", [False, True])
def test_log_format_random_values_equal_reference_across_chunks(flush):
    rng = np.random.default_rng(0)
    n = 3 * CHUNK + 17  # several blocks and a ragged last one
    x = (rng.standard_normal(n) * np.exp2(rng.uniform(-30, 5, n))).astype(F32)
    x[::5] = 0
    for alpha, bits in ((0.125, 4), (0.3, 6)):
        fmt = LogFormat(bits=bits, alpha=alpha, flush_to_zero=flush)
        np.testing.assert_array_equal(quantize(x, fmt), log_reference(x, bits, alpha, flush))
        spec = f"log:bits={bits},alpha={alpha},flush_to_zero={flush}"
        np.testing.assert_array_equal(quantizer(spec)(x), quantize(x, fmt))


def _exact_log_q(v: float, bits: int, alpha: float) -> float:
    """Eq. 19 in exact rational arithmetic on y = fl(v / alpha) (float64)."""
    y = v / alpha
    if y == 0:
        return 0.0
    a = abs(Fraction(y))
    k = 0
    while a < Fraction(1, 2 ** (k + 1)) and k < bits:
        k += 1
    # 2^-(k+1) <= a < 2^-k, or a >= 1 (k = 0)
    if a >= 1:
        level = Fraction(1)
    else:
        lo = Fraction(1, 2 ** (k + 1))
        level = 2 * lo if a * a > 2 * lo * lo else lo
    level = max(level, Fraction(1, 2 ** (bits - 1)))
    return math.copysign(float(level) * alpha, y)


def test_log_format_float64_is_exact_where_float64_log2_is_not():
    bits, alpha = 8, 0.125
    xs = []
    for k in range(bits + 1):
        v = np.float64(math.sqrt(2) * 2.0**-k * alpha)
        for steps in range(-3, 4):
            w = v
            for _ in range(abs(steps)):
                w = np.nextafter(w, np.inf if steps > 0 else 0.0)
            xs.append(w)
    x = np.asarray(xs + [-v for v in xs])
    want = np.asarray([_exact_log_q(float(v), bits, alpha) for v in x])
    np.testing.assert_array_equal(quantize(x, LogFormat(bits=bits, alpha=alpha)), want)
    # The float64 reference (eq. 19 through log2) is not exact at some of these boundaries.
    assert not np.array_equal(log_reference(x, bits, alpha), want)


@pytest.mark.parametrize("flush", [False, True])
def test_log_format_float16_equals_reference(flush):
    x = np.arange(0, 0x7C01, dtype=np.uint16).view(np.float16)  # every finite float16 >= 0
    x = np.concatenate([x, -x, np.asarray([np.inf, np.nan], dtype=np.float16)])
    # bits >= 11 spans more than float16's 10-bit mantissa: flushing takes its slower path
    for alpha, bits in ((0.125, 4), (0.3, 6), (1.0, 11), (1.0, 15 - flush)):
        got = quantize(x, LogFormat(bits=bits, alpha=alpha, flush_to_zero=flush))
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, log_reference(x, bits, alpha, flush))
    if flush:  # the decision at 2^-14 / sqrt(2) would fall among the subnormals
        with pytest.raises(ValueError, match=r"the lowest / sqrt\(2\)\) outside the normal range"):
            quantize(x, LogFormat(bits=15, alpha=1.0, flush_to_zero=True))


def test_log_format_toward_zero_and_stochastic_edges():
    fmt = LogFormat(bits=3, alpha=1.0)
    x = [0.0, 0.2, 0.3, 0.7, 1.5, 1e-9, -0.9, np.inf, np.nan]
    tz = q32(x, fmt, rounding=Rounding.TOWARD_ZERO)
    np.testing.assert_array_equal(tz, np.asarray([0, 0, 0.25, 0.5, 1, 0, -0.5, 1, np.nan], F32))
    st = q32(x, fmt, rounding="stochastic", rng=np.random.default_rng(0))
    assert set(np.abs(st[np.isfinite(st)]).tolist()) <= {0.0, 0.25, 0.5, 1.0}
    np.testing.assert_array_equal(st[[0, 4, 7, 8]], np.asarray([0, 1, 1, np.nan], F32))


def test_log_format_needs_normal_levels_in_the_dtype():
    with pytest.raises(ValueError, match=r"x\.dtype=float16: LogFormat\(bits=20"):
        quantize(np.ones(3, np.float16), LogFormat(bits=20, alpha=1.0))
    with pytest.raises(ValueError, match=r"x\.dtype=float32"):
        quantize(np.ones(3, F32), LogFormat(bits=4, alpha=1e-38))


# --- FixedPoint, Sign, Ternary ------------------------------------------------------------------


def test_fixed_point_grid_ties_clamp_and_nonfinite():
    fmt = FixedPoint(bits=4, step=0.25)  # codes -7..7
    assert fmt.levels == 7
    np.testing.assert_array_equal(grid(fmt), np.arange(-7, 8, dtype=F32) * F32(0.25))
    x = [0.125, 0.375, -0.125, -0.375, 1.6, 9.0, -9.0, np.inf, -np.inf, np.nan, 0.0]
    want = [0.0, 0.5, 0.0, -0.5, 1.5, 1.75, -1.75, 1.75, -1.75, np.nan, 0.0]  # ties to even
    np.testing.assert_array_equal(q32(x, fmt), np.asarray(want, F32))
    tz = q32([0.49, -0.49, 1.99], fmt, rounding=Rounding.TOWARD_ZERO)
    np.testing.assert_array_equal(tz, np.asarray([0.25, -0.25, 1.75], F32))


def test_fixed_point_full_scale_and_unsigned():
    fmt = FixedPoint(bits=3, full_scale=1.0, signed=False)  # codes 0..7, step 1/7
    assert fmt.levels == 7
    g = grid(fmt)
    np.testing.assert_array_equal(g[[0, -1]], [0.0, 1.0])
    assert g.size == 8
    np.testing.assert_array_equal(q32([-3.0, 5.0, 1.0], fmt), np.asarray([0, 1, 1], F32))
    # toward zero compares with the grid values themselves: idempotent for a step like 1/7
    np.testing.assert_array_equal(quantize(g, fmt, rounding="toward_zero"), g)
    np.testing.assert_array_equal(
        quantize(g, fmt, rounding="stochastic", rng=np.random.default_rng(1)), g
    )


def test_sign_maps_zero_to_plus_scale():
    x = [0.0, -0.0, 1e-30, -1e-30, 3.0, -np.inf, np.nan]
    q = q32(x, Sign(scale=0.5))
    np.testing.assert_array_equal(q, np.asarray([0.5, 0.5, 0.5, -0.5, 0.5, -0.5, np.nan], F32))
    with pytest.raises(ValueError, match="rounding=toward_zero: Sign has no zero"):
        q32(x, Sign(), rounding=Rounding.TOWARD_ZERO)
    st = q32(np.zeros(4000), Sign(), rounding="stochastic", rng=np.random.default_rng(0))
    assert set(st.tolist()) == {-1.0, 1.0}


def test_ternary_threshold_tie_goes_to_zero():
    fmt = Ternary(threshold=0.5, scale=2.0)
    x = [1.0, -1.0, 1.0001, -1.0001, 5.0, np.inf, np.nan, 0.0]
    want = [0, 0, 2, -2, 2, 2, np.nan, 0]
    np.testing.assert_array_equal(q32(x, fmt), np.asarray(want, F32))
    tz = q32([1.99, 2.0, -2.5], fmt, rounding="toward_zero")
    np.testing.assert_array_equal(tz, np.asarray([0, 2, -2], F32))


# --- Minifloat ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "max_value", "min_normal", "min_subnormal", "n_values"),
    [
        (FP8_E4M3, 448.0, 2.0**-6, 2.0**-9, 253),
        (FP8_E5M2, 57344.0, 2.0**-14, 2.0**-16, 247),
        (FP16, 65504.0, 2.0**-14, 2.0**-24, 2 * (31 * 1024 - 1) + 1),
        (BF16, float(np.ldexp(2 - 2.0**-7, 127)), 2.0**-126, 2.0**-133, 2 * (255 * 128 - 1) + 1),
    ],
)
def test_minifloat_presets_have_documented_limits(
    fmt, max_value, min_normal, min_subnormal, n_values
):
    assert fmt.max_value == max_value
    assert fmt.min_normal == min_normal
    assert fmt.min_subnormal == min_subnormal
    g = grid(fmt)
    assert g.size == n_values
    assert g[-1] == max_value
    assert g[g > 0][0] == min_subnormal


def test_fp16_like_equals_numpy_float16_cast():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.standard_normal(20000) * np.exp2(rng.uniform(-30, 17, 20000)),
            np.arange(0, 0x7C00, 3, dtype=np.uint16).view(np.float16).astype(np.float64),
            [65504.0, 65519.99, 65520.0, 1e6, 2.0**-25, 3 * 2.0**-26, np.inf, np.nan],
        ]
    )
    x = np.concatenate([x, -x])
    x32 = x.astype(F32)
    with np.errstate(over="ignore"):  # numpy warns when the float16 cast overflows to inf
        want32, want64 = x32.astype(np.float16).astype(F32), x.astype(np.float16).astype(float)
    np.testing.assert_array_equal(quantize(x32, FP16), want32)
    np.testing.assert_array_equal(quantize(x, FP16), want64)
    sat = Minifloat(exp_bits=5, man_bits=10)  # saturating: the cast clipped to +-65504
    finite = np.isfinite(x32)
    want = np.clip(x32[finite], -65504, 65504).astype(np.float16).astype(F32)
    np.testing.assert_array_equal(quantize(x32[finite], sat), want)


def test_bf16_like_equals_round_to_nearest_even_on_the_bits():
    rng = np.random.default_rng(1)
    with np.errstate(over="ignore"):  # some products overflow to inf, which bf16 keeps
        x = (rng.standard_normal(50000) * np.exp2(rng.uniform(-140, 127, 50000))).astype(F32)
    subnormals = np.arange(1, 5000, dtype=np.int32).view(F32)
    x = np.concatenate([x, subnormals, np.asarray([3.4e38, -3.4e38, 3.38e38], F32)])
    b = x.view(np.uint32).astype(np.uint64)
    rne = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16  # the classic float32 -> bfloat16 RNE
    want = rne.astype(np.uint32).view(F32)
    np.testing.assert_array_equal(quantize(x, BF16), want)


def test_e4m3_overflow_ties_and_nan():
    x = [448.0, 460.0, 464.0, 465.0, 1e4, np.inf, -np.inf, np.nan, 2.0**-10, 3 * 2.0**-10]
    np.testing.assert_array_equal(
        q32(x, FP8_E4M3),
        np.asarray([448, 448, 448, 448, 448, 448, -448, np.nan, 0, 2.0**-8], F32),
    )
    no_sat = Minifloat(exp_bits=4, man_bits=3, finite_only=True, saturate=False)
    np.testing.assert_array_equal(
        q32([464.0, 465.0, np.inf], no_sat), np.asarray([448, np.nan, np.nan], F32)
    )
    e5m2 = Minifloat(exp_bits=5, man_bits=2, saturate=False)
    np.testing.assert_array_equal(q32([61439.0, 61440.0], e5m2), np.asarray([57344, np.inf], F32))


def test_minifloat_without_subnormals_rounds_onto_zero_or_min_normal():
    fmt = Minifloat(exp_bits=3, man_bits=2, subnormals=False)  # min normal 2^-2
    g = grid(fmt)
    assert g[g > 0][0] == 0.25
    x = [0.1, 0.125, 0.13, 0.2, -0.2]
    np.testing.assert_array_equal(q32(x, fmt), np.asarray([0, 0, 0.25, 0.25, -0.25], F32))


def test_minifloat_scale_is_an_exact_shift():
    fmt = Minifloat(exp_bits=4, man_bits=3, finite_only=True, scale=2.0**-8)
    x = np.linspace(-2, 2, 101, dtype=F32)
    np.testing.assert_array_equal(quantize(x, fmt), quantize(x * 256, FP8_E4M3) / 256)
    # amax 2000 over max value 240 is 8.33: the scale is the next power of two, 16
    dyn = quantize(x * 1000, Minifloat(exp_bits=4, man_bits=3, scale=DynamicScale.PER_TENSOR))
    np.testing.assert_array_equal(
        dyn, quantize(x * 1000 / 16, Minifloat(exp_bits=4, man_bits=3)) * 16
    )


# --- dynamic scales -----------------------------------------------------------------------------


def test_dynamic_scale_per_row_maps_each_row_peak_to_alpha():
    x = np.asarray([[0.1, -0.4, 0.2], [3.0, 1.0, -0.7], [0.0, 0.0, 0.0]], dtype=F32)
    q = quantize(x, LogFormat(bits=2, alpha=DynamicScale.PER_ROW))
    want = [[0.2, -0.4, 0.2], [3.0, 1.5, -1.5], [0, 0, 0]]
    np.testing.assert_allclose(q, np.asarray(want, F32), rtol=1e-7)
    t = quantize(x[None], LogFormat(bits=2, alpha=DynamicScale.PER_TENSOR))[0]  # one member
    np.testing.assert_allclose(t[0], np.asarray([1.5, -1.5, 1.5], F32), rtol=1e-7)


def test_dynamic_scale_ignores_non_finite_entries():
    x = np.asarray([0.5, -2.0, np.inf, np.nan], dtype=F32)
    q = quantize(x, FixedPoint(bits=3, full_scale=DynamicScale.PER_TENSOR))  # codes -3..3
    np.testing.assert_array_equal(q, np.asarray([2 / 3, -2.0, 2.0, np.nan], F32))


# --- quantize(): contract of the entry point ----------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: type(f).__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (3, 0), (), (5,), (2, 3)])
def test_quantize_keeps_dtype_and_shape_and_returns_a_new_array(fmt, dtype, shape):
    x = np.linspace(-1, 1, math.prod(shape)).astype(dtype).reshape(shape)
    before = x.copy()
    out = quantize(x, fmt)
    assert type(out) is np.ndarray
    assert out.dtype == dtype
    assert out.shape == shape
    assert not np.may_share_memory(out, x)
    np.testing.assert_array_equal(x, before)


def test_quantize_accepts_scalars_strings_non_contiguous_input_and_out():
    fmt = LogFormat(bits=3, alpha=1.0)
    assert quantize(0.7, fmt) == 0.5
    assert quantize(np.float32(0.3), fmt, rounding="nearest") == 0.25
    x = np.arange(24, dtype=F32).reshape(4, 6) / 30
    np.testing.assert_array_equal(quantize(x.T, fmt), quantize(x, fmt).T)
    np.testing.assert_array_equal(quantize(x[:, ::2], fmt), quantize(x, fmt)[:, ::2])
    big = x.astype(">f4")
    assert quantize(big, fmt).dtype == np.dtype(">f4")
    np.testing.assert_array_equal(quantize(big, fmt), quantize(x, fmt))
    out = np.empty_like(x)
    assert quantize(x, fmt, out=out) is out
    np.testing.assert_array_equal(out, quantize(x, fmt))


def test_stochastic_rounding_is_reproducible_from_the_seed():
    x = np.linspace(-1, 1, 1000, dtype=F32)
    fmt = FixedPoint(bits=3, step=0.25)
    a = quantize(x, fmt, rounding="stochastic", rng=np.random.default_rng(7))
    b = quantize(x, fmt, rounding="stochastic", rng=np.random.default_rng(7))
    c = quantize(x, fmt, rounding="stochastic", rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LogFormat(bits=0, alpha=1.0), "bits=0: must be an int >= 1"),
        (lambda: LogFormat(bits=2.5, alpha=1.0), "bits=2.5: must be an int >= 1"),
        (lambda: LogFormat(bits=True, alpha=1.0), "bits=True: must be an int >= 1"),
        (lambda: LogFormat(bits=3, alpha=-1.0), r"alpha=-1.0: must be a finite float > 0"),
        (lambda: LogFormat(bits=3, alpha=math.nan), r"alpha=nan: must be a finite float > 0"),
        (lambda: LogFormat(bits=3, alpha="max"), r"alpha='max': must be a finite float > 0"),
        (lambda: FixedPoint(bits=1, step=1.0), "bits=1: must be an int >= 2 and <= 53"),
        (lambda: FixedPoint(bits=4), "step=None, full_scale=None: give exactly one"),
        (lambda: FixedPoint(bits=4, step=1.0, full_scale=2.0), "give exactly one of step"),
        (lambda: FixedPoint(bits=4, step=0.0), r"step=0.0: must be a finite float > 0"),
        (lambda: FixedPoint(bits=4, step=1.0, signed=1), "signed=1: must be True or False"),
        (lambda: Sign(scale=0), "scale=0: must be a finite float > 0 or a DynamicScale"),
        (lambda: Ternary(threshold=1.0), r"threshold=1.0: must be a float in \[0, 1\)"),
        (lambda: Minifloat(exp_bits=1, man_bits=2), "exp_bits=1: must be an int >= 2 and <= 11"),
        (lambda: Minifloat(exp_bits=4, man_bits=-1), "man_bits=-1: must be an int >= 0"),
        (lambda: Minifloat(exp_bits=4, man_bits=3, bias=1.5), "bias=1.5: must be an int or None"),
        (lambda: Minifloat(exp_bits=4, man_bits=3, scale=0.3), "scale=0.3: must be a power of two"),
        (
            lambda: Minifloat(exp_bits=4, man_bits=0, finite_only=True),
            "man_bits=0: finite_only needs at least one mantissa bit",
        ),
    ],
)
def test_bad_format_fields_name_field_value_and_what_is_allowed(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_quantize_arguments_name_what_is_allowed():
    fmt = LogFormat(bits=3, alpha=1.0)
    x = np.ones(3, F32)
    with pytest.raises(ValueError, match=r"x\.dtype=int64: quantize needs float16, float32"):
        quantize(np.ones(3, np.int64), fmt)
    with pytest.raises(ValueError, match="rounding='up': must be a Rounding or one of nearest"):
        quantize(x, fmt, rounding="up")
    with pytest.raises(ValueError, match="rng=None: rounding=stochastic needs a generator"):
        quantize(x, fmt, rounding=Rounding.STOCHASTIC)
    with pytest.raises(ValueError, match=r"rng=.*: must be a numpy\.random\.Generator"):
        quantize(x, fmt, rounding=Rounding.STOCHASTIC, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match=r"fmt=0\.5: must be one of LogFormat, FixedPoint"):
        quantize(x, 0.5)
    with pytest.raises(ValueError, match=r"x.dtype=float16: Minifloat\(exp_bits=8.*does not fit"):
        quantize(x.astype(np.float16), BF16)
    with pytest.raises(ValueError, match=r"out.shape=\(2,\).*must be a C-contiguous array"):
        quantize(x, fmt, out=np.empty(2, F32))
    with pytest.raises(ValueError, match="out: must not overlap x"):
        quantize(x, fmt, out=x)
    with pytest.raises(ValueError, match=r"grid\(\) needs a fixed scale"):
        grid(LogFormat(bits=3, alpha=DynamicScale.PER_ROW))


# --- backends -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [*ALL_FORMATS[:-1], FP16], ids=lambda f: type(f).__name__)
def test_numpy_and_cupy_agree(xp, fmt):
    x = np.random.default_rng(0).standard_normal(3 * CHUNK + 5).astype(F32)
    x[:4] = [0.0, np.inf, -np.inf, np.nan]
    got = quantize(xp.asarray(x), fmt)
    assert type(got) is type(xp.asarray(x))
    assert got.dtype == F32
    np.testing.assert_array_equal(to_numpy(got), quantize(x, fmt))


# --- the check-quantizer command ----------------------------------------------------------------


def broken_quantizer(x):
    """Truncates onto the quarter grid but claims nearest rounding (a test fixture for the CLI)."""
    return np.clip(np.trunc(x * 4) / 4, -1.75, 1.75).astype(x.dtype)


def test_check_quantizer_main_passes_lpfa_quantize(capsys):
    argv = ["lpfa.quant:quantize", "--format", "log:bits=4,alpha=0.125", "--max-examples", "10"]
    assert check_quantizer_main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "holds    dtype_shape"
    assert any(line.startswith("skipped  unbiased") for line in lines)


def test_check_quantizer_main_reports_a_failure_with_its_example(capsys):
    argv = [
        "tests.unit.test_quant:broken_quantizer",
        "--format",
        "fixed:bits=4,step=0.25",
        "--max-examples",
        "20",
        "--contracts",
        "on_grid,error_bound",
    ]
    assert check_quantizer_main(argv) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "holds    on_grid"
    assert out[1].startswith("FAILS    error_bound: x=[")


@pytest.mark.parametrize(
    "argv",
    [
        ["no_colon"],
        ["lpfa.quant:nothing_here"],
        ["lpfa.quant:quantize", "--format", "log:bits=0,alpha=1.0"],
        ["lpfa.quant:quantize", "--format", "octal:bits=3"],
    ],
)
def test_check_quantizer_main_usage_errors_return_2(argv, capsys):
    assert check_quantizer_main(argv) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(
    "fmt",
    [
        LogFormat(bits=2, alpha=DynamicScale.PER_TENSOR),
        FixedPoint(bits=3, full_scale=DynamicScale.PER_TENSOR),
        Minifloat(exp_bits=4, man_bits=3, scale=DynamicScale.PER_TENSOR),
    ],
    ids=lambda f: type(f).__name__,
)
def test_per_tensor_scale_is_per_member(fmt):
    """Each member's scale is its own peak: quantizing an ensemble equals quantizing each member."""
    rng = np.random.default_rng(3)
    peaks = np.asarray([0.01, 1.0, 300.0], F32)[:, None, None]
    x = rng.standard_normal((3, 4, 5)).astype(F32) * peaks
    whole = quantize(x, fmt)
    for m in range(3):
        np.testing.assert_array_equal(whole[m], quantize(x[m : m + 1], fmt)[0])


def test_toward_zero_never_overflows_a_finite_value_to_inf():
    """IEEE round toward zero gives the largest finite value: fp16 65536 -> 65504; inf stays inf."""
    x = np.asarray([65536.0, -1e6, 65519.0, np.inf, -np.inf, np.nan], dtype=F32)
    q = quantize(x, FP16, rounding="toward_zero")
    want = np.asarray([65504, -65504, 65504, np.inf, -np.inf, np.nan], F32)
    np.testing.assert_array_equal(q, want)


# --- each format's facts, checked against its grid and its quantize results --------------------

FACT_FORMATS = [
    LogFormat(bits=1, alpha=0.125),
    LogFormat(bits=3, alpha=0.125),
    LogFormat(bits=5, alpha=0.3, flush_to_zero=True),
    FixedPoint(bits=4, step=0.25),
    FixedPoint(bits=5, step=0.1),
    FixedPoint(bits=3, full_scale=1.0, signed=False),
    Sign(scale=0.5),
    Ternary(threshold=0.7, scale=2.0),
    Ternary(threshold=0.0),
    FP8_E4M3,
    FP8_E5M2,
    FP16,
    Minifloat(exp_bits=3, man_bits=2, subnormals=False),
    Minifloat(exp_bits=2, man_bits=0, saturate=False),
    Minifloat(exp_bits=4, man_bits=3, finite_only=True, saturate=False),
]
GRIDDED = pytest.mark.parametrize("fmt", FACT_FORMATS, ids=repr)


def q_each(fmt, x, rounding):
    return quantize(x, fmt, rounding=rounding, rng=np.random.default_rng(0))


@GRIDDED
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_n_values_is_the_grid_size_and_every_grid_value_is_a_fixed_point(fmt, dtype):
    g = fmt.grid(dtype)
    assert g.dtype == dtype
    assert len(g) == fmt.n_values
    assert (np.diff(g) > 0).all()
    np.testing.assert_array_equal(g, grid(fmt, dtype))
    for rounding in fmt.roundings:
        np.testing.assert_array_equal(q_each(fmt, g, rounding), g, err_msg=rounding.value)


@GRIDDED
def test_code_bits_are_what_a_code_of_the_grid_needs(fmt):
    if isinstance(fmt, LogFormat):  # the paper's count of magnitude levels
        assert fmt.code_bits == fmt.bits
        assert fmt.n_values == 2 * fmt.bits + 1
    else:
        assert fmt.code_bits == math.ceil(math.log2(fmt.n_values))
    if isinstance(fmt, Minifloat):
        assert fmt.code_bits == 1 + fmt.exp_bits + fmt.man_bits


def _nudged(t, dtype, up):
    """A few ulps above or below t in dtype (the smallest normal next to t = 0)."""
    t = dtype(t)
    step = np.finfo(dtype).smallest_normal if t == 0 else 4 * np.spacing(np.abs(t))
    return t + step if up else t - step


@GRIDDED
def test_decision_points_split_neighbours_in_the_format_s_metric(fmt):
    g = fmt.grid(F32).astype(np.float64)
    t = fmt.decision_points(F32)
    lo, hi = g[:-1], g[1:]
    assert t.shape == (len(g) - 1,)
    assert ((lo <= t) & (t <= hi)).all()
    if isinstance(fmt, LogFormat):  # halfway in log2 between levels of one sign
        same = lo * hi > 0
        np.testing.assert_allclose(np.log2(np.abs(t[same])), np.log2(np.abs(lo * hi)[same]) / 2)
    elif isinstance(fmt, FixedPoint | Minifloat):  # halfway on the line
        np.testing.assert_allclose(t, (lo + hi) / 2)
    # and nearest rounding switches there: q(x) = grid[number of decision points below x] (a
    # value between two equal points, like 0 in eq. 19 as written, is reached at that point only)
    near = [_nudged(v, F32, up) for v in t for up in (False, True)]
    x = np.asarray(near, F32)
    want = g[np.searchsorted(t, x.astype(np.float64), side="left")]
    np.testing.assert_array_equal(quantize(x, fmt).astype(np.float64), want)


@GRIDDED
def test_odd_symmetry_holds_iff_claimed(fmt):
    x = np.concatenate([fmt.grid(F32), np.linspace(-3, 3, 601, dtype=F32) * fmt.grid(F32)[-1]])
    x = x[x != 0]
    odd = all(
        np.array_equal(quantize(-x, fmt, rounding=r), -quantize(x, fmt, rounding=r), equal_nan=True)
        for r in fmt.roundings - {Rounding.STOCHASTIC}
    )
    assert odd == fmt.odd_symmetric


@GRIDDED
def test_has_zero_iff_zero_is_a_value_and_q_of_0_is_0(fmt):
    assert fmt.has_zero == (0 in fmt.grid(F32))
    for rounding in fmt.roundings:
        zeros = q_each(fmt, np.zeros(64, F32), rounding)
        assert (zeros == 0).all() == fmt.has_zero, rounding.value
    assert quantizer(fmt).keeps_zero == fmt.has_zero


@pytest.mark.parametrize(
    "fmt",
    [
        *FACT_FORMATS,
        LogFormat(bits=1, alpha=0.0015625),
        LogFormat(bits=1, alpha=0.3),
        LogFormat(bits=1, alpha=4.0),  # x / alpha underflows for the smallest subnormals
        Ternary(threshold=0.0, scale=0.25),
        Ternary(threshold=0.0, scale=4.0),
    ],
    ids=repr,
)
def test_sign_level_is_set_exactly_where_q_is_a_level_times_the_sign(fmt):
    # sign_level = c claims Q(x) == c * sign(x) for every x (0 -> 0), which is what lets a sum of
    # quantized products be a product of signs; a format without the claim must break it somewhere
    tiny, big = np.finfo(F32).smallest_subnormal, np.finfo(F32).max
    x = np.concatenate(
        [
            [0.0, tiny, -tiny, big, -big, np.inf, -np.inf, 1e-30, -3e-8],
            np.random.default_rng(0).standard_normal(200) * 0.1,
        ]
    ).astype(F32)
    for rounding in fmt.roundings:
        level = fmt.sign_level(rounding)
        got = q_each(fmt, x, rounding)
        is_sign = np.array_equal(got, F32(level or 1.0) * np.sign(x))
        assert (level is not None) == is_sign, rounding.value
        assert quantizer(fmt, rounding, np.random.default_rng(0)).sign_level == level
    assert LogFormat(bits=1, alpha=DynamicScale.PER_TENSOR).sign_level(Rounding.NEAREST) is None


@GRIDDED
def test_nonfinite_says_what_quantize_does_with_inf_and_nan(fmt):
    for rounding in fmt.roundings:
        got = q_each(fmt, np.asarray([np.inf, -np.inf, np.nan], F32), rounding)
        np.testing.assert_array_equal(got, np.asarray(fmt.nonfinite(F32), F32))


@pytest.mark.parametrize("fmt", [*FACT_FORMATS, Identity()], ids=repr)
def test_roundings_are_the_ones_quantize_accepts(fmt):
    x = np.linspace(-1, 1, 9, dtype=F32)
    for rounding in Rounding:
        if rounding in fmt.roundings:
            q_each(fmt, x, rounding)
        else:
            with pytest.raises(ValueError, match=f"rounding={rounding.value}: "):
                q_each(fmt, x, rounding)
            with pytest.raises(ValueError, match=f"rounding={rounding.value}: "):
                quantizer(fmt, rounding)


def test_identity_has_no_grid_and_passes_everything_through():
    fmt = Identity()
    assert fmt.n_values is None
    assert fmt.code_bits is None
    assert fmt.roundings == frozenset(Rounding)
    with pytest.raises(ValueError, match="needs a format with a finite grid"):
        fmt.grid()
    with pytest.raises(ValueError, match="needs a format with a finite grid"):
        fmt.decision_points()
    x = np.asarray([np.inf, -np.inf, np.nan], F32)
    np.testing.assert_array_equal(quantize(x, fmt), np.asarray(fmt.nonfinite(), F32))


def test_dynamic_scales_are_named_in_a_spec():
    fmt = parse_format("log:bits=3,alpha=per_row")
    assert fmt == LogFormat(bits=3, alpha=DynamicScale.PER_ROW)
    assert fmt.dynamic_scale is DynamicScale.PER_ROW
    assert parse_format("fixed:bits=8,full_scale=PER_TENSOR").dynamic_scale is (
        DynamicScale.PER_TENSOR
    )
    assert parse_format("sign:scale=per_row").scale is DynamicScale.PER_ROW
    assert LogFormat(bits=3, alpha=0.125).dynamic_scale is None
    with pytest.raises(ValueError, match="is not a Python literal or one of per_tensor, per_row"):
        parse_format("log:bits=3,alpha=per_column")
    with pytest.raises(ValueError, match=r"grid\(\) needs a fixed scale"):
        fmt.grid()


# --- quantizer(): a frozen callable --------------------------------------------------------------


def test_quantizer_is_a_frozen_object_equal_to_quantize():
    import dataclasses

    q = quantizer("log:bits=3,alpha=0.125", "nearest")
    assert isinstance(q, quant.Quantizer)
    assert q.fmt == LogFormat(bits=3, alpha=0.125)
    assert q.rounding is Rounding.NEAREST
    assert q.keeps_zero
    x = np.linspace(-1, 1, 101, dtype=F32)
    np.testing.assert_array_equal(q(x), quantize(x, q.fmt))
    np.testing.assert_array_equal(q(x[::2]), quantize(x[::2], q.fmt))  # not contiguous
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.fmt = Sign()
    assert quantizer(None) is None
    assert quantizer(Sign(), "stochastic", np.random.default_rng(0)).keeps_zero is False
    with pytest.raises(ValueError, match="rng=None: rounding=stochastic needs a generator"):
        quantizer("fixed:bits=4,step=0.25", "stochastic")


def test_a_dynamic_scale_at_the_largest_float32_stays_finite():
    # the peak / top step rounded so that top · step overflowed: the largest code became inf
    from lpfa.quant import parse_format, quantize

    x = np.array([np.finfo(np.float32).max, -1.0], dtype=np.float32)
    out = quantize(x, parse_format("fixed:bits=6,full_scale=per_tensor"))
    assert np.isfinite(out).all()
    assert abs(float(out[0])) <= float(x[0])
