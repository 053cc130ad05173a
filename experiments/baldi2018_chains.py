"""Baldi, Sadowski & Lu (2018) §7: the closed forms of the small linear (and one power-law)
networks under RBP, against lpfa's expected dynamics (ODE) and simulated minibatch training.

Chains: A[1,1,1] (Theorem 2), A[1,1,1,1] (Theorem 3), A[1,N,1] (Theorem 5), A[N,1,N] (Lemma 1,
Theorem 6), A[3,4,2] (Theorems 7-8) and the power-law A[1,1,1] (§7.9, Theorem 12). For each,
:class:`lpfa.dynamics.ExpectedDynamics` on lpfa's own network gives the ODE (solve_ivp,
rtol 1e-10) and ``Network.step`` on minibatches (η = 10⁻², batch 50, one data stream per
ensemble member) the simulated run; the closed forms are :mod:`lpfa.dynamics.chains`. One
figure per family and ``table.md``: paper's statement | what lpfa measured | holds.

Bars: ODE invariants and end points 1e-5 (solver tolerance accumulated over t ≤ 200); SGD end
points 0.02. The independent streams agree closely (their sd is reported); the SGD mean sits
off the closed form by a systematic O(η) shift of the conserved quantities (full-batch Euler
steps alone shift A[1,1,1]'s end by 0.005 at η = 10⁻²), which the bar covers.

Runtime: ~50 s wall on one busy core (``--quick``, 2 streams instead of 4: ~30 s).

    python experiments/baldi2018_chains.py [--quick] [--out DIR] [--plot-only]
"""

import itertools
import json
import sys
from pathlib import Path

import numpy as np

from lpfa import config as C
from lpfa.dynamics import ExpectedDynamics, linear_config, moment_design
from lpfa.dynamics import chains as ch
from lpfa.experiment import out_folder, parser, script
from lpfa.network import Network
from lpfa.runfiles import atomic_write_text, check_out, dump_json

ALPHA, BETA = 1.0, 2.0
ODE_BAR, SGD_BAR = 1e-5, 0.02


def network(sizes, E, *, rule="srbp", hidden="linear", fprime=True, mu=1.0):
    cfg = linear_config(sizes, rule, seeds=range(E), hidden=hidden, channel={"fprime": fprime},
                        model={"power_exponent": mu})  # fmt: skip
    return Network.build(cfg)


