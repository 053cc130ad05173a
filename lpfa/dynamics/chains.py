"""Closed forms of Baldi, Sadowski & Lu (2018) §7: learning dynamics of small networks under RBP.

Every chain is linear unless stated, learns with the squared loss, and runs under the paper's
scaling η = dt, so each function is the right-hand side, an invariant or a limit of the ODE
dθ/dt = E[Δθ]/η. α = E[IT] and β = E[I²] are the data's moments (Σ_TI, Σ_II for vector
layers). Weights are named as in the paper: a's (or A's) the forward weights bottom first,
c's (or C) the fixed feedback weights of the learning channel; c = the forward weight above
gives backprop.

Sections covered: §7.2 A[1,1,1] (Theorem 2, ``a111_*``), §7.3-7.4 A[1,…,1] (Theorems 3-4,
``chain_*``; A[1,1,1,1] is L = 3), §7.5 A[1,N,1] (Theorem 5, ``a1n1_*``), §7.6 A[N,1,N]
(Lemma 1, Theorem 6, ``an1n_*``), §7.8 A[N_0,N_1,N_2] (Theorems 7-8, 10, ``three_layer_*``)
and §7.9 the power-law unit (eqs. 113-118, Theorem 12, ``power_*``). Arrays broadcast over
leading axes (a grid of starting points is one call) unless a docstring says otherwise.

The paper's typesetting has slips, corrected here (each form is derived from the learning
rule and checked against lpfa's simulator in tests/unit/test_dynamics_chains.py): eq. 27 reads
α/3 for α/β; "we can assume c₁ = 0" means c₁ ≠ 0 (§7.2-7.3); eq. 35's last line has β for α;
eq. 45's product starts at k = 1; eq. 62 has c_i a_i for C_i a_i (C_i the constant of
eq. 59); Theorem 6 calls the cubic's root β (here h, β is E[I²]) and its limits read
P → CᵀC/‖C‖²; eq. 110's third line has + for the − of V in eq. 109; eq. 113's moments are
α = E[T I^μ], β = E[I^{2μ}], γ = E[TI], δ = E[I^{μ+1}].
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "a1n1_constants",
    "a1n1_fixed_point",
    "a1n1_leading_coefficient",
    "a1n1_polynomial",
    "a1n1_rhs",
    "a111_fixed_point",
    "a111_parabola_constant",
    "a111_rhs",
    "a111_unstable",
    "an1n_fixed_point",
    "an1n_lemma1_constant",
    "chain_constants",
    "chain_fixed_point",
    "chain_gd_constants",
    "chain_leading_coefficient",
    "chain_polynomial",
    "chain_rhs",
    "flow_root",
    "power_coupling_constant",
    "power_fixed_point",
    "power_moments",
    "power_rhs",
    "three_layer_invariant",
    "three_layer_limit",
    "three_layer_lyapunov",
]


def flow_root(coefficients, x0) -> float:
    """The limit of dx/dt = Q(x) from x0, Q a real polynomial of odd degree, leading term < 0.

    ``coefficients`` are Q's, highest power first (as :func:`numpy.roots`). Theorem 1 of the
    paper: x moves monotonically, up where Q(x0) > 0 to the smallest real root above x0, down
    where Q(x0) < 0 to the largest real root below it, and stays on a root.
    """
    q = np.trim_zeros(np.asarray(coefficients, dtype=float), "f")
    if q.size < 2 or q.size % 2 or q[0] >= 0:
        raise ValueError(f"coefficients={q.tolist()}: need odd degree and a negative leading term")
    roots = np.roots(q)
    scale = max(1.0, float(np.abs(roots).max()))
    real = np.sort(roots[np.abs(roots.imag) <= 1e-7 * scale].real)
    x0 = float(x0)
    v = np.polyval(q, x0)
    if v == 0.0:
        return x0
    ahead = real[real >= x0] if v > 0 else real[real <= x0][::-1]
    # a root within round-off of x0 but on the wrong side still is the one reached
    return float(ahead[0]) if ahead.size else float(real[np.argmin(np.abs(real - x0))])


def a111_rhs(a1, a2, *, c1, alpha=1.0, beta=1.0):
    """(da₁/dt, da₂/dt) of A[1,1,1] under RBP, eq. 23 (c₁ = a₂ gives backprop)."""
    a1, a2 = np.asarray(a1, dtype=float), np.asarray(a2, dtype=float)
    r = alpha - beta * a1 * a2
    return c1 * r, a1 * r


def a111_parabola_constant(a1, a2, *, c1):
    """C = a₂ − a₁²/(2c₁), conserved along every trajectory (eq. 29-30): da₂/da₁ = a₁/c₁."""
    return np.asarray(a2, dtype=float) - np.asarray(a1, dtype=float) ** 2 / (2.0 * c1)


def a111_fixed_point(a1, a2, *, c1, alpha=1.0, beta=1.0):
    """Where the trajectory from (a₁, a₂) ends: a root of the cubic of eq. 31 (Theorem 2).

    On the conserved parabola a₂ = a₁²/(2c₁) + C, da₁/dt = Q(a₁) = c₁α − c₁βC·a₁ − (β/2)a₁³
    (eq. 31; its typeset coefficients are garbled). Q has odd degree and a negative leading
    coefficient, so by Theorem 1 a₁ moves monotonically to the nearest real root in the
    direction of Q(a₁(0)) (see :func:`flow_root`). Returns (a₁*, a₂*), a₂* on the same parabola.
    """
    a1, a2 = np.broadcast_arrays(np.asarray(a1, dtype=float), np.asarray(a2, dtype=float))
    C = a111_parabola_constant(a1, a2, c1=c1)
    out = np.empty(a1.shape)
    for idx in np.ndindex(a1.shape):
        q = [-beta / 2.0, 0.0, -c1 * beta * C[idx], c1 * alpha]
        out[idx] = flow_root(q, a1[idx])
    return out, out**2 / (2.0 * c1) + C


def a111_unstable(a1, a2, *, c1):
    """True where a fixed point (a₁a₂ = α/β) is unstable: c₁a₂ + a₁² < 0 (eq. 33).

    Linearised, w = a₂u + a₁v obeys dw/dt = −β(c₁a₂ + a₁²)w: it grows where the bracket is
    negative, the part of the hyperbola inside the parabola a₂ = −a₁²/c₁ (eq. 28).
    """
    return c1 * np.asarray(a2, dtype=float) + np.asarray(a1, dtype=float) ** 2 < 0


# --- §7.3-7.4: the linear chain A[1, …, 1] (A[1,1,1,1] is L = 3) --------------------------------


def _feedback_with_top(c, L):
    """c₁ … c_{L−1}, then c_L = 1 (the top layer follows its gradient, Fact 1)."""
    c = np.asarray(c, dtype=float)
    if c.shape[-1] != L - 1:
        raise ValueError(f"c has {c.shape[-1]} weights: a chain of L={L} needs L-1={L - 1}")
    return np.concatenate([c, np.ones((*c.shape[:-1], 1))], axis=-1)


def chain_rhs(a, *, c, alpha=1.0, beta=1.0):
    """da/dt of A[1,…,1] under RBP, eq. 44-45: da_i/dt = c_i a₁⋯a_{i−1} (α − βP), c_L = 1.

    ``a`` (…, L) forward weights bottom first, ``c`` (…, L−1) feedback weights (c_i carries the
    error to layer i); P = a₁⋯a_L. Backprop is c_i = a_{i+1}⋯a_L (eq. 52).
    """
    a = np.asarray(a, dtype=float)
    cc = _feedback_with_top(c, a.shape[-1])
    below = np.cumprod(np.concatenate([np.ones((*a.shape[:-1], 1)), a[..., :-1]], axis=-1), -1)
    r = alpha - beta * np.prod(a, axis=-1, keepdims=True)
    return cc * below * r


def chain_constants(a, *, c):
    """C_i = a_{i+1} − c_{i+1}/(2c_i)·a_i², conserved under RBP (eq. 47-48; c_L = 1), (…, L−1)."""
    a = np.asarray(a, dtype=float)
    cc = _feedback_with_top(c, a.shape[-1])
    return a[..., 1:] - cc[..., 1:] / (2.0 * cc[..., :-1]) * a[..., :-1] ** 2


def chain_gd_constants(a):
    """a²_{i+1} − a²_i, conserved under gradient descent (eq. 53-54), (…, L−1)."""
    a = np.asarray(a, dtype=float)
    return a[..., 1:] ** 2 - a[..., :-1] ** 2


def _chain_weights_of_a1(c, constants):
    """Each a_i as a polynomial in a₁ (eq. 49), numpy.polynomial order (lowest power first)."""
    from numpy.polynomial import polynomial as npp

    cc = _feedback_with_top(c, len(constants) + 1)
    polys = [np.array([0.0, 1.0])]
    for i, C in enumerate(constants):
        sq = npp.polymul(polys[-1], polys[-1]) * (cc[i + 1] / (2.0 * cc[i]))
        polys.append(npp.polyadd(sq, [C]))
    return polys


def chain_polynomial(*, c, constants, alpha=1.0, beta=1.0):
    """Q with da₁/dt = Q(a₁) on a trajectory with invariants ``constants`` (eq. 41-42, 49-51).

    One system: ``c`` (L−1,), ``constants`` (L−1,) from :func:`chain_constants`. Returns Q's
    coefficients highest power first, degree 2^L − 1.
    """
    from numpy.polynomial import polynomial as npp

    c = np.asarray(c, dtype=float)
    prod = np.array([1.0])
    for p in _chain_weights_of_a1(c, np.asarray(constants, dtype=float)):
        prod = npp.polymul(prod, p)
    q = -beta * c[0] * prod
    q[0] += c[0] * alpha
    return q[::-1]


def chain_leading_coefficient(*, c, beta=1.0):
    """Q's leading coefficient −βc₁∏k_i, k₁ = 1, k_{i+1} = c_{i+1}/(2c_i)·k_i² (eq. 50).

    Negative for every non-zero c (so Theorem 1 applies); for A[1,1,1,1], −βc₂²/(16c₁²)
    (the paper prints it without its sign). ``c`` (…, L−1).
    """
    c = np.asarray(c, dtype=float)
    cc = _feedback_with_top(c, c.shape[-1] + 1)
    k = np.ones(c.shape[:-1])
    total = np.ones(c.shape[:-1])
    for i in range(c.shape[-1]):
        k = cc[..., i + 1] / (2.0 * cc[..., i]) * k**2
        total = total * k
    return -beta * c[..., 0] * total


def chain_fixed_point(a, *, c, alpha=1.0, beta=1.0):
    """Where the RBP flow of A[1,…,1] from ``a`` (…, L) ends (Theorems 3-4), same shape.

    a₁* is the root of Q (:func:`chain_polynomial`) that the flow reaches (:func:`flow_root`);
    the other weights follow from the invariants of eq. 48.
    """
    a = np.asarray(a, dtype=float)
    c = np.broadcast_to(np.asarray(c, dtype=float), (*a.shape[:-1], a.shape[-1] - 1))
    K = chain_constants(a, c=c)
    out = np.empty(a.shape)
    for idx in np.ndindex(a.shape[:-1]):
        q = chain_polynomial(c=c[idx], constants=K[idx], alpha=alpha, beta=beta)
        a1 = flow_root(q, a[idx][0])
        out[idx] = [
            np.polynomial.polynomial.polyval(a1, p) for p in _chain_weights_of_a1(c[idx], K[idx])
        ]
    return out


# --- §7.5: A[1, N, 1] ---------------------------------------------------------------------------


def a1n1_rhs(a, b, *, c, alpha=1.0, beta=1.0):
    """(da/dt, db/dt) of A[1,N,1] under RBP, eq. 57: da_i = c_i(α − βP), db_i = a_i(α − βP).

    ``a``, ``b``, ``c`` (…, N): lower, upper and feedback weights; P = Σ a_i b_i.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    r = alpha - beta * np.sum(a * b, axis=-1, keepdims=True)
    return np.asarray(c, dtype=float) * r, a * r


