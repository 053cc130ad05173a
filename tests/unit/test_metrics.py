"""Metrics: known values, ranges, per-member shapes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lpfa import metrics
from lpfa.backend import to_numpy
from lpfa.config import Loss

finite = st.floats(
    width=32,
    allow_nan=False,
    allow_infinity=False,
    allow_subnormal=False,
    min_value=-1e3,
    max_value=1e3,
)


def test_angle_known_values(xp):
    a = xp.asarray([[[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]])
    b = xp.asarray([[[0.0, 2.0], [-3.0, -3.0], [1.0, 0.0]]])
    # 90° and 180°; the third example has a zero vector and is left out
    np.testing.assert_allclose(to_numpy(metrics.angle_deg(a, b)), [135.0])
    np.testing.assert_allclose(to_numpy(metrics.angle_deg(a[:, :2], a[:, :2])), [0.0], atol=1e-6)
    assert np.isnan(to_numpy(metrics.angle_deg(a[:, 2:], b[:, 2:]))[0])


nonzero_rows = arrays(np.float64, (2, 3, 4), elements=finite).filter(
    lambda a: bool(np.all(np.linalg.norm(a, axis=-1) > 1e-3))
)


@settings(max_examples=50, deadline=None)
@given(nonzero_rows, nonzero_rows, st.floats(min_value=1e-3, max_value=1e3))
def test_angle_identities(a, b, c):
    """θ(a, a) = 0, θ(a, −a) = 180°, θ(a, b) = θ(b, a) = θ(c·a, b) for c > 0, and
    θ(−a, b) = 180° − θ(a, b).

    A wrong formula (no normalisation, |aᵀb| folded into [0°, 90°], radians, the mean taken
    before the arccos) breaks at least one of them.
    """
    angle = metrics.angle_deg
    tol = 1e-4  # arccos near ±1 turns cos's rounding (1e-16) into ~1e-6°, far below any defect
    np.testing.assert_allclose(angle(a, a), 0.0, atol=tol)
    np.testing.assert_allclose(angle(a, -a), 180.0, atol=tol)
    theta = angle(a, b)
    np.testing.assert_allclose(angle(b, a), theta, atol=tol)
    np.testing.assert_allclose(angle(c * a, b), theta, atol=tol)
    np.testing.assert_allclose(angle(-a, b), 180.0 - theta, atol=tol)


def test_angle_is_the_mean_over_examples_of_each_examples_angle():
    a = np.asarray([[[1.0, 0.0], [1.0, 0.0]]])
    b = np.asarray([[[1.0, 1.0], [-1.0, 0.0]]])  # 45° and 180°
    np.testing.assert_allclose(metrics.angle_deg(a, b), [112.5])


def test_accuracy_nse_and_loss(xp):
    out = xp.asarray([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], [[0.1, 0.8, 0.1], [0.2, 0.3, 0.5]]])
    t = xp.asarray([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = xp.asarray([0, 2])
    np.testing.assert_allclose(to_numpy(metrics.accuracy(out, labels)), [1.0, 0.5])
    np.testing.assert_allclose(
        to_numpy(metrics.loss(out, t, Loss.CROSS_ENTROPY)),
        [-(np.log(0.7) + np.log(0.8)) / 2, -(np.log(0.1) + np.log(0.5)) / 2],
    )
    se = ((to_numpy(t) - to_numpy(out)) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(to_numpy(metrics.nse(out, t)), se / 2.0)
    np.testing.assert_allclose(to_numpy(metrics.loss(out, t, Loss.SQUARED)), se / 4.0)
    assert to_numpy(metrics.nse(xp.zeros_like(out), t)) == pytest.approx([1.0, 1.0])
