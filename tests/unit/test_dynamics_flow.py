"""Flow fields of the expected dynamics (lpfa.dynamics.flow), and Lillicrap et al. (2016)'s
Supplementary Proofs checked on lpfa's own network: Theorem 1, Proof 3 / Lemma 5, and the
invariant BW + WᵀBᵀ − AAᵀ = const."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lpfa import config as C
from lpfa.channel import Channel
from lpfa.config import ConfigError
from lpfa.dynamics import ExpectedDynamics, linear_config, moment_design
from lpfa.dynamics.chains import a111_fixed_point, a111_parabola_constant, a111_rhs
from lpfa.dynamics.flow import (
    Paths,
    ensemble,
    field,
    gaussian_sampler,
    plot_flow,
    simulate,
    trajectories,
)
from lpfa.network import Network

ALPHA, BETA, C1 = 0.5, 2.0, 0.7  # deliberately not 1, so a swapped coefficient shows
PAIR = ("W1[0,0]", "W2[0,0]")
FB = "C2_1[0,0]"
# the field is the simulator's update in float64: its error is rounding, a few ulp of the
# largest term (|c₁|, |a₁|) × |α − β a₁a₂| ≲ 20 on the grids below
ROUNDING = 1e-12


def config(sizes=(1, 1, 1), rule="rbp", seeds=(0,), **channel) -> C.RunConfig:
    return linear_config(sizes, rule, seeds=seeds, channel=channel)


def design():
    return moment_design(BETA, ALPHA)  # β = E[I²], α = E[I T]


def angle_rad(a, b):
    """Angle between vectors, accurate near 0 (arccos of a cosine is not: √ε ≈ 1e-8)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return 2.0 * np.arctan2(np.linalg.norm(a - b), np.linalg.norm(a + b))


# --- the field ---------------------------------------------------------------------------------


