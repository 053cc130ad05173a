"""Baldi et al. (2018) §7.2, Theorem 2: the A[1,1,1] chain's closed forms against lpfa's ODE
(ExpectedDynamics on lpfa's own 1-1-1 network) and against simulated minibatch training."""

import numpy as np
import pytest

from lpfa import config as C
from lpfa.dynamics import ExpectedDynamics, moment_design
from lpfa.dynamics.chains import (
    a111_fixed_point,
    a111_parabola_constant,
    a111_rhs,
    a111_unstable,
)
from lpfa.network import Network

ALPHA, BETA, C1 = 1.0, 2.0, 0.7
# starting points above and below the hyperbola, in the upper and the lower half plane
STARTS = np.array(
    [[0.1, 0.1], [-0.2, 0.05], [1.5, 1.0], [0.5, -1.5], [-0.8, -1.2], [2.0, -0.5], [-1.5, 0.4]]
)


def chain(a1, a2, c1=C1, seeds=None):
    """lpfa's 1-1-1 linear RBP network, one member per starting point, weights set directly."""
    E = len(a1)
    cfg = C.from_dict(
        C.RunConfig,
        {
            "seeds": list(seeds or range(E)),
            "data": {"name": "linear-teacher"},
            "model": {
                "sizes": [1, 1, 1],
                "hidden": "linear",
                "output": "linear",
                "loss": "squared",
                "dtype": "float64",
            },
            "channel": {"rule": "rbp"},
        },
    )
    net = Network.build(cfg)
    net.layers[0].W[:, 0, 0] = a1
    net.layers[1].W[:, 0, 0] = a2
    net.channel.feedback[(2, 1)].C[:, 0, 0] = c1
    return net


def ode(a1, a2, c1=C1):
    net = chain(a1, a2, c1)
    return ExpectedDynamics(net, *moment_design(BETA, ALPHA))


def weights(ed, y):
    w = ed.unpack(y)
    return w["W1"][:, 0, 0], w["W2"][:, 0, 0]


def test_theorem2_eq23_is_the_odes_right_hand_side():
    ed = ode(STARTS[:, 0], STARTS[:, 1])
    w = ed.unpack(ed.rhs(0.0, ed.state()))
    da1, da2 = a111_rhs(STARTS[:, 0], STARTS[:, 1], c1=C1, alpha=ALPHA, beta=BETA)
    np.testing.assert_allclose(w["W1"][:, 0, 0], da1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(w["W2"][:, 0, 0], da2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(w["b1"], 0.0, atol=1e-14)  # zero-mean data: biases stay put


def test_theorem2_eq30_parabola_is_conserved_along_the_ode():
    ed = ode(STARTS[:, 0], STARTS[:, 1])
    traj = ed.solve(10.0, t_eval=np.linspace(0.0, 10.0, 21), rtol=1e-10, atol=1e-12)
    assert traj.success
    start = a111_parabola_constant(STARTS[:, 0], STARTS[:, 1], c1=C1)
    for y in traj.y:
        a1, a2 = weights(ed, y)
        np.testing.assert_allclose(a111_parabola_constant(a1, a2, c1=C1), start, atol=1e-7)
    # the test has power: a wrong curvature (1/c₁ instead of 1/(2c₁)) is not conserved
    a1, a2 = weights(ed, traj.y[-1])
    wrong = a2 - a1**2 / C1 - (STARTS[:, 1] - STARTS[:, 0] ** 2 / C1)
    assert np.abs(wrong).max() > 1e-2


def test_theorem2_eq31_cubic_root_is_where_the_ode_ends():
    ed = ode(STARTS[:, 0], STARTS[:, 1])
    traj = ed.solve(60.0, t_eval=[60.0], rtol=1e-10, atol=1e-12)
    a1, a2 = weights(ed, traj.y[-1])
    f1, f2 = a111_fixed_point(STARTS[:, 0], STARTS[:, 1], c1=C1, alpha=ALPHA, beta=BETA)
    np.testing.assert_allclose(a1, f1, atol=1e-5)
    np.testing.assert_allclose(a2, f2, atol=1e-5)
    np.testing.assert_allclose(f1 * f2, ALPHA / BETA, rtol=1e-9)  # on the hyperbola P = α/β
    assert not a111_unstable(f1, f2, c1=C1).any()  # the flow only ends on stable points


def test_theorem2_eq33_points_inside_the_parabola_are_unstable():
    """Start on the hyperbola, nudged: inside c₁a₂ + a₁² < 0 the nudge grows, outside it dies."""
    a1 = np.array([-0.3, -0.5, 0.6, 1.2, -1.6])
    a2 = ALPHA / BETA / a1
    unstable = a111_unstable(a1, a2, c1=C1)
    assert unstable.tolist() == [True, True, False, False, False]
    ed = ode(a1 + 1e-4, a2)
    traj = ed.solve(2.0, t_eval=[2.0], rtol=1e-10, atol=1e-13)
    e1, e2 = weights(ed, traj.y[-1])
    moved = np.hypot(e1 - a1, e2 - a2)
    assert np.all(moved[unstable] > 1e-3)
    assert np.all(moved[~unstable] < 2e-4)


def test_theorem2_simulated_training_at_small_eta_ends_at_the_cubic_root():
    """Minibatch SGD (x ~ N(0, β), t = (α/β)x, η = 2·10⁻³, batch 20) for 40 time units, averaged
    over 4 data streams: the end points match eq. 31 within 0.03 (SGD's stationary spread at
    this η is ~√(η/B)·O(1) ≈ 0.01 per stream; a wrong branch is ≥ 0.5 away)."""
    eta, batch, steps = 2e-3, 20, 20_000
    ends = []
    for stream in range(4):
        net = chain(STARTS[:, 0], STARTS[:, 1])
        rng = np.random.default_rng(100 + stream)
        for _ in range(steps):
            x = rng.standard_normal((batch, 1)) * np.sqrt(BETA)
            net.step(x, x * (ALPHA / BETA), eta)
        ends.append([net.layers[0].W[:, 0, 0].copy(), net.layers[1].W[:, 0, 0].copy()])
    a1, a2 = np.mean(ends, axis=0)
    f1, f2 = a111_fixed_point(STARTS[:, 0], STARTS[:, 1], c1=C1, alpha=ALPHA, beta=BETA)
    np.testing.assert_allclose(a1, f1, atol=0.03)
    np.testing.assert_allclose(a2, f2, atol=0.03)


@pytest.mark.parametrize(("a1", "a2"), [(0.5, -1.5), (-0.8, -1.2)])
def test_theorem2_lower_half_plane_can_have_three_roots_and_the_flow_picks_by_direction(a1, a2):
    C_ = a111_parabola_constant(a1, a2, c1=C1)
    roots = np.roots([1.0, 0.0, 2 * C1 * C_, -2 * C1 * ALPHA / BETA])
    f1, _ = a111_fixed_point(a1, a2, c1=C1, alpha=ALPHA, beta=BETA)
    assert np.min(np.abs(roots - f1)) < 1e-9
    # the root reached is the nearest one in the direction of da₁/dt
    da1, _ = a111_rhs(a1, a2, c1=C1, alpha=ALPHA, beta=BETA)
    assert np.sign(f1 - a1) == np.sign(da1)