def a1n1_constants(a, b, *, c):
    """(C, K), conserved: C_i = b_i − a_i²/(2c_i) (eq. 59), K_i = a_i − (c_i/c₁)a₁ (eq. 60-61)."""
    a, b, c = (np.asarray(v, dtype=float) for v in (a, b, c))
    return b - a**2 / (2.0 * c), a - c / c[..., :1] * a[..., :1]


def a1n1_leading_coefficient(*, c, beta=1.0):
    """Leading coefficient of the cubic da₁/dt = Q(a₁): −β/(2c₁²)·Σ c_i² (eq. 63)."""
    c = np.asarray(c, dtype=float)
    return -beta / (2.0 * c[..., 0] ** 2) * np.sum(c**2, axis=-1)


def a1n1_polynomial(*, c, C, K, alpha=1.0, beta=1.0):
    """Q(a₁) = c₁(α − βΣ a_i b_i), a_i = (c_i/c₁)a₁ + K_i, b_i = a_i²/(2c_i) + C_i (eq. 61-62).

    One system (``c``, ``C``, ``K`` of shape (N,)); coefficients highest power first, degree 3.
    """
    from numpy.polynomial import polynomial as npp

    c, C, K = (np.asarray(v, dtype=float) for v in (c, C, K))
    P = np.zeros(1)
    for ci, Ci, Ki in zip(c, C, K, strict=True):
        ai = np.array([Ki, ci / c[0]])
        bi = npp.polyadd(npp.polymul(ai, ai) / (2.0 * ci), [Ci])
        P = npp.polyadd(P, npp.polymul(ai, bi))
    q = -beta * c[0] * P
    q[0] += c[0] * alpha
    return q[::-1]