def sgd(make, reps, draw, steps, *, zero_bias=False, record=20):
    """Minibatch SGD (η = 10⁻²) of ``reps`` independent data streams, each on a fresh network
    ``make()`` (E₀ members, the starts); every member of one network reads the same minibatch
    ``draw(rng) -> (x (B, N_0), t)``. Returns ``record`` snapshots of the weights, each layer
    (E₀·reps, …) with member k·reps + r = start k on stream r."""
    every = max(1, steps // record)
    runs = []
    for r in range(reps):
        net, rng, snaps = make(), np.random.default_rng(7 + r), []
        for k in range(steps):
            x, t = draw(rng)
            net.step(x, t, 1e-2)
            if zero_bias:
                for layer in net.layers:
                    layer.b[...] = 0.0
            if (k + 1) % every == 0:
                snaps.append([layer.W.copy() for layer in net.layers])
        runs.append(snaps)
    return [
        [
            np.stack([run[n][h] for run in runs], 1).reshape(-1, *runs[0][n][h].shape[1:])
            for h in range(len(runs[0][n]))
        ]
        for n in range(len(runs[0]))
    ]


def gauss(beta, teacher):
    n0 = np.shape(teacher)[-1] if np.ndim(teacher) else 1

    def draw(rng):
        x = rng.standard_normal((50, n0)) * np.sqrt(beta)
        return x, (x * teacher if np.ndim(teacher) == 0 else x @ np.asarray(teacher).T)

    return draw


def row(statement, quantity, value, ok):
    return (statement, quantity, f"{value:.1e}" if isinstance(value, float) else str(value), ok)


# --- the families -------------------------------------------------------------------------------


def family_a111(quick):
    c1 = 0.7
    starts = np.array([[0.1, 0.1], [1.5, 1.0], [0.5, -1.5], [-0.8, -1.2], [2.0, -0.5], [-1.5, 0.4]])
    net = network([1, 1, 1], len(starts))
    net.layers[0].W[:, 0, 0], net.layers[1].W[:, 0, 0] = starts[:, 0], starts[:, 1]
    net.channel.feedback[(2, 1)].C[...] = c1
    ed = ExpectedDynamics(net, *moment_design(BETA, ALPHA))
    tr = ed.solve(60.0, t_eval=np.linspace(0, 60, 601), rtol=1e-10, atol=1e-12)
    a = np.array([[ed.unpack(y)[f"W{i}"][:, 0, 0] for i in (1, 2)] for y in tr.y])  # (K, 2, E)
    reps = 2 if quick else 4

    def make():
        sim = network([1, 1, 1], len(starts))
        sim.layers[0].W[:, 0, 0], sim.layers[1].W[:, 0, 0] = starts[:, 0], starts[:, 1]
        sim.channel.feedback[(2, 1)].C[...] = c1
        return sim

    snaps = sgd(make, reps, gauss(BETA, ALPHA / BETA), 6000)
    s_end = np.stack([snaps[-1][i][:, 0, 0].reshape(-1, reps) for i in (0, 1)])  # (2, E, reps)
    f1, f2 = ch.a111_fixed_point(starts[:, 0], starts[:, 1], c1=c1, alpha=ALPHA, beta=BETA)
    drift = np.abs(
        ch.a111_parabola_constant(a[:, 0], a[:, 1], c1=c1)
        - ch.a111_parabola_constant(*starts.T, c1=c1)
    ).max()
    end = max(np.abs(a[-1, 0] - f1).max(), np.abs(a[-1, 1] - f2).max())
    gap = max(np.abs(s_end[0].mean(-1) - f1).max(), np.abs(s_end[1].mean(-1) - f2).max())
    spread = s_end.std(-1).max()
    rows = [
        row(
            "Thm 2 / eq. 30: a₂ − a₁²/(2c₁) is conserved",
            "max drift along 6 ODE paths",
            drift,
            drift < ODE_BAR,
        ),
        row(
            "Thm 2 / eq. 31: the end point is the root of the cubic",
            "max abs(ODE end − root)",
            end,
            end < ODE_BAR,
        ),
        row(
            "(simulated) SGD at small η ends there too",
            f"max abs(SGD mean end − root), {reps} streams (stream sd {spread:.2g})",
            gap,
            gap < SGD_BAR,
        ),
        row(
            "eq. 33: ends are stable points (c₁a₂ + a₁² > 0)",
            "ends with c₁a₂ + a₁² < 0",
            int(ch.a111_unstable(f1, f2, c1=c1).sum()),
            not ch.a111_unstable(f1, f2, c1=c1).any(),
        ),
    ]

    sim_path = np.array([[s[i][::reps, 0, 0] for i in (0, 1)] for s in snaps])
    return rows, {"a": a, "sim": sim_path, "starts": starts, "f1": f1, "f2": f2, "c1": c1}


def plot_a111(ax, d):
    a, sim, starts, f1, f2, c1 = (d[k] for k in ("a", "sim", "starts", "f1", "f2", "c1"))
    x = np.linspace(-3, 3, 400)
    for k in range(len(starts)):
        Ck = ch.a111_parabola_constant(*starts[k], c1=c1)
        ax.plot(x, x**2 / (2 * c1) + Ck, color="0.85", lw=0.8)
        ax.plot(a[:, 0, k], a[:, 1, k], color=f"C{k}", lw=1.5)
        ax.plot(sim[:, 0, k], sim[:, 1, k], ".", color=f"C{k}", ms=3)
    for sgn in (1, -1):
        h = sgn * np.geomspace(0.1, 3, 200)
        ax.plot(h, ALPHA / BETA / h, "k--", lw=0.8)
    ax.plot(f1, f2, "ks", mfc="none", ms=8)
    ax.set(
        xlim=(-3, 3),
        ylim=(-3, 3),
        xlabel="a₁",
        ylabel="a₂",
        title="A[1,1,1] RBP: ODE (lines), SGD (dots),\nparabolas eq. 30 (grey), "
        "roots of eq. 31 (squares)",
    )


def family_chain(quick):
    c = np.array([0.7, -0.5])
    starts = np.array([[0.3, 0.5, -0.4], [-0.6, 0.2, 0.8], [0.1, -0.3, 0.2], [1.0, 1.0, 1.0]])
    E = len(starts)

    def build(s):
        net = network([1, 1, 1, 1], len(s))
        for i in range(3):
            net.layers[i].W[:, 0, 0] = s[:, i]
        for i in range(2):
            net.channel.feedback[(3, i + 1)].C[...] = c[i]
        return net

    ed = ExpectedDynamics(build(starts), *moment_design(BETA, ALPHA))
    tr = ed.solve(60.0, t_eval=np.linspace(0, 60, 301), rtol=1e-10, atol=1e-12)
    a = np.array(
        [np.stack([ed.unpack(y)[f"W{i}"][:, 0, 0] for i in (1, 2, 3)], 1) for y in tr.y]
    )  # (K, E, 3)
    K0 = ch.chain_constants(starts, c=c)
    drift = np.abs(ch.chain_constants(a, c=c) - K0).max()
    want = ch.chain_fixed_point(starts, c=c, alpha=ALPHA, beta=BETA)
    end = np.abs(a[-1] - want).max()
    lead = ch.chain_leading_coefficient(c=c, beta=BETA)
    q = ch.chain_polynomial(c=c, constants=K0[0], alpha=ALPHA, beta=BETA)
    reps = 2 if quick else 4
    snaps = sgd(lambda: build(starts), reps, gauss(BETA, ALPHA / BETA), 6000)
    s_end = np.stack([snaps[-1][i][:, 0, 0] for i in range(3)], 1).reshape(E, reps, 3)
    gap = np.abs(s_end.mean(1) - want).max()
    rows = [
        row(
            "Thm 3 / eq. 39-40: a₂ = c₂a₁²/(2c₁) + C₁, a₃ = a₂²/(2c₂) + C₂ along the flow",
            "max drift of C₁, C₂ along 4 ODE paths",
            drift,
            drift < ODE_BAR,
        ),
        row(
            "Thm 3: da₁/dt = Q(a₁), Q of degree 7, leading term −βc₂²/(16c₁²) < 0",
            f"degree {len(q) - 1}; leading coeff. {q[0]:.6g} vs eq. {lead:.6g}",
            f"{abs(q[0] - lead):.1e}",
            len(q) == 8 and abs(q[0] - lead) < 1e-12 and lead < 0,
        ),
        row(
            "Thm 3: the fixed point is the root of Q the flow reaches",
            "max abs(ODE end − root)",
            end,
            end < ODE_BAR,
        ),
        row(
            "(simulated) SGD ends there too",
            f"max abs(SGD mean end − root), {reps} streams (stream sd {s_end.std(1).max():.2g})",
            gap,
            gap < SGD_BAR,
        ),
    ]

    return rows, {"a": a, "c": c, "K0": K0, "want": want}


def plot_chain(ax, d):
    a, c, K0, want = (d[k] for k in ("a", "c", "K0", "want"))
    for k in range(len(want)):
        ax.plot(a[:, k, 0], a[:, k, 1], color=f"C{k}", lw=1.5)
        ax.plot(a[:, k, 1], a[:, k, 2], "--", color=f"C{k}", lw=1.5)
        x = np.linspace(-2, 2, 200)
        ax.plot(x, c[1] / (2 * c[0]) * x**2 + K0[k, 0], color="0.85", lw=0.8)
        ax.plot(want[k, 0], want[k, 1], "ks", mfc="none")
        ax.plot(want[k, 1], want[k, 2], "kD", mfc="none")
    ax.set(
        xlim=(-2, 2),
        ylim=(-2, 2),
        xlabel="a₁ (solid) / a₂ (dashed)",
        ylabel="a₂ (solid) / a₃ (dashed)",
        title="A[1,1,1,1] RBP: ODE paths, eq. 39 parabolas (grey),\ndegree-7 roots (markers)",
    )


def family_a1n1(quick):
    c = np.array([0.5, -0.3, 0.8])
    A = np.array([[0.1, 0.2, -0.3], [-0.5, 0.4, 0.1], [0.9, -0.7, 0.3]])
    B = np.array([[0.5, 0.1, 0.2], [0.3, -0.6, 0.2], [-0.4, 0.5, -0.8]])

    def build(a, b):
        net = network([1, 3, 1], len(a), rule="rbp")
        net.layers[0].W[:, :, 0], net.layers[1].W[:, 0, :] = a, b
        net.channel.feedback[(2, 1)].C[:, 0, :] = c
        return net

    ed = ExpectedDynamics(build(A, B), *moment_design(BETA, ALPHA))
    tr = ed.solve(60.0, t_eval=np.linspace(0, 60, 301), rtol=1e-10, atol=1e-12)
    ws = [ed.unpack(y) for y in tr.y]
    a = np.array([w["W1"][:, :, 0] for w in ws])
    b = np.array([w["W2"][:, 0, :] for w in ws])
    Cc, Kc = ch.a1n1_constants(A, B, c=c)
    Ct, Kt = ch.a1n1_constants(a, b, c=c)
    drift = max(np.abs(Ct - Cc).max(), np.abs(Kt - Kc).max())
    fa, fb = ch.a1n1_fixed_point(A, B, c=c, alpha=ALPHA, beta=BETA)
    end = max(np.abs(a[-1] - fa).max(), np.abs(b[-1] - fb).max())
    q = ch.a1n1_polynomial(c=c, C=Cc[0], K=Kc[0], alpha=ALPHA, beta=BETA)
    lead = ch.a1n1_leading_coefficient(c=c, beta=BETA)
    reps = 2 if quick else 4
    snaps = sgd(lambda: build(A, B), reps, gauss(BETA, ALPHA / BETA), 6000)
    sa = snaps[-1][0][:, :, 0].reshape(3, reps, 3)
    gap = np.abs(sa.mean(1) - fa).max()
    P = np.sum(a * b, -1)
    Psim = np.array([np.sum(s[0][:, :, 0] * s[1][:, 0, :], -1) for s in snaps])
    rows = [
        row(
            "Thm 5 / eq. 59-61: b_i = a_i²/(2c_i) + C_i, a_i = (c_i/c₁)a₁ + K_i",
            "max drift of C_i, K_i along 3 ODE paths",
            drift,
            drift < ODE_BAR,
        ),
        row(
            "Thm 5 / eq. 63: cubic with leading term −β/(2c₁²)Σc_i²",
            f"leading coeff. {q[0]:.6g} vs eq. 63 {lead:.6g}",
            f"{abs(q[0] - lead):.1e}",
            len(q) == 4 and abs(q[0] - lead) < 1e-12,
        ),
        row(
            "Thm 5: the flow ends at the cubic's root",
            "max abs(ODE end − root)",
            end,
            end < ODE_BAR,
        ),
        row(
            "(simulated) SGD ends there too",
            f"max abs(SGD mean end a − root), {reps} streams (sd {sa.std(1).max():.2g})",
            gap,
            gap < SGD_BAR,
        ),
    ]

    return rows, {"t": tr.t, "P": P, "Psim": Psim[:, ::reps]}


def plot_a1n1(ax, d):
    t, P, Psim = d["t"], d["P"], d["Psim"]
    t_sim = np.linspace(0, 1, len(Psim) + 1)[1:] * 6000 * 1e-2
    for k in range(P.shape[1]):
        ax.plot(t, P[:, k], color=f"C{k}")
        ax.plot(t_sim, Psim[:, k], ".", color=f"C{k}", ms=3)
    ax.axhline(ALPHA / BETA, color="k", ls="--", lw=0.8)
    ax.set(
        xlabel="t (η × updates)",
        ylabel="P = Σ a_i b_i",
        title="A[1,3,1] RBP: P(t) → α/β; ODE (lines), SGD (dots)",
    )


def family_an1n(quick):
    Cf = np.array([0.5, -1.0, 0.3])
    A0 = np.array([[0.1, 0.2, -0.1], [-0.4, 0.3, 0.5], [0.6, 0.1, 0.2]])
    B0 = np.array([[0.3, 0.1, 0.2], [-0.2, 0.4, 0.1], [0.1, -0.5, 0.3]])

    def build(A, B):
        net = network([3, 1, 3], len(A), rule="rbp")
        net.layers[0].W[:, 0, :], net.layers[1].W[:, :, 0] = A, B
        net.channel.feedback[(2, 1)].C[:, :, 0] = Cf
        return net

    ed = ExpectedDynamics(build(A0, B0), *moment_design(np.eye(3), np.eye(3)))
    tr = ed.solve(200.0, t_eval=np.linspace(0, 200, 401), rtol=1e-10, atol=1e-12)
    ws = [ed.unpack(y) for y in tr.y]
    A = np.array([w["W1"][:, 0, :] for w in ws])
    B = np.array([w["W2"][:, :, 0] for w in ws])
    K = ch.an1n_lemma1_constant(A, B, C=Cf)
    drift = np.abs(K - K[0]).max()
    fA, fB, fP = ch.an1n_fixed_point(A0, B0, C=Cf)
    end = max(
        np.abs(A[-1] - fA).max(),
        np.abs(B[-1] - fB).max(),
        np.abs(B[-1][:, :, None] * A[-1][:, None, :] - fP).max(),
    )
    reps = 2 if quick else 4
    snaps = sgd(lambda: build(A0, B0), reps, gauss(1.0, np.eye(3)), 6000)
    sA = snaps[-1][0][:, 0, :].reshape(3, reps, 3)
    gap = np.abs(sA.mean(1) - fA).max()
    rows = [
        row(
            "Lemma 1: C·B = ½‖A‖² + K along the flow",
            "max drift of K along 3 ODE paths",
            drift,
            drift < ODE_BAR,
        ),
        row(
            "Thm 6: A → hC, B → Cᵀ/(h‖C‖²), P → CᵀC/‖C‖² (Σ = I)",
            "max abs(ODE end − Theorem 6), A, B and P",
            end,
            end < 1e-4,
        ),
        row(
            "(simulated) SGD ends there too",
            f"max abs(SGD mean end A − hC), {reps} streams (sd {sA.std(1).max():.2g})",
            gap,
            gap < SGD_BAR,
        ),
    ]

    return rows, {"t": tr.t, "A": A, "Cf": Cf, "fA": fA}


def plot_an1n(ax, d):
    t, A, Cf, fA = d["t"], d["A"], d["Cf"], d["fA"]
    for k in range(3):
        ax.plot(t, A[:, k, :] @ Cf / np.linalg.norm(Cf) ** 2, color=f"C{k}")
        perp = A[:, k, :] - np.outer(A[:, k, :] @ Cf / (Cf @ Cf), Cf)
        ax.plot(t, np.linalg.norm(perp, axis=1), ":", color=f"C{k}")
    h = fA[:, 0] / Cf[0]
    for k in range(3):
        ax.axhline(h[k], color=f"C{k}", ls="--", lw=0.8)
    ax.set(
        xlabel="t",
        ylabel="A along C / ‖C‖² (solid), ‖A − proj_C A‖ (dotted)",
        title="A[3,1,3] autoencoder, RBP: A → hC (dashed: root of eq. 77)",
    )


def family_three(quick):
    rng = np.random.default_rng(5)
    n0, n1, n2, E = 3, 4, 2, 4
    M = rng.standard_normal((n0, n0))
    sxx, stx = M @ M.T / n0 + 0.3 * np.eye(n0), rng.standard_normal((n2, n0))
    C1 = rng.standard_normal((n1, n2))
    net = network([n0, n1, n2], E, rule="rbp")
    net.channel.feedback[(2, 1)].C[...] = C1.T
    ed = ExpectedDynamics(net, *moment_design(sxx, stx))
    tr = ed.solve(100.0, t_eval=np.linspace(0, 100, 201), rtol=1e-10, atol=1e-12)
    ws = [ed.unpack(y) for y in tr.y]
    C0 = ch.three_layer_invariant(ws[0]["W1"], ws[0]["W2"], C1=C1)
    drift = max(np.abs(ch.three_layer_invariant(w["W1"], w["W2"], C1=C1) - C0).max() for w in ws)
    lim = ch.three_layer_limit(C1=C1, sigma_tx=stx, sigma_xx=sxx)
    err = np.array([np.linalg.norm(C1 @ w["W2"] @ w["W1"] - lim, axis=(1, 2)) for w in ws])
    V = [ch.three_layer_lyapunov(w["W1"], w["W2"], C1=C1, sigma_tx=stx, sigma_xx=sxx) for w in ws]
    rise = max(np.linalg.eigvalsh(b - a).max() for a, b in itertools.pairwise(V))
    n1s = np.array([np.linalg.norm(w["W1"], axis=(1, 2)) for w in ws])
    # A[2,2,2], Σ = C₁ = I (Theorem 10)
    net2 = network([2, 2, 2], 6, rule="rbp")
    net2.channel.feedback[(2, 1)].C[...] = np.eye(2)
    ed2 = ExpectedDynamics(net2, *moment_design(np.eye(2), np.eye(2)))
    tr2 = ed2.solve(400.0, t_eval=[200.0, 400.0], rtol=1e-10, atol=1e-12)
    move = np.abs(tr2.y[1] - tr2.y[0]).max()
    rows = [
        row(
            "Thm 7 / eq. 92: C₁A₂ + (C₁A₂)ᵀ − A₁A₁ᵀ is constant",
            "max drift, 4 ODE paths",
            drift,
            drift < ODE_BAR,
        ),
        row(
            "Thm 7: ‖A₁‖ stays bounded",
            "max ‖A₁(t)‖ / ‖A₁(0)‖",
            f"{(n1s / n1s[0]).max():.2f}",
            bool(np.isfinite(n1s).all()),
        ),
        row(
            "Thm 8: C₁A₂A₁ → C₁Σ_TIΣ_II⁻¹",
            "max ‖C₁A₂A₁ − limit‖ at t = 100",
            float(err[-1].max()),
            err[-1].max() < 1e-4,
        ),
        row(
            "Thm 8 / eq. 108: V is non-increasing (PSD order)",
            "max eigenvalue of V(t+Δ) − V(t)",
            float(rise),
            rise < 1e-8,
        ),
        row(
            "Thm 10: A[2,2,2] (Σ = C₁ = I) converges",
            "max change of θ from t = 200 to 400",
            float(move),
            move < 1e-5,
        ),
    ]

    return rows, {"t": tr.t, "err": err}


def plot_three_layer(ax, d):
    ax.semilogy(d["t"], d["err"], lw=1.2)
    ax.set(
        xlabel="t",
        ylabel="‖C₁A₂A₁ − C₁Σ_TIΣ_II⁻¹‖",
        title="A[3,4,2] RBP (4 starts): Theorem 8's limit",
    )


def family_power(quick):
    c1, grid = 0.8, 0.5 + (np.arange(20) + 0.5) / 20
    X = np.concatenate([grid, -grid])[:, None]
    T = X**3
    starts = np.array([[0.3, 0.2], [1.5, 0.1], [0.5, 1.5]])
    rows, data = [], {}
    for mu in (1 / 3, 3.0):
        al, be, ga, de = ch.power_moments(X[:, 0], T[:, 0], mu=mu)

        def build(s, fprime=True, mu=mu):
            net = network([1, 1, 1], len(s), rule="rbp", hidden="power", fprime=fprime, mu=mu)
            net.layers[0].W[:, 0, 0], net.layers[1].W[:, 0, 0] = s[:, 0], s[:, 1]
            net.channel.feedback[(2, 1)].C[...] = c1
            return net

        ed = ExpectedDynamics(build(starts), X, T)
        tr = ed.solve(40.0, t_eval=np.linspace(0, 40, 201), rtol=1e-10, atol=1e-12)
        a = np.array([[ed.unpack(y)[f"W{i}"][:, 0, 0] for i in (1, 2)] for y in tr.y])
        K = ch.power_coupling_constant(a[:, 0], a[:, 1], c1=c1, mu=mu)
        drift = np.abs(K - K[0]).max()
        f1, f2 = ch.power_fixed_point(starts[:, 0], starts[:, 1], c1=c1, mu=mu, alpha=al, beta=be)
        end = max(np.abs(a[-1, 0] - f1).max(), np.abs(a[-1, 1] - f2).max())
        rows += [
            row(
                f"eq. 115 (μ = {mu:.3g}): a₂ − a₁²/(2c₁μ) is conserved with f′",
                "max drift, 3 ODE paths",
                drift,
                drift < ODE_BAR,
            ),
            row(
                f"Thm 12 (μ = {mu:.3g}): converges to a positive root of eq. 117",
                "max abs(ODE end − root)",
                end,
                end < ODE_BAR,
            ),
        ]
        if mu < 1:
            edn = ExpectedDynamics(build(starts, fprime=False), X, T)
            trn = edn.solve(40.0, t_eval=np.linspace(0, 40, 201), rtol=1e-9, atol=1e-12)
            an = np.array([[edn.unpack(y)[f"W{i}"][:, 0, 0] for i in (1, 2)] for y in trn.y])
            speed = np.abs(edn.unpack(edn.rhs(0.0, trn.y[-1]))["W1"][:, 0, 0]).min()
            rows.append(
                row(
                    "eq. 113: without f′ no fixed point (α/β ≠ γ/δ)",
                    f"α/β − γ/δ = {al / be - ga / de:.3f}; min abs(da₁/dt) at t = 40",
                    float(speed),
                    speed > 1e-3 and abs(al / be - ga / de) > 0.1,
                )
            )
            reps = 2 if quick else 4
            Xf, Tf = X[:, 0], T[:, 0]

            def draw(rng, Xf=Xf, Tf=Tf):
                k = rng.integers(0, len(Xf), size=50)
                return Xf[k][:, None], Tf[k][:, None]

            snaps = sgd(lambda: build(starts), reps, draw, 4000, zero_bias=True)
            s1 = snaps[-1][0][:, 0, 0].reshape(-1, reps)
            gap = np.abs(s1.mean(1) - f1).max()
            rows.append(
                row(
                    "(simulated) SGD with f′ ends at the root (biases held at 0)",
                    f"max abs(SGD mean end a₁ − root), {reps} streams (sd {s1.std(1).max():.2g})",
                    gap,
                    gap < SGD_BAR,
                )
            )

            data = {"a": a, "an": an, "f1": f1, "f2": f2, "ratio": al / be, "mu": mu}
    return rows, data


def plot_power(ax, d):
    a, an, f1, f2, ratio, mu = (d[k] for k in ("a", "an", "f1", "f2", "ratio", "mu"))
    for k in range(a.shape[2]):
        ax.plot(a[:, 0, k], a[:, 1, k], color=f"C{k}", lw=1.5)
        ax.plot(an[:, 0, k], an[:, 1, k], ":", color=f"C{k}", lw=1.5)
    h = np.geomspace(0.2, 3, 200)
    ax.plot(h, ratio / h**mu, "k--", lw=0.8)
    ax.plot(f1, f2, "ks", mfc="none")
    ax.set(
        xlim=(0, 3),
        ylim=(-1, 3),
        xlabel="a₁",
        ylabel="a₂",
        title="power unit μ = 1/3: with f′ (solid) to eq. 117's roots,\n"
        "without f′ (dotted) no rest; dashed: a₂a₁^μ = α/β",
    )


FAMILIES = {  # name: (measure, plot)
    "a111": (family_a111, plot_a111),
    "chain": (family_chain, plot_chain),
    "a1n1": (family_a1n1, plot_a1n1),
    "an1n": (family_an1n, plot_an1n),
    "three_layer": (family_three, plot_three_layer),
    "power": (family_power, plot_power),
}


def table(rows) -> str:
    lines = ["| paper states | quantity | lpfa measured | holds |", "|---|---|---|---|"]
    lines += [f"| {a} | {q} | {m} | {'yes' if ok else '**no**'} |" for a, q, m, ok in rows]
    return "\n".join(lines) + "\n"


def figure(plot, d, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    plot(ax, d)
    ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


@script
def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, "results/baldi2018_chains").parse_args(argv)
    out = check_out(out_folder(args))
    if args.plot_only and not (out / "chains.npz").is_file():
        raise C.ConfigError("--out", str(out), "holds no chains.npz; run without --plot-only")
    if args.plot_only:
        with np.load(out / "chains.npz") as z:
            saved = dict(z)
        data = {
            n: {k.split("/", 1)[1]: v for k, v in saved.items() if k.startswith(n + "/")}
            for n in FAMILIES
        }
        tables = json.loads((out / "results.json").read_text())
    else:
        data, tables = {}, {}
        for name, (measure, _) in FAMILIES.items():
            rows, data[name] = measure(args.quick)
            tables[name] = [[a, q, m, bool(ok)] for a, q, m, ok in rows]
        np.savez_compressed(
            out / "chains.npz", **{f"{n}/{k}": v for n, d in data.items() for k, v in d.items()}
        )
        atomic_write_text(out / "results.json", dump_json(tables))
        atomic_write_text(
            out / "config.json",
            dump_json(
                {"alpha": ALPHA, "beta": BETA, "quick": args.quick, "eta": 1e-2, "batch": 50}
            ),
        )
        lines = ["family,statement,quantity,measured,holds"]
        lines += [",".join(f'"{v}"' for v in [n, *r]) for n, rs in tables.items() for r in rs]
        atomic_write_text(out / "results.csv", "\n".join(lines) + "\n")
    for name, (_, plot) in FAMILIES.items():
        figure(plot, data[name], out / f"{name}.png")
    text = "# Baldi et al. 2018 §7: closed forms vs lpfa's ODE and SGD\n\n" + table(
        [(f"{n}: {a}", q, m, ok) for n, rs in tables.items() for a, q, m, ok in rs]
    )
    atomic_write_text(out / "table.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