def test_the_field_from_the_expected_dynamics_is_baldis_eq23_on_the_grid():
    xs, ys = np.linspace(-2.5, 2.5, 11), np.linspace(-2.0, 2.0, 9)
    U, V = field(config(), *design(), PAIR, (xs, ys), fixed={FB: C1})
    assert U.shape == V.shape == (9, 11)
    gx, gy = np.meshgrid(xs, ys)
    u, v = a111_rhs(gx, gy, c1=C1, alpha=ALPHA, beta=BETA)
    np.testing.assert_allclose(U, u, rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(V, v, rtol=0, atol=ROUNDING)


def test_every_grid_point_is_an_independent_system():
    """The field at a point is the same computed alone, inside one grid, or inside another."""
    point = (0.3, -1.1)
    alone = field(config(), *design(), PAIR, ([point[0]], [point[1]]), fixed={FB: C1})
    for xs, ys in [
        (np.array([-2.0, point[0], 1.0]), np.array([point[1], 0.0, 2.0])),
        (np.array([point[0], 5.0]), np.array([-3.0, 7.0, point[1]])),
    ]:
        U, V = field(config(), *design(), PAIR, (xs, ys), fixed={FB: C1})
        j, i = int(np.flatnonzero(xs == point[0])[0]), int(np.flatnonzero(ys == point[1])[0])
        assert U[i, j] == alone[0][0, 0]
        assert V[i, j] == alone[1][0, 0]


def test_the_weights_not_on_the_axes_are_held_at_the_chosen_members_values():
    """A 2-2-1 net: the field over two of its weights equals the ExpectedDynamics of that member
    with only those two weights changed."""
    cfg = config((2, 2, 1), seeds=(3, 4))
    sxx, stx = np.array([[1.0, 0.3], [0.3, 0.5]]), np.array([[0.4, -0.2]])
    X, T = moment_design(sxx, stx)
    xs, ys = np.array([-0.5, 0.25]), np.array([0.1, 0.9, 1.3])
    U, V = field(cfg, X, T, ("W1[1,0]", "W2[0,1]"), (xs, ys), member=1)
    for i, j in [(0, 0), (2, 1), (1, 0)]:
        net = Network.build(cfg)
        net.layers[0].W[:, 1, 0] = xs[j]
        net.layers[1].W[:, 0, 1] = ys[i]
        rate = ExpectedDynamics(net, X, T)
        drift = rate.unpack(rate.rhs(0.0, rate.state()))
        assert U[i, j] == pytest.approx(drift["W1"][1, 1, 0], abs=ROUNDING)
        assert V[i, j] == pytest.approx(drift["W2"][1, 0, 1], abs=ROUNDING)
        assert U[i, j] != pytest.approx(drift["W1"][0, 1, 0], abs=1e-6)  # member 0 differs


def test_a_feedback_weight_can_be_an_axis_fixed_or_adaptive():
    xs, cs = np.linspace(-1.0, 1.0, 5), np.linspace(-2.0, 2.0, 4)
    gx, gc = np.meshgrid(xs, cs)
    a2 = 0.6
    U, V = field(config(), *design(), ("W1[0,0]", FB), (xs, cs), fixed={"W2[0,0]": a2})
    np.testing.assert_allclose(U, a111_rhs(gx, a2, c1=gc, alpha=ALPHA, beta=BETA)[0], atol=1e-12)
    assert np.all(V == 0.0)  # fixed feedback does not move
    # ARBP: C adapts as the top layer does, dC/dt = adapt_lr · E[e h] = adapt_lr · da₂/dt
    lr_c = 0.25
    U, V = field(config(adapt_lr=lr_c), *design(), ("W1[0,0]", FB), (xs, cs), fixed={"W2[0,0]": a2})
    da2 = a111_rhs(gx, a2, c1=gc, alpha=ALPHA, beta=BETA)[1]
    np.testing.assert_allclose(V, lr_c * da2, atol=1e-12)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (("W1[0,0]", "W9[0,0]"), r"weights='W9\[0,0\]': layer 9 is not in 1..2"),
        (("W1[0]", "W2[0,0]"), r"index out of range for W1"),
        (("W1[0,0]", "b2[3]"), r"index out of range for b2"),
        (("W1[0,0]", "C3_1[0,0]"), r"feedback arrays are: C2_1"),
        (("W1[0,0]", "a2"), r"weights='a2': name a weight as W<h>\[i,j\]"),
        (("W1[0,0]", "W1[0,0]"), r"name two different weights"),
        ("W1[0,0]", r"name two different weights"),
    ],
)
def test_a_bad_weight_name_is_refused_with_one_line_naming_it(weights, message):
    with pytest.raises(ConfigError, match=message) as err:
        field(config(), *design(), weights, ([0.0], [0.0]))
    assert "\n" not in str(err.value)


def test_bad_starts_and_member_are_refused():
    with pytest.raises(ConfigError, match=r"starts=.*need \(K, 2\)"):
        trajectories(config(), *design(), PAIR, np.zeros((3, 3)), 1.0)
    with pytest.raises(ConfigError, match=r"member=2: must be in 0..0"):
        ensemble(config(), 2, member=2)


# --- trajectories ------------------------------------------------------------------------------


def test_ode_paths_keep_their_parabola_and_end_at_the_cubics_root():
    """Baldi et al. eq. 30 and 31 through flow.trajectories (solver tolerance rtol = 1e-9)."""
    starts = np.array([[0.0, 0.0], [0.4, -1.2], [-1.0, -0.3], [1.2, 1.5], [-0.5, 1.0]])
    p = trajectories(config(), *design(), PAIR, starts, 40.0, fixed={FB: C1}, n_points=50)
    assert isinstance(p, Paths)
    assert p.x.shape == p.y.shape == (50, 5)
    assert np.array_equal(p.x[0], starts[:, 0])
    conserved = a111_parabola_constant(p.x, p.y, c1=C1)
    np.testing.assert_allclose(conserved, np.broadcast_to(conserved[0], conserved.shape), atol=1e-7)
    f1, f2 = a111_fixed_point(starts[:, 0], starts[:, 1], c1=C1, alpha=ALPHA, beta=BETA)
    np.testing.assert_allclose(p.x[-1], f1, atol=1e-6)
    np.testing.assert_allclose(p.y[-1], f2, atol=1e-6)


