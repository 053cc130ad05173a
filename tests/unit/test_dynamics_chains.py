"""Baldi et al. (2018) §6 Facts 4 and 6 and the closed forms of §7 (lpfa.dynamics.chains), each
checked (a) against lpfa's ODE — ExpectedDynamics on lpfa's own network of that architecture,
to solver tolerance — and (b) against simulated minibatch training (Network.step, one data
stream per ensemble member) within a stated statistical tolerance."""

import numpy as np
import pytest

from lpfa import config as C
from lpfa.dynamics import ExpectedDynamics, linear_config, moment_design
from lpfa.dynamics.chains import (
    a1n1_constants,
    a1n1_fixed_point,
    a1n1_leading_coefficient,
    a1n1_polynomial,
    a1n1_rhs,
    a111_fixed_point,
    a111_parabola_constant,
    a111_rhs,
    a111_unstable,
    an1n_fixed_point,
    an1n_lemma1_constant,
    chain_constants,
    chain_fixed_point,
    chain_gd_constants,
    chain_leading_coefficient,
    chain_polynomial,
    chain_rhs,
    flow_root,
    power_coupling_constant,
    power_fixed_point,
    power_moments,
    power_rhs,
    three_layer_invariant,
    three_layer_limit,
    three_layer_lyapunov,
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


def network(sizes, *, rule="srbp", hidden="linear", E=1, fprime=True, mu=1.0, seed=0):
    """lpfa's float64 network of ``sizes`` (linear output, squared loss) with E members."""
    channel = {} if rule == "bp" else {"fprime": fprime}
    cfg = linear_config(sizes, rule, seeds=[seed + m for m in range(E)], hidden=hidden,
                        channel=channel, model={"power_exponent": mu})  # fmt: skip
    return Network.build(cfg)


def simulate(net, draw, teacher, *, eta=1e-2, batch=50, steps=5000, seed=7):
    """Minibatch SGD on one data stream shared by the members (each a start): x = draw(rng,
    (B, N_0)), t = teacher·x."""
    rng = np.random.default_rng(seed)
    n0 = net.layers[0].W.shape[2]
    for _ in range(steps):
        x = draw(rng, (batch, n0))
        t = teacher * x if np.isscalar(teacher) else teacher(x)
        net.step(x, t, eta)
    return net


def solve_end(ed, t_end, **tol):
    traj = ed.solve(t_end, t_eval=[t_end], rtol=tol.get("rtol", 1e-10), atol=tol.get("atol", 1e-12))
    assert traj.success, traj.message
    return ed.unpack(traj.y[-1])


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
    traj = ed.solve(10.0, t_eval=np.linspace(0.0, 10.0, 6), rtol=1e-10, atol=1e-12)
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
    # −0.63 lies between the true boundary a₁³ = −c₁α/β and that of a bracket with 2a₁²
    a1 = np.array([-0.3, -0.5, -0.63, 0.6, 1.2, -1.6])
    a2 = ALPHA / BETA / a1
    unstable = a111_unstable(a1, a2, c1=C1)
    assert unstable.tolist() == [True, True, True, False, False, False]
    ed = ode(a1 + 1e-4, a2)
    traj = ed.solve(20.0, t_eval=[20.0], rtol=1e-10, atol=1e-13)
    e1, e2 = weights(ed, traj.y[-1])
    moved = np.hypot(e1 - a1, e2 - a2)
    assert np.all(moved[unstable] > 1e-3)
    assert np.all(moved[~unstable] < 2e-4)


def test_theorem2_simulated_training_at_small_eta_ends_at_the_cubic_root():
    """Minibatch SGD (x ~ N(0, β), t = (α/β)x, η = 10⁻², batch 50, 5000 steps = 50 time
    units), one data stream: the end points match eq. 31 within 0.02. Independent streams
    agree to ≈ 10⁻⁴; the end is off the root by a systematic O(η) shift of the conserved
    parabola (0.005 for full-batch Euler steps at this η; 0.006 measured for SGD by
    experiments/baldi2018_chains.py), which the bar covers with margin."""
    reps = 1
    a1s, a2s = np.repeat(STARTS[:, 0], reps), np.repeat(STARTS[:, 1], reps)
    net = chain(a1s, a2s)
    simulate(net, lambda rng, shape: rng.standard_normal(shape) * np.sqrt(BETA), ALPHA / BETA)
    a1 = net.layers[0].W[:, 0, 0].reshape(-1, reps).mean(axis=1)
    a2 = net.layers[1].W[:, 0, 0].reshape(-1, reps).mean(axis=1)
    f1, f2 = a111_fixed_point(STARTS[:, 0], STARTS[:, 1], c1=C1, alpha=ALPHA, beta=BETA)
    np.testing.assert_allclose(a1, f1, atol=0.02)
    np.testing.assert_allclose(a2, f2, atol=0.02)


@pytest.mark.parametrize(("a1", "a2"), [(0.5, -1.5), (-0.8, -1.2)])
def test_theorem2_lower_half_plane_can_have_three_roots_and_the_flow_picks_by_direction(a1, a2):
    C_ = a111_parabola_constant(a1, a2, c1=C1)
    roots = np.roots([1.0, 0.0, 2 * C1 * C_, -2 * C1 * ALPHA / BETA])
    f1, _ = a111_fixed_point(a1, a2, c1=C1, alpha=ALPHA, beta=BETA)
    assert np.min(np.abs(roots - f1)) < 1e-9
    # the root reached is the nearest one in the direction of da₁/dt
    da1, _ = a111_rhs(a1, a2, c1=C1, alpha=ALPHA, beta=BETA)
    assert np.sign(f1 - a1) == np.sign(da1)


# --- §7.3-7.4: A[1,1,1,1] (Theorem 3) and A[1,…,1] (Theorem 4) --------------------------------

CHAIN_C = {3: np.array([0.7, -0.5]), 4: np.array([0.6, -0.8, 0.9])}
CHAIN_STARTS = {
    3: np.array([[0.3, 0.5, -0.4], [-0.6, 0.2, 0.8], [0.1, -0.3, 0.2], [1.0, 1.0, 1.0]]),
    4: np.array([[0.3, 0.5, -0.4, 0.6], [-0.2, 0.4, 0.3, -0.5], [0.5, 0.5, 0.5, 0.5]]),
}


def linear_chain(a, c, rule="srbp"):
    """A[1,…,1], one member per row of ``a``; SRBP's C^{(L,i)} is the paper's c_i (eq. 43)."""
    E, L = a.shape
    net = network([1] * (L + 1), rule=rule, E=E)
    for i in range(L):
        net.layers[i].W[:, 0, 0] = a[:, i]
    if rule != "bp":
        for i in range(L - 1):
            net.channel.feedback[(L, i + 1)].C[:, 0, 0] = c[i]
    return net


def chain_weights(w, L):
    return np.stack([w[f"W{i + 1}"][:, 0, 0] for i in range(L)], axis=1)


@pytest.mark.parametrize("L", [3, 4])
def test_theorem4_eq45_is_the_odes_right_hand_side(L):
    a, c = CHAIN_STARTS[L], CHAIN_C[L]
    ed = ExpectedDynamics(linear_chain(a, c), *moment_design(BETA, ALPHA))
    got = chain_weights(ed.unpack(ed.rhs(0.0, ed.state())), L)
    np.testing.assert_allclose(
        got, chain_rhs(a, c=c, alpha=ALPHA, beta=BETA), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("L", [3, 4])
def test_theorem4_eq48_quadratic_couplings_are_conserved_and_q_has_degree_2L_minus_1(L):
    a, c = CHAIN_STARTS[L], CHAIN_C[L]
    ed = ExpectedDynamics(linear_chain(a, c), *moment_design(BETA, ALPHA))
    traj = ed.solve(5.0, t_eval=np.linspace(0, 5.0, 11), rtol=1e-10, atol=1e-12)
    K0 = chain_constants(a, c=c)
    for y in traj.y:
        at = chain_weights(ed.unpack(y), L)
        np.testing.assert_allclose(chain_constants(at, c=c), K0, atol=1e-7)
        # da₁/dt = Q(a₁) on the invariant curve (eq. 42)
        for m in range(len(a)):
            q = chain_polynomial(c=c, constants=K0[m], alpha=ALPHA, beta=BETA)
            assert len(q) - 1 == 2**L - 1
            da1 = chain_rhs(at[m], c=c, alpha=ALPHA, beta=BETA)[0]
            np.testing.assert_allclose(np.polyval(q, at[m, 0]), da1, rtol=1e-6, atol=1e-8)
    # power: the coupling without its factor ½ drifts
    at = chain_weights(ed.unpack(traj.y[-1]), L)
    assert (
        np.abs(
            (at[:, 1] - c[1] / c[0] * at[:, 0] ** 2) - (a[:, 1] - c[1] / c[0] * a[:, 0] ** 2)
        ).max()
        > 1e-2
    )


def test_theorem3_leading_term_of_the_degree7_polynomial_is_negative():
    c = CHAIN_C[3]
    lead = -BETA * c[1] ** 2 / (16 * c[0] ** 2)  # eq. 42 expanded, with its sign
    assert chain_leading_coefficient(c=c, beta=BETA) == pytest.approx(lead, rel=1e-12)
    q = chain_polynomial(c=c, constants=[0.3, -0.2], alpha=ALPHA, beta=BETA)
    assert q[0] == pytest.approx(lead, rel=1e-12)
    rng = np.random.default_rng(0)
    for L in (2, 3, 4, 5):
        cs = rng.uniform(-1.5, 1.5, (50, L - 1))
        assert np.all(chain_leading_coefficient(c=cs, beta=BETA) < 0)


@pytest.mark.parametrize("L", [3, 4])
def test_theorem4_fixed_point_is_the_root_of_q_the_ode_reaches(L):
    a, c = CHAIN_STARTS[L], CHAIN_C[L]
    ed = ExpectedDynamics(linear_chain(a, c), *moment_design(BETA, ALPHA))
    end = chain_weights(solve_end(ed, 40.0), L)
    want = chain_fixed_point(a, c=c, alpha=ALPHA, beta=BETA)
    np.testing.assert_allclose(end, want, atol=1e-5)
    np.testing.assert_allclose(np.prod(want, axis=1), ALPHA / BETA, rtol=1e-8)


def test_theorem4_eq54_gradient_descent_conserves_squared_differences():
    a = CHAIN_STARTS[3]
    ed = ExpectedDynamics(linear_chain(a, None, rule="bp"), *moment_design(BETA, ALPHA))
    end = chain_weights(solve_end(ed, 20.0), 3)
    np.testing.assert_allclose(chain_gd_constants(end), chain_gd_constants(a), atol=1e-7)
    np.testing.assert_allclose(np.prod(end, axis=1), ALPHA / BETA, rtol=1e-6)
    # power: backprop's c_i = a_{i+1}⋯a_L change, so the RBP invariants are not kept
    assert (
        np.abs(chain_constants(end, c=CHAIN_C[3]) - chain_constants(a, c=CHAIN_C[3])).max() > 0.05
    )


def test_theorem3_simulated_training_ends_at_the_root():
    """SGD as for Theorem 2 (η = 10⁻², batch 50, 5000 steps, one stream): the end point matches
    the degree-7 root within 0.02 (the systematic O(η) shift of the invariants, ≈ 0.009
    measured; streams agree to ≈ 10⁻⁴)."""
    a, c, reps = CHAIN_STARTS[3], CHAIN_C[3], 1
    net = linear_chain(np.repeat(a, reps, axis=0), c)
    simulate(net, lambda rng, shape: rng.standard_normal(shape) * np.sqrt(BETA), ALPHA / BETA)
    got = chain_weights({f"W{i + 1}": net.layers[i].W for i in range(3)}, 3)
    got = got.reshape(len(a), reps, 3).mean(axis=1)
    np.testing.assert_allclose(got, chain_fixed_point(a, c=c, alpha=ALPHA, beta=BETA), atol=0.02)


# --- §7.5: A[1,N,1] (Theorem 5) -----------------------------------------------------------------

N_WIDE = 3
WIDE_C = np.array([0.5, -0.3, 0.8])
WIDE_A = np.array([[0.1, 0.2, -0.3], [-0.5, 0.4, 0.1], [0.9, -0.7, 0.3]])
WIDE_B = np.array([[0.5, 0.1, 0.2], [0.3, -0.6, 0.2], [-0.4, 0.5, -0.8]])


def wide(a, b, c):
    net = network([1, a.shape[1], 1], rule="rbp", E=len(a))
    net.layers[0].W[:, :, 0] = a
    net.layers[1].W[:, 0, :] = b
    net.channel.feedback[(2, 1)].C[:, 0, :] = c
    return net


def wide_weights(w):
    return w["W1"][:, :, 0], w["W2"][:, 0, :]


def test_theorem5_eq57_is_the_odes_right_hand_side_and_eq59_61_are_conserved():
    ed = ExpectedDynamics(wide(WIDE_A, WIDE_B, WIDE_C), *moment_design(BETA, ALPHA))
    da, db = wide_weights(ed.unpack(ed.rhs(0.0, ed.state())))
    wa, wb = a1n1_rhs(WIDE_A, WIDE_B, c=WIDE_C, alpha=ALPHA, beta=BETA)
    np.testing.assert_allclose(da, wa, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(db, wb, rtol=1e-12, atol=1e-14)
    C0, K0 = a1n1_constants(WIDE_A, WIDE_B, c=WIDE_C)
    a, b = wide_weights(solve_end(ed, 5.0))
    C1_, K1 = a1n1_constants(a, b, c=WIDE_C)
    np.testing.assert_allclose(C1_, C0, atol=1e-7)
    np.testing.assert_allclose(K1, K0, atol=1e-7)
    assert np.abs((b - a**2 / WIDE_C) - (WIDE_B - WIDE_A**2 / WIDE_C)).max() > 1e-2  # power


def test_theorem5_cubic_has_leading_term_eq63_and_its_root_is_where_the_ode_ends():
    C0, K0 = a1n1_constants(WIDE_A, WIDE_B, c=WIDE_C)
    q = a1n1_polynomial(c=WIDE_C, C=C0[0], K=K0[0], alpha=ALPHA, beta=BETA)
    assert len(q) == 4
    assert q[0] == pytest.approx(a1n1_leading_coefficient(c=WIDE_C, beta=BETA), rel=1e-12)
    assert q[0] == pytest.approx(-BETA / (2 * WIDE_C[0] ** 2) * np.sum(WIDE_C**2), rel=1e-12)
    ed = ExpectedDynamics(wide(WIDE_A, WIDE_B, WIDE_C), *moment_design(BETA, ALPHA))
    a, b = wide_weights(solve_end(ed, 100.0))
    fa, fb = a1n1_fixed_point(WIDE_A, WIDE_B, c=WIDE_C, alpha=ALPHA, beta=BETA)
    np.testing.assert_allclose(a, fa, atol=1e-5)
    np.testing.assert_allclose(b, fb, atol=1e-5)
    np.testing.assert_allclose(np.sum(fa * fb, axis=1), ALPHA / BETA, rtol=1e-8)


def test_theorem5_simulated_training_ends_at_the_cubic_root():
    """SGD (η = 10⁻², batch 50, 4000 steps, one stream): end within 0.02 of the cubic's root
    (the systematic O(η) shift of the invariants, ≈ 0.003 measured; streams agree to ≈ 10⁻⁴)."""
    reps = 1
    net = wide(np.repeat(WIDE_A, reps, 0), np.repeat(WIDE_B, reps, 0), WIDE_C)
    simulate(net, lambda rng, s: rng.standard_normal(s) * np.sqrt(BETA), ALPHA / BETA, steps=4000)
    a = net.layers[0].W[:, :, 0].reshape(len(WIDE_A), reps, -1).mean(axis=1)
    b = net.layers[1].W[:, 0, :].reshape(len(WIDE_A), reps, -1).mean(axis=1)
    fa, fb = a1n1_fixed_point(WIDE_A, WIDE_B, c=WIDE_C, alpha=ALPHA, beta=BETA)
    np.testing.assert_allclose(a, fa, atol=0.02)
    np.testing.assert_allclose(b, fb, atol=0.02)


# --- §7.6: A[N,1,N] (Lemma 1, Theorem 6) --------------------------------------------------------

NARROW_C = np.array([0.5, -1.0, 0.3])
NARROW_A = np.array([[0.1, 0.2, -0.1], [-0.4, 0.3, 0.5], [0.6, 0.1, 0.2]])
NARROW_B = np.array([[0.3, 0.1, 0.2], [-0.2, 0.4, 0.1], [0.1, -0.5, 0.3]])


def narrow(A, B, Cf):
    net = network([A.shape[1], 1, A.shape[1]], rule="rbp", E=len(A))
    net.layers[0].W[:, 0, :] = A
    net.layers[1].W[:, :, 0] = B
    net.channel.feedback[(2, 1)].C[:, :, 0] = Cf
    return net


def test_lemma1_cb_minus_half_norm_a_squared_is_conserved():
    rng = np.random.default_rng(3)
    M = rng.standard_normal((3, 3))
    sxx, stx = M @ M.T + 0.5 * np.eye(3), rng.standard_normal((3, 3))  # any data (eq. 65-67)
    ed = ExpectedDynamics(narrow(NARROW_A, NARROW_B, NARROW_C), *moment_design(sxx, stx))
    w = solve_end(ed, 5.0)
    A, B = w["W1"][:, 0, :], w["W2"][:, :, 0]
    K0 = an1n_lemma1_constant(NARROW_A, NARROW_B, C=NARROW_C)
    np.testing.assert_allclose(an1n_lemma1_constant(A, B, C=NARROW_C), K0, atol=1e-7)
    assert (
        np.abs(
            np.sum(NARROW_C * B, 1)
            - np.sum(A**2, 1)
            - (np.sum(NARROW_C * NARROW_B, 1) - np.sum(NARROW_A**2, 1))
        ).max()
        > 1e-2
    )


def test_theorem6_autoencoder_ends_at_a_equals_hc_and_p_the_projection_onto_c():
    ed = ExpectedDynamics(
        narrow(NARROW_A, NARROW_B, NARROW_C), *moment_design(np.eye(3), np.eye(3))
    )
    w = solve_end(ed, 300.0)
    A, B = w["W1"][:, 0, :], w["W2"][:, :, 0]
    fA, fB, fP = an1n_fixed_point(NARROW_A, NARROW_B, C=NARROW_C)
    np.testing.assert_allclose(A, fA, atol=1e-4)
    np.testing.assert_allclose(B, fB, atol=1e-4)
    np.testing.assert_allclose(B[:, :, None] * A[:, None, :], fP, atol=1e-4)


def test_theorem6_simulated_autoencoder_ends_near_the_fixed_point():
    """SGD on x ~ N(0, I), t = x (η = 10⁻², batch 50, 5000 steps, one stream). The data are
    not realisable by a rank-1 map, so SGD noise persists at the fixed point; the end point is
    within 0.02 of Theorem 6's (≈ 0.005 measured; streams agree to ≈ 10⁻⁴)."""
    reps = 1
    net = narrow(np.repeat(NARROW_A, reps, 0), np.repeat(NARROW_B, reps, 0), NARROW_C)
    simulate(net, lambda rng, s: rng.standard_normal(s), 1.0)
    A = net.layers[0].W[:, 0, :].reshape(3, reps, 3).mean(axis=1)
    B = net.layers[1].W[:, :, 0].reshape(3, reps, 3).mean(axis=1)
    fA, fB, _ = an1n_fixed_point(NARROW_A, NARROW_B, C=NARROW_C)
    np.testing.assert_allclose(A, fA, atol=0.02)
    np.testing.assert_allclose(B, fB, atol=0.02)


# --- §7.8: A[N0,N1,N2] (Theorems 7-8) and A[2,2,2] (Theorem 10) --------------------------------


def three_layer(sizes, E, Cf, seed=0):
    """lpfa's C^{(2,1)} (N₂ × N₁) is the paper's C₁ᵀ."""
    net = network(sizes, rule="rbp", E=E, seed=seed)
    net.channel.feedback[(2, 1)].C[...] = np.swapaxes(Cf, -1, -2)
    return net


def test_theorems7_8_invariant_bounded_a1_and_limit_of_c1_a2_a1():
    rng = np.random.default_rng(5)
    n0, n1, n2, E = 3, 4, 2, 4
    M = rng.standard_normal((n0, n0))
    sxx, stx = M @ M.T / n0 + 0.3 * np.eye(n0), rng.standard_normal((n2, n0))
    C1 = rng.standard_normal((n1, n2))
    net = three_layer([n0, n1, n2], E, C1)
    ed = ExpectedDynamics(net, *moment_design(sxx, stx))
    traj = ed.solve(60.0, t_eval=np.linspace(0, 60.0, 31), rtol=1e-10, atol=1e-12)
    ws = [ed.unpack(y) for y in traj.y]
    C0 = three_layer_invariant(ws[0]["W1"], ws[0]["W2"], C1=C1)
    V = [three_layer_lyapunov(w["W1"], w["W2"], C1=C1, sigma_tx=stx, sigma_xx=sxx) for w in ws]
    for w, v_prev, v in zip(ws[1:], V[:-1], V[1:], strict=True):
        np.testing.assert_allclose(three_layer_invariant(w["W1"], w["W2"], C1=C1), C0, atol=1e-7)
        assert np.linalg.eigvalsh(v - v_prev).max() < 1e-8  # dV/dt ⪯ 0 (eq. 108)
    norms = [np.linalg.norm(w["W1"], axis=(1, 2)) for w in ws]
    assert np.max(norms) < 10 * np.max(norms[0]) + 10  # bounded (Theorem 7), loosely
    got = C1 @ ws[-1]["W2"] @ ws[-1]["W1"]
    np.testing.assert_allclose(
        got,
        np.broadcast_to(three_layer_limit(C1=C1, sigma_tx=stx, sigma_xx=sxx), got.shape),
        atol=1e-4,
    )
    # power: the invariant with A₂'s role taken by backprop's A₂ᵀ is not conserved
    Wl, W0 = ws[-1], ws[0]
    sym = lambda w: w["W2"].swapaxes(1, 2) @ w["W2"] - w["W1"] @ w["W1"].swapaxes(1, 2)  # noqa: E731
    assert np.abs(sym(Wl) - sym(W0)).max() > 1e-2


def test_theorem10_a222_with_identity_data_and_channel_converges():
    """Σ_TI = Σ_II = C₁ = I (eq. 111): A(t), B(t) converge individually, BA → I."""
    net = three_layer([2, 2, 2], 6, np.eye(2), seed=11)
    ed = ExpectedDynamics(net, *moment_design(np.eye(2), np.eye(2)))
    traj = ed.solve(200.0, t_eval=[100.0, 200.0], rtol=1e-10, atol=1e-12)
    w_mid, w_end = ed.unpack(traj.y[0]), ed.unpack(traj.y[1])
    np.testing.assert_allclose(
        w_end["W2"] @ w_end["W1"], np.broadcast_to(np.eye(2), (6, 2, 2)), atol=1e-6
    )
    np.testing.assert_allclose(w_end["W1"], w_mid["W1"], atol=1e-5)
    np.testing.assert_allclose(w_end["W2"], w_mid["W2"], atol=1e-5)
    assert np.abs(ed.rhs(0.0, traj.y[1])).max() < 1e-6


# --- §7.9: the power-law unit (eqs. 113-118, Theorem 12) ----------------------------------------

MU_C1 = 0.8
# a symmetric design: ±I on a midpoint grid of |I| ∈ [0.5, 1.5], odd targets T = I³; with the
# odd unit sign(S)|S|^μ every bias update vanishes by symmetry, so the weights follow eq. 113-114.
_GRID = 0.5 + (np.arange(20) + 0.5) / 20
POWER_X = np.concatenate([_GRID, -_GRID])[:, None]
POWER_T = POWER_X**3  # realisable by μ = 3 (a₂a₁³ = 1), not by μ = 1/3
POWER_STARTS = np.array([[0.3, 0.2], [1.5, 0.1], [0.5, 1.5], [0.2, -0.5]])


def power_chain(starts, mu, fprime=True):
    net = network([1, 1, 1], rule="rbp", hidden="power", E=len(starts), fprime=fprime, mu=mu)
    net.layers[0].W[:, 0, 0] = starts[:, 0]
    net.layers[1].W[:, 0, 0] = starts[:, 1]
    net.channel.feedback[(2, 1)].C[:, 0, 0] = MU_C1
    return net


@pytest.mark.parametrize("mu", [1 / 3, 3.0])
@pytest.mark.parametrize("fprime", [True, False])
def test_section79_eq113_114_are_the_odes_right_hand_side(mu, fprime):
    alpha, beta, gamma, delta = power_moments(POWER_X[:, 0], POWER_T[:, 0], mu=mu)
    ed = ExpectedDynamics(power_chain(POWER_STARTS, mu, fprime), POWER_X, POWER_T)
    w = ed.unpack(ed.rhs(0.0, ed.state()))
    da1, da2 = power_rhs(
        POWER_STARTS[:, 0],
        POWER_STARTS[:, 1],
        c1=MU_C1,
        mu=mu,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        delta=delta,
        fprime=fprime,
    )
    np.testing.assert_allclose(w["W1"][:, 0, 0], da1, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(w["W2"][:, 0, 0], da2, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(w["b1"], 0.0, atol=1e-13)
    np.testing.assert_allclose(w["b2"], 0.0, atol=1e-13)


@pytest.mark.parametrize("mu", [1 / 3, 3.0])
def test_theorem12_eq115_is_conserved_and_the_flow_ends_at_a_root_of_eq117(mu):
    alpha, beta, _, _ = power_moments(POWER_X[:, 0], POWER_T[:, 0], mu=mu)
    starts = POWER_STARTS[:3]  # a₂(0) > 0 as in Theorem 12
    ed = ExpectedDynamics(power_chain(starts, mu), POWER_X, POWER_T)
    traj = ed.solve(40.0, t_eval=[5.0, 40.0], rtol=1e-10, atol=1e-12)
    K0 = power_coupling_constant(starts[:, 0], starts[:, 1], c1=MU_C1, mu=mu)
    for y in traj.y:
        w = ed.unpack(y)
        np.testing.assert_allclose(
            power_coupling_constant(w["W1"][:, 0, 0], w["W2"][:, 0, 0], c1=MU_C1, mu=mu),
            K0,
            atol=1e-7,
        )
    f1, f2 = power_fixed_point(starts[:, 0], starts[:, 1], c1=MU_C1, mu=mu, alpha=alpha, beta=beta)
    np.testing.assert_allclose(w["W1"][:, 0, 0], f1, atol=1e-5)
    np.testing.assert_allclose(w["W2"][:, 0, 0], f2, atol=1e-5)
    np.testing.assert_allclose(f2 * f1**mu, alpha / beta, rtol=1e-8)  # eq. 116
    # power: the linear chain's coupling (no μ) is not what is conserved
    if mu != 1.0:
        wrong = lambda a1, a2: a2 - a1**2 / (2 * MU_C1)  # noqa: E731
        assert (
            np.abs(
                wrong(w["W1"][:, 0, 0], w["W2"][:, 0, 0]) - wrong(starts[:, 0], starts[:, 1])
            ).max()
            > 1e-2
        )


def test_section79_eq113_without_fprime_has_no_fixed_point():
    mu = 1 / 3
    alpha, beta, gamma, delta = power_moments(POWER_X[:, 0], POWER_T[:, 0], mu=mu)
    assert abs(alpha / beta - gamma / delta) > 0.1  # the two nullclines differ
    starts = POWER_STARTS[:3]
    ed = ExpectedDynamics(power_chain(starts, mu, fprime=False), POWER_X, POWER_T)
    traj = ed.solve(30.0, t_eval=[10.0, 20.0, 30.0], rtol=1e-9, atol=1e-12)
    # the flow never settles: a₁ keeps moving at a rate bounded away from 0
    for y in traj.y:
        assert np.abs(ed.unpack(ed.rhs(0.0, y))["W1"][:, 0, 0]).min() > 1e-3
    # while with f′ the same starts come to rest
    ed_f = ExpectedDynamics(power_chain(starts, mu), POWER_X, POWER_T)
    y = ed_f.solve(100.0, t_eval=[100.0], rtol=1e-9, atol=1e-12).y[-1]
    assert np.abs(ed_f.rhs(0.0, y)).max() < 1e-6


def test_theorem12_simulated_training_ends_at_the_root():
    """SGD on minibatches drawn (with replacement) from the symmetric design (η = 10⁻²,
    batch 50, 4000 steps, one stream, μ = 1/3): the end point is within 0.02 of Theorem 12's
    root (≈ 0.001 measured, stream sd 0.0015; the targets are not realisable, so SGD noise
    persists).
    The paper's chain has no biases: lpfa's are held at 0 after every step (a random minibatch
    is not symmetric, and b = 0 is not always a stable set of the flow with biases)."""
    mu, reps, starts = 1 / 3, 1, POWER_STARTS[:3]
    alpha, beta, _, _ = power_moments(POWER_X[:, 0], POWER_T[:, 0], mu=mu)
    net = power_chain(np.repeat(starts, reps, 0), mu)
    X, T = POWER_X[:, 0], POWER_T[:, 0]
    rng = np.random.default_rng(1)
    for _ in range(4000):
        k = rng.integers(0, len(X), size=50)
        net.step(X[k][:, None], T[k][:, None], 1e-2)
        for layer in net.layers:
            layer.b[...] = 0.0
    a1 = net.layers[0].W[:, 0, 0].reshape(-1, reps).mean(axis=1)
    a2 = net.layers[1].W[:, 0, 0].reshape(-1, reps).mean(axis=1)
    f1, f2 = power_fixed_point(starts[:, 0], starts[:, 1], c1=MU_C1, mu=mu, alpha=alpha, beta=beta)
    np.testing.assert_allclose(a1, f1, atol=0.02)
    np.testing.assert_allclose(a2, f2, atol=0.02)


def test_flow_root_follows_the_sign_of_q():
    q = np.poly([-2.0, 0.5, 3.0]) * -1.0  # Q = −(x+2)(x−0.5)(x−3): stable at −2 and 3
    assert flow_root(q, 0.0) == pytest.approx(-2.0)
    assert flow_root(q, 1.0) == pytest.approx(3.0)
    assert flow_root(q, 10.0) == pytest.approx(3.0)
    assert flow_root(q, -10.0) == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="negative leading"):
        flow_root(-q, 0.0)


# --- §6: Fact 4 (coherent feedback) and Fact 6 (class-wise signals) ------------------------------


@pytest.mark.parametrize("hidden", ["linear", "tanh"])
def test_fact4_coherent_feedback_moves_the_first_layer_in_the_gradients_orthant(hidden):
    """A[N0,N1,1]: with sign(c_i) = sign(b_i), every entry of RBP's first-layer update has the
    sign of the gradient's (ΔW¹_ij = η Σ(T−O) f′_i I_j · c_i vs · b_i); incoherent c does not."""
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((16, 5)), rng.standard_normal((16, 1))

    def update(rule, congruent=False):
        net = network([5, 8, 1], rule=rule, hidden=hidden, E=6, seed=3)
        if rule == "rbp":
            C_ = net.channel.feedback[(2, 1)].C
            C_[...] = np.abs(C_) * (np.sign(net.layers[1].W) if congruent else 1.0)
        W1, W2 = net.layers[0].W.copy(), net.layers[1].W.copy()
        net.step(x, t, 0.1)
        return net.layers[0].W - W1, net.layers[1].W - W2

    g1, g2 = update("bp")
    r1, r2 = update("rbp", congruent=True)
    np.testing.assert_allclose(r2, g2, rtol=1e-12, atol=1e-15)  # Fact 1: the top layer is BP's
    assert np.all(np.sign(r1) == np.sign(g1))
    assert np.all(np.sum(r1 * g1, axis=(1, 2)) > 0)  # downhill
    i1, _ = update("rbp", congruent=False)  # all-positive c: incoherent where b_i < 0
    assert np.mean(np.sign(i1) != np.sign(g1)) > 0.1


def test_fact6_same_class_examples_receive_nearly_the_same_backpropagated_signal():
    """MNIST, 784-100-10 tanh/softmax with small weights, SRBP: at the start, the hidden error
    signals R¹ of same-class images are nearly parallel and those of different classes nearly
    orthogonal (Fact 6's error vectors ≈ T − 0.1·1)."""
    from lpfa.data import load_cached

    data = load_cached(
        C.DataConfig(name="mnist", n_train=600, n_test=10), (784, 100, 10), "float64"
    )
    cfg = C.from_dict(
        C.RunConfig,
        {
            "seeds": [0],
            "model": {"sizes": [784, 100, 10], "dtype": "float64", "init_scale": 0.1},
            "channel": {"rule": "srbp", "fprime": False},
        },
    )
    net = Network.build(cfg)
    x, t, y = data.inputs(data.x_train), data.t_train, data.y_train
    R1 = net.deltas(net.forward(x), t)[0][0]  # (B, N_1) of member 0
    R1 = R1 / np.linalg.norm(R1, axis=1, keepdims=True)
    cos = R1 @ R1.T
    same = y[:, None] == y[None, :]
    off = ~np.eye(len(y), dtype=bool)
    within, across = cos[same & off].mean(), cos[~same].mean()
    assert within > 0.99
    # error vectors ≈ T − 0.1·1 have cosine −0.1/0.9 = −1/9 across classes; a fixed random
    # 100 × 10 feedback matrix keeps inner products to ~1/√100, so the bar is 0.05
    assert abs(across + 1 / 9) < 0.05