def a1n1_fixed_point(a, b, *, c, alpha=1.0, beta=1.0):
    """(a*, b*) where the RBP flow of A[1,N,1] from (a, b) ends (Theorem 5), shapes (…, N)."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    c = np.broadcast_to(np.asarray(c, dtype=float), a.shape)
    C, K = a1n1_constants(a, b, c=c)
    a_end = np.empty(a.shape)
    for idx in np.ndindex(a.shape[:-1]):
        q = a1n1_polynomial(c=c[idx], C=C[idx], K=K[idx], alpha=alpha, beta=beta)
        a_end[idx] = c[idx] / c[idx][0] * flow_root(q, a[idx][0]) + K[idx]
    return a_end, a_end**2 / (2.0 * c) + C


# --- §7.6: A[N, 1, N] ---------------------------------------------------------------------------


def an1n_lemma1_constant(A, B, *, C):
    """K = C·B − ½‖A‖², conserved along the RBP flow of A[N,1,N] (Lemma 1, eq. 66-67).

    ``A`` (…, N) the lower layer (1 × N), ``B`` (…, N) the upper (N × 1), ``C`` (…, N) the
    feedback row (1 × N) that carries the N output errors to the hidden unit.
    """
    A, B, C = (np.asarray(v, dtype=float) for v in (A, B, C))
    return np.sum(C * B, axis=-1) - 0.5 * np.sum(A**2, axis=-1)


def an1n_fixed_point(A, B, *, C):
    """(A*, B*, P*) of the autoencoder Σ_TI = Σ_II = I (Theorem 6, eq. 68-79).

    A* = hC with h the positive root of ½‖C‖²h³ + Kh − 1 = 0 (eq. 77; K of Lemma 1, one positive
    root for every K since the cubic is −1 at 0 and convex on h > 0), B* = Cᵀ/(h‖C‖²) and
    P* = B*A* = CᵀC/‖C‖², the projection onto C. Shapes (…, N), (…, N), (…, N, N).
    """
    C = np.asarray(C, dtype=float)
    K = np.broadcast_to(
        an1n_lemma1_constant(A, B, C=C),
        np.broadcast_shapes(np.shape(A)[:-1], np.shape(B)[:-1], C.shape[:-1]),
    )
    C = np.broadcast_to(C, K.shape + C.shape[-1:])
    n2 = np.sum(C**2, axis=-1)
    h = np.empty(K.shape)
    for idx in np.ndindex(K.shape):
        roots = np.roots([0.5 * n2[idx], 0.0, K[idx], -1.0])
        real = roots[np.abs(roots.imag) <= 1e-9 * max(1.0, np.abs(roots).max())].real
        h[idx] = real[real > 0].max()
    A_end = h[..., None] * C
    B_end = C / (h * n2)[..., None]
    return A_end, B_end, C[..., :, None] * C[..., None, :] / n2[..., None, None]


# --- §7.8: the general three-layer case A[N0, N1, N2] -------------------------------------------


def three_layer_invariant(A1, A2, *, C1):
    """C₀ = C₁A₂ + (C₁A₂)ᵀ − A₁A₁ᵀ (N₁ × N₁), conserved under RBP (Theorem 7, eq. 89-92).

    ``A1`` (…, N₁, N₀), ``A2`` (…, N₂, N₁), ``C1`` (…, N₁, N₂) the channel (backprop: C₁ = A₂ᵀ).
    """
    M = np.asarray(C1, dtype=float) @ np.asarray(A2, dtype=float)
    A1 = np.asarray(A1, dtype=float)
    return M + np.swapaxes(M, -1, -2) - A1 @ np.swapaxes(A1, -1, -2)


def three_layer_limit(*, C1, sigma_tx, sigma_xx):
    """The limit of C₁A₂A₁: C₁Σ_TIΣ_II⁻¹ (Theorem 8, eq. 105; typeset with Σ_II for Σ_TI)."""
    sigma_xx = np.atleast_2d(np.asarray(sigma_xx, dtype=float))
    sigma_tx = np.atleast_2d(np.asarray(sigma_tx, dtype=float))
    return np.asarray(C1, dtype=float) @ np.linalg.solve(sigma_xx.T, sigma_tx.T).T


def three_layer_lyapunov(A1, A2, *, C1, sigma_tx, sigma_xx):
    """V = (C₁A₂)(C₁A₂)ᵀ − A₁Mᵀ − MA₁ᵀ, M = C₁Σ_TIΣ_II⁻¹ (proof of Theorem 8, eq. 108-109).

    dV/dt = −UΣ_IIUᵀ ⪯ 0: V is non-increasing in the positive semi-definite order along the RBP
    flow, and bounded below, so it converges (eq. 110's "= L"; the paper prints + for −).
    """
    C1, A1, A2 = (np.asarray(v, dtype=float) for v in (C1, A1, A2))
    G = C1 @ A2
    M = three_layer_limit(C1=C1, sigma_tx=sigma_tx, sigma_xx=sigma_xx)
    return G @ np.swapaxes(G, -1, -2) - A1 @ np.swapaxes(M, -1, -2) - M @ np.swapaxes(A1, -1, -2)


# --- §7.9: a power-law hidden unit, O = a₂ f(a₁I), f(S) = sign(S)|S|^μ --------------------------


def _power(x, mu):
    x = np.asarray(x, dtype=float)
    return np.sign(x) * np.abs(x) ** mu


def power_moments(x, t, *, mu):
    """(α, β, γ, δ) = (E[T f(I)], E[f(I)²], E[TI], E[I f(I)]) over samples I = ``x``, T = ``t``.

    f(I) = sign(I)|I|^μ, so f(I)² = |I|^{2μ} and I f(I) = |I|^{μ+1}; for I > 0 these are the
    paper's E[TI^μ], E[I^{2μ}], E[TI], E[I^{μ+1}].
    """
    x, t = np.asarray(x, dtype=float), np.asarray(t, dtype=float)
    f = _power(x, mu)
    return (
        float(np.mean(t * f)),
        float(np.mean(f * f)),
        float(np.mean(t * x)),
        float(np.mean(x * f)),
    )


def power_rhs(a1, a2, *, c1, mu, alpha, beta, gamma=None, delta=None, fprime=True):
    """(da₁/dt, da₂/dt) of the power-unit A[1,1,1] under RBP, for a₁ > 0.

    With f′ (eq. 114): da₂ = a₁^μ(α − βa₂a₁^μ), da₁ = c₁μa₁^{μ−1}(α − βa₂a₁^μ). Without f′
    (``fprime=False``, eq. 113): da₁ = c₁(γ − δa₂a₁^μ); then a fixed point needs
    a₂a₁^μ = α/β = γ/δ at once, which in general fails — there are none.
    """
    a1, a2 = np.asarray(a1, dtype=float), np.asarray(a2, dtype=float)
    p = a1**mu
    da2 = p * (alpha - beta * a2 * p)
    if fprime:
        return c1 * mu * a1 ** (mu - 1.0) * (alpha - beta * a2 * p), da2
    if gamma is None or delta is None:
        raise ValueError("fprime=False needs gamma = E[TI] and delta = E[I f(I)] (eq. 113)")
    return c1 * (gamma - delta * a2 * p), da2


def power_coupling_constant(a1, a2, *, c1, mu):
    """K = a₂ − a₁²/(2c₁μ), conserved along the flow with f′ (eq. 115)."""
    return np.asarray(a2, dtype=float) - np.asarray(a1, dtype=float) ** 2 / (2.0 * c1 * mu)


def power_fixed_point(a1, a2, *, c1, mu, alpha, beta):
    """(a₁*, a₂*) reached from a₁ > 0 with f′ (Theorem 12): the root of eq. 117 the flow meets.

    On the curve of eq. 115, da₁/dt = c₁μa₁^{μ−1}g(a₁), g(a) = α − β(a²/(2c₁μ) + K)a^μ
    (eq. 118). For α, β, c₁ > 0, g(0⁺) = α > 0 and g → −∞, so a₁ moves monotonically (in the
    direction of g(a₁(0))) to the nearest positive root of g; found by bracketing on a
    geometric grid and :func:`scipy.optimize.brentq`.
    """
    from scipy.optimize import brentq

    a1, a2 = np.broadcast_arrays(np.asarray(a1, dtype=float), np.asarray(a2, dtype=float))
    if np.any(a1 <= 0) or c1 <= 0 or alpha <= 0 or beta <= 0:
        raise ValueError("Theorem 12 needs a1 > 0, c1 > 0, alpha > 0 and beta > 0")
    K = power_coupling_constant(a1, a2, c1=c1, mu=mu)
    out = np.empty(a1.shape)
    for idx in np.ndindex(a1.shape):

        def g(a, k=K[idx]):
            return alpha - beta * (a * a / (2.0 * c1 * mu) + k) * a**mu

        x = a1[idx]
        if g(x) == 0.0:
            out[idx] = x
            continue
        step = 1.01 if g(x) > 0 else 1.0 / 1.01
        lo = x
        while True:
            hi = lo * step
            if np.sign(g(hi)) != np.sign(g(x)):
                break
            lo = hi
        out[idx] = brentq(g, min(lo, hi), max(lo, hi), xtol=1e-14, rtol=1e-13)
    return out, out**2 / (2.0 * c1 * mu) + K