def test_simulated_training_at_small_lr_follows_the_ode_within_its_noise():
    """Mean over 12 independent data streams of minibatch SGD (η = 0.004, batches of 4) at
    t = 1.2 (mid-flight), against the ODE: within 5 standard errors of that mean plus η for the
    O(η) bias of a discrete step (with 40 streams the gap was ≤ 2 standard errors at η = 0.004,
    0.008 and 0.016: no bias resolved at this size)."""
    starts = np.array([[0.0, 0.0], [0.3, -0.4]])
    fixed = {FB: C1}
    ode = trajectories(config(), *design(), PAIR, starts, 1.2, fixed=fixed, n_points=2)
    sample = gaussian_sampler(BETA, ALPHA)
    runs = [
        simulate(config(), sample, PAIR, starts, 1.2, lr=0.004, batch_size=4, fixed=fixed, seed=s)
        for s in range(12)
    ]
    assert runs[0].t[-1] == pytest.approx(1.2)
    np.testing.assert_array_equal(runs[0].x[0], starts[:, 0])  # a path, not its end repeated
    np.testing.assert_array_equal(runs[0].y[0], starts[:, 1])
    for attr in ("x", "y"):
        end = np.stack([getattr(r, attr)[-1] for r in runs])  # (seeds, starts)
        se = end.std(axis=0, ddof=1) / np.sqrt(len(runs))
        gap = np.abs(end.mean(axis=0) - getattr(ode, attr)[-1])
        assert np.all(gap <= 5 * se + 0.004), (attr, gap, se)
        assert np.all(se > 0)  # it is a noisy run, not the Euler map of the design


# --- plotting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stream", "quiver"])
def test_plot_flow_draws_the_field_the_branches_and_the_paths(kind):
    from matplotlib.collections import LineCollection
    from matplotlib.quiver import Quiver

    xs = ys = np.linspace(-2.0, 2.0, 9)
    U, V = field(config(), *design(), PAIR, (xs, ys), fixed={FB: C1})
    p = trajectories(config(), *design(), PAIR, [[0.0, 0.0], [0.5, 0.5]], 5.0, fixed={FB: C1})
    a1 = np.linspace(0.2, 2.0, 50)
    fig, ax = plt.subplots()
    mask = np.zeros(U.shape, bool)
    mask[:3, :3] = True
    out = plot_flow(
        ax,
        xs,
        ys,
        U,
        V,
        kind=kind,
        paths=p,
        manifold=[(a1, ALPHA / BETA / a1, a1 > 1.0)],
        curves=[(a1, -a1, "a boundary")],
        region=(mask, "basin"),
    )
    assert out is ax
    field_artists = [
        c for c in ax.collections if isinstance(c, Quiver if kind == "quiver" else LineCollection)
    ]
    assert field_artists
    labels = {ln.get_label(): ln for ln in ax.lines}
    assert labels["stable fixed points"].get_linestyle() == "-"
    assert labels["unstable fixed points"].get_linestyle() == "--"
    assert "a boundary" in labels
    stable = labels["stable fixed points"].get_xdata()
    assert np.isnan(stable[a1 <= 1.0]).all()
    assert not np.isnan(stable[a1 > 1.0]).any()
    assert sum(ln.get_marker() == "x" for ln in ax.lines) == 1  # the ends of the paths
    assert ax.get_xlim() == (-2.0, 2.0)
    plt.close(fig)
    with pytest.raises(ConfigError, match="kind='arrows'"):
        plot_flow(ax, xs, ys, U, V, kind="arrows")


# --- Lillicrap et al. 2016, Supplementary Proofs -----------------------------------------------


