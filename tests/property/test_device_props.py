"""The pulsed update against the published step equations (aihwkit ConstantStep, LinearStep,
SoftBounds): moments after n pulses, the soft-bound fixed point, bounds, stochastic rounding.

Every statistical check uses a fixed seed and a tolerance of a few standard errors derived from
the variance of what is measured.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpfa.backend import runtime_rng
from lpfa.config import DeviceConfig
from lpfa.devices import ArrayDevice

N = 40_000  # devices per check: standard error of a mean is σ/200
Z = 5.0  # tolerance in standard errors


def device(cfg, n=N, seed=0):
    return ArrayDevice(cfg, (1, 1, n), [seed], (0, 1), "float64", np, runtime_rng(seed, np))


def reference_pulses(w, n, d, a, k, sigma, rng):
    """n pulses of the published equation, one at a time:
    w ← w + d·a·(1 − d·k·w) + a·σ·ξ (k = γ/|b|; k = 0: constant step)."""
    for _ in range(n):
        w = w + d * a * (1 - d * k * w) + a * sigma * rng.standard_normal(w.shape)
    return w


def check_moments(got, want_mean, want_var):
    n = got.size
    mean, var = got.mean(), got.var()
    assert abs(mean - want_mean) <= Z * np.sqrt(want_var / n) + 1e-15, (mean, want_mean)
    assert abs(var - want_var) <= Z * want_var * np.sqrt(2 / n) + 1e-30, (var, want_var)


@pytest.mark.parametrize("n", [1, 7, 40])
@pytest.mark.parametrize("d", [1.0, -1.0])
def test_constant_step_mean_and_variance_after_n_pulses(n, d):
    dw, beta, sigma = 0.01, 0.2, 0.3
    dev = device(DeviceConfig(dw_min=dw, up_down=beta, dw_min_std=sigma))
    W = np.zeros((1, 1, N))
    dev.write(W, np.full_like(W, d * n * dw))  # exactly n pulses: ⌊n + u⌋ = n
    a = dw * (1 + d * beta)
    check_moments(W, d * n * a, (a * sigma) ** 2 * n)
    assert float(dev.pulses) == n * N


@pytest.mark.parametrize(("gamma", "n"), [(1.0, 5), (1.0, 60), (0.4, 30)])
@pytest.mark.parametrize("d", [1.0, -1.0])
def test_linear_step_matches_pulse_by_pulse_equation(gamma, n, d):
    dw, sigma, lo, hi = 0.02, 0.2, -0.5, 0.8  # far enough from the bounds that clipping is nil
    cfg = DeviceConfig(dw_min=dw, dw_min_std=sigma, w_min=lo, w_max=hi, gamma_up=gamma,
                       gamma_down=gamma)  # fmt: skip
    dev = device(cfg)
    w0 = 0.1
    W = np.full((1, 1, N), w0)
    dev.write(W, np.full_like(W, d * n * dw))
    k = gamma / (hi if d > 0 else -lo)
    ref = reference_pulses(np.full(N, w0), n, d, dw, k, sigma, np.random.default_rng(1))
    ref = np.clip(ref, lo, hi)
    # the closed form of the mean and variance of n pulses (AR(1)), and the reference's sample
    r = 1 - dw * k
    mean = r**n * w0 + d * (1 - r**n) / k
    var = (dw * sigma) ** 2 * (1 - r ** (2 * n)) / (1 - r**2)
    check_moments(W.ravel(), mean, var)
    check_moments(ref, mean, var)


def test_soft_bounds_reach_their_fixed_point():
    hi, lo = 0.6, -0.4
    for gamma, target_up, target_down in ((1.0, hi, lo), (2.0, hi / 2, lo / 2)):
        dev = device(DeviceConfig(dw_min=0.005, w_min=lo, w_max=hi, gamma_up=gamma,
                                  gamma_down=gamma), n=50)  # fmt: skip
        W = np.zeros((1, 1, 50))
        for _ in range(40):
            dev.write(W, np.full_like(W, 200 * 0.005))  # 8 000 pulses up
        np.testing.assert_allclose(W, target_up, rtol=1e-6)
        for _ in range(40):
            dev.write(W, np.full_like(W, -200 * 0.005))
        np.testing.assert_allclose(W, target_down, rtol=1e-6)


def test_stochastic_rounding_of_the_pulse_count_is_unbiased():
    frac = 0.3
    dev = device(DeviceConfig(dw_min=0.01))
    W = np.zeros((1, 1, N))
    dev.write(W, np.full_like(W, frac * 0.01))
    pulses = W / 0.01  # 0 or 1 pulse each
    assert set(np.unique(np.round(pulses, 9))) <= {0.0, 1.0}
    sd = np.sqrt(frac * (1 - frac) / N)
    assert abs(pulses.mean() - frac) <= Z * sd


def test_pulse_train_limit():
    dev = device(DeviceConfig(dw_min=0.01, max_pulses=5), n=10)
    W = np.zeros((1, 1, 10))
    dev.write(W, np.linspace(-1, 1, 10)[None, None])
    assert np.abs(W).max() == pytest.approx(0.05)
    assert float(dev.pulses) == 50


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    lo=st.floats(-2, -0.01),
    hi=st.floats(0.01, 2),
    spread=st.floats(0, 0.6),
    gamma=st.one_of(st.none(), st.floats(0, 3)),
    sigma=st.floats(0, 5),
    size=st.floats(0.001, 10),
)
def test_bounds_are_never_exceeded(seed, lo, hi, spread, gamma, sigma, size):
    cfg = DeviceConfig(dw_min=0.05 * hi, dw_min_dtod=spread, dw_min_std=sigma, w_min=lo,
                       w_max=hi, w_min_dtod=spread, w_max_dtod=spread, gamma_up=gamma,
                       gamma_down=gamma, up_down=0.1)  # fmt: skip
    dev = ArrayDevice(cfg, (2, 5, 7), [seed, seed + 1], (0, 1), "float32", np,
                      runtime_rng(seed, np))  # fmt: skip
    rng = np.random.default_rng(seed)
    W = dev.program(rng.standard_normal((2, 5, 7)).astype("float32") * 3)
    for _ in range(5):
        dev.write(W, (rng.standard_normal(W.shape) * size).astype("float32"))
        assert np.all(dev.b_max >= W)
        assert np.all(dev.b_min <= W)
        assert np.all(np.isfinite(W))
