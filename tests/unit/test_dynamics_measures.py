"""Similarity measures of learned factors, each against a case computed by hand."""

import numpy as np
import pytest

from lpfa.dynamics.measures import (
    alignment_deg,
    linear_cka,
    principal_angles_deg,
    subspace_overlap,
)


def test_principal_angles_of_two_lines_are_the_angle_between_them():
    a = np.array([[1.0], [0.0]])
    b = np.array([[np.cos(np.radians(30.0))], [np.sin(np.radians(30.0))]])
    np.testing.assert_allclose(principal_angles_deg(a, b), [30.0], atol=1e-12)


def test_principal_angles_are_ascending_per_member_of_the_ensemble():
    e = np.eye(3)
    A = np.stack([e[:, [0, 1]], e[:, [0, 1]]])  # (E=2, n=3, p=2)
    B = np.stack([e[:, [0, 2]], 5.0 * e[:, [1, 0]]])  # shares e1 / the same plane, rescaled
    got = principal_angles_deg(A, B)
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got, [[0.0, 90.0], [0.0, 0.0]], atol=1e-6)


def test_subspace_overlap_is_the_mean_squared_cosine():
    e = np.eye(3)
    # planes span{e1, e2} and span{e1, cos60 e2 + sin60 e3}: angles 0° and 60°, (1 + 1/4)/2
    c, s = np.cos(np.radians(60.0)), np.sin(np.radians(60.0))
    B = np.stack([e[:, 0], c * e[:, 1] + s * e[:, 2]], axis=1)
    assert subspace_overlap(e[:, :2], B) == pytest.approx(0.625, abs=1e-12)
    assert subspace_overlap(e[:, :1], e[:, 1:]) == pytest.approx(0.0, abs=1e-12)


def test_subspace_overlap_of_random_subspaces_is_near_chance():
    # E[overlap] = q/n for independent random subspaces; the mean of 200 draws of a quantity in
    # [0, 1] with standard deviation below 0.1 lies within 0.03 of it (> 4 standard errors)
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((2, 200, 20, 2))
    assert subspace_overlap(A, B).mean() == pytest.approx(2 / 20, abs=0.03)


def test_linear_cka_is_the_squared_correlation_for_one_feature():
    a = np.array([[1.0], [0.0], [-1.0]])
    b = np.array([[2.0], [0.0], [-1.0]])
    # centred b = (5, −1, −4)/3: (bᵀa)² / (aᵀa · bᵀb) = 9 / (2 · 42/9) = 81/84
    assert linear_cka(a, b) == pytest.approx(81 / 84, rel=1e-12)
    assert linear_cka(a, np.array([[1.0], [-2.0], [1.0]])) == pytest.approx(0.0, abs=1e-12)


def test_linear_cka_ignores_rotations_and_scale_and_is_one_for_itself():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((3, 10, 4))
    Q = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    np.testing.assert_allclose(linear_cka(A, 3.0 * A @ Q), 1.0, rtol=1e-12)
    assert np.isnan(linear_cka(np.ones((4, 2)), A[0, :4]))  # a constant representation


def test_alignment_is_the_angle_between_the_flattened_matrices():
    A = np.array([[[1.0, 0.0]], [[1.0, 0.0]], [[1.0, 0.0]]])
    B = np.array([[[1.0, 1.0]], [[-2.0, 0.0]], [[0.0, 0.0]]])
    got = alignment_deg(A, B)
    np.testing.assert_allclose(got[:2], [45.0, 180.0], atol=1e-12)
    assert np.isnan(got[2])


@pytest.mark.parametrize("f", [principal_angles_deg, linear_cka, alignment_deg])
def test_mismatched_shapes_are_refused_with_both_shapes(f):
    with pytest.raises(ValueError, match=r"A.shape=\(3, 2\), B.shape=\(4, 2\)"):
        f(np.ones((3, 2)), np.ones((4, 2)))