def fa_network(sizes, seeds, *, scale=0.5):
    """Linear FA net with zero forward weights (C = 0 in eq. 14) and uniform random B."""
    net = Network.build(config(sizes, seeds=seeds, feedback="uniform", feedback_scale=scale))
    for layer in net.layers:
        layer.W[...] = 0.0
    return net


def lillicrap_invariant(net):
    """BW + WᵀBᵀ − AAᵀ per member (Lillicrap's A = W¹, W = W², B = (C^{2→1})ᵀ in lpfa)."""
    A, W = net.layers[0].W, net.layers[1].W
    Bt = net.channel.feedback[(2, 1)].C  # Bᵀ, (E, n_o, n_h)
    BW = np.swapaxes(Bt, 1, 2) @ W
    return BW + np.swapaxes(BW, 1, 2) - A @ np.swapaxes(A, 1, 2)


def test_supplementary_theorem_1_fa_drives_the_error_to_zero_if_C_is_0_and_B_plus_B_is_I():
    """Theorem 1: Ẇ = E Aᵀ, Ȧ = B E (E[x xᵀ] = I), C = 0 (zero initial weights) and B⁺B = I
    (B n_h × n_o with independent columns) ⇒ E = T − WA → 0; on the way V = ‖BE‖² never
    increases (Lemma 2). Counter-case, same C = 0: a B with a zero column (B⁺B ≠ I) keeps
    rank(A) ≤ n_o − 1, so ‖E‖ ≥ σ_min(T) (Eckart-Young) forever."""
    n_i, n_h, n_o = 5, 4, 3
    rng = np.random.default_rng(11)
    Tm = rng.uniform(-1, 1, (n_o, n_i))
    X, T = moment_design(np.eye(n_i), Tm)
    net = fa_network((n_i, n_h, n_o), seeds=(0, 1, 2, 3))
    Bt = net.channel.feedback[(2, 1)].C
    Bt[3, 1, :] = 0.0  # member 3: output 1 sends nothing back, B⁺B ≠ I
    for m in range(4):
        B = Bt[m].T
        eye = np.linalg.pinv(B) @ B
        assert np.allclose(eye, np.eye(n_o)) == (m < 3)
    np.testing.assert_allclose(lillicrap_invariant(net), 0.0, atol=0)  # C = 0
    ed = ExpectedDynamics(net, X, T)
    times = np.linspace(0.0, 400.0, 81)
    traj = ed.solve(400.0, t_eval=times, rtol=1e-10, atol=1e-12)
    assert traj.success

    def error(y):
        w = ed.unpack(y)
        return Tm - w["W2"] @ w["W1"]  # E (E, n_o, n_i); Σ_xx = I

    E_end = error(traj.y[-1])
    norm = np.linalg.norm(E_end, axis=(1, 2))
    assert np.all(norm[:3] < 1e-4 * np.linalg.norm(Tm))  # E → 0
    assert norm[3] >= np.linalg.svd(Tm, compute_uv=False)[-1] * (1 - 1e-9)
    V = np.array(
        [np.linalg.norm(np.swapaxes(Bt, 1, 2) @ error(y), axis=(1, 2)) ** 2 for y in traj.y]
    )  # (times, members)
    assert np.all(np.diff(V, axis=0) <= 1e-9 * V[0])  # Lemma 2: V̇ ≤ 0
    assert V[-1, :3].max() < 1e-8 * V[0, :3].min()


def test_supplementary_invariant_is_exactly_constant_along_the_fa_ode():
    """Eq. 14: BW + WᵀBᵀ − AAᵀ = C holds along the ODE to solver tolerance — for E[x xᵀ] = I
    as in the paper and, by the same derivation (Ẇ = E Aᵀ, Ȧ = BE with E = Σ_tx − WAΣ_xx), for
    any Σ_xx; biases start (and stay) 0. The sign-flipped quantity BW + WᵀBᵀ + AAᵀ moves O(1),
    so the check has power. (The first-order test is
    tests/unit/test_channel.py::test_lillicrap_invariant_is_conserved_to_first_order_under_linear_fa.)"""
    n_i, n_h, n_o = 4, 5, 3
    rng = np.random.default_rng(5)
    Tm = rng.uniform(-1, 1, (n_o, n_i))
    L = rng.standard_normal((n_i, n_i))
    for sxx in (np.eye(n_i), L @ L.T / n_i + 0.3 * np.eye(n_i)):
        net = Network.build(config((n_i, n_h, n_o), seeds=(0, 1), feedback="uniform"))
        net.layers[0].W[...] = rng.uniform(-0.5, 0.5, net.layers[0].W.shape)  # C ≠ 0
        ed = ExpectedDynamics(net, *moment_design(sxx, Tm @ sxx))
        start = lillicrap_invariant(net)
        A0 = net.layers[0].W.copy()
        traj = ed.solve(30.0, rtol=1e-11, atol=1e-13)
        assert traj.success
        drift = np.abs(lillicrap_invariant(net) - start).max()
        assert drift < 1e-7 * np.abs(start).max()
        A = net.layers[0].W
        flipped = (lillicrap_invariant(net) + 2 * A @ np.swapaxes(A, 1, 2)) - (
            start + 2 * A0 @ np.swapaxes(A0, 1, 2)
        )
        assert np.abs(flipped).max() > 0.1 * np.abs(start).max()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_supplementary_proof_3_lemma_5_one_pair_from_zero_gives_fa_parallel_to_pbp(seed):
    """Lemma 5 and Theorem 2 of Proof 3: one training pair (x, ỹ), W = A = 0 at the start ⇒
    h = s_h Bỹ, W = s_w ỹ(Bỹ)ᵀ, and Δh_FA = B e is a positive multiple of Δh_PBP = W⁺e at
    every step: the angle is 0 to rounding. Five random B per seed (the ensemble). A random
    non-zero start breaks it (the angle is then degrees, not ulps)."""
    n_i, n_h, n_o = 6, 5, 3
    rng = np.random.default_rng(100 + seed)
    x = rng.standard_normal((1, n_i))
    x /= np.linalg.norm(x)  # xᵀx = 1: Lillicrap's η_A = η_W / xᵀx
    y = rng.standard_normal((1, n_o))
    seeds = tuple(range(5 * seed, 5 * seed + 5))
    pbp = Channel.pseudobackprop(2)

    def angles(net, steps=40, eta=0.05):
        out = []
        for k in range(steps):
            outs = net.forward(x)
            if k > 1:  # W = 0 until h ≠ 0 has been seen: W⁺e = 0, the angle undefined
                fa = net.deltas(outs, y)[0][:, 0]
                gn = net.deltas(outs, y, channel=pbp)[0][:, 0]
                out.append([angle_rad(a, b) for a, b in zip(fa, gn, strict=True)])
            net.step(x, y, eta)
        return np.array(out), outs

    net = fa_network((n_i, n_h, n_o), seeds)
    got, outs = angles(net)
    assert got.max() < 1e-10  # radians; rounding of float64 is ~1e-16 per operation
    B = np.swapaxes(net.channel.feedback[(2, 1)].C, 1, 2)  # (E, n_h, n_o)
    By = B @ y[0]  # (E, n_h)
    h = outs[1][:, 0]
    for m in range(len(seeds)):
        assert angle_rad(h[m], By[m]) < 1e-10  # eq. 70
        W = net.layers[1].W[m]
        rank1 = np.outer(y[0], By[m])
        assert angle_rad(W.ravel(), rank1.ravel()) < 1e-10  # eq. 71, s_w > 0
    rough = Network.build(
        config((n_i, n_h, n_o), seeds=seeds, feedback="uniform", feedback_scale=0.5)
    )
    for layer in rough.layers:
        layer.W[...] = np.random.default_rng(seed).uniform(-0.5, 0.5, layer.W.shape)
    assert angles(rough)[0][:5].max() > np.radians(1.0)
