"""Closed forms of Baldi, Sadowski & Lu (2018) §7 for linear chains, as vectorised functions.

So far the simplest chain, A[1,1,1] (§7.2, Theorem 2): input I, hidden a₁I, output O = a₂a₁I,
one feedback weight c₁, α = E[IT], β = E[I²]. Under RBP (η = dt), eq. 23:

    da₁/dt = c₁ (α − β a₁a₂),    da₂/dt = a₁ (α − β a₁a₂).

Every function broadcasts over its array arguments, so a grid of starting points is one call.
The tests (tests/unit/test_dynamics_chains.py) check each against the ODE of
:class:`lpfa.dynamics.ExpectedDynamics` on lpfa's own 1-1-1 network and against simulated
training. (The paper's text has typesetting slips: eq. 27 reads α/3 for α/β, the "General
Case" reads c₁ = 0 for c₁ ≠ 0, and eq. 31's coefficient is garbled; the forms here are derived
from eq. 23 and checked numerically.)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "a111_fixed_point",
    "a111_parabola_constant",
    "a111_rhs",
    "a111_unstable",
]


def a111_rhs(a1, a2, *, c1, alpha=1.0, beta=1.0):
    """(da₁/dt, da₂/dt) of A[1,1,1] under RBP, eq. 23 (c₁ = a₂ gives backprop)."""
    a1, a2 = np.asarray(a1, dtype=float), np.asarray(a2, dtype=float)
    r = alpha - beta * a1 * a2
    return c1 * r, a1 * r


def a111_parabola_constant(a1, a2, *, c1):
    """C = a₂ − a₁²/(2c₁), conserved along every trajectory (eq. 29-30): da₂/da₁ = a₁/c₁."""
    return np.asarray(a2, dtype=float) - np.asarray(a1, dtype=float) ** 2 / (2.0 * c1)


def a111_fixed_point(a1, a2, *, c1, alpha=1.0, beta=1.0):
    """Where the trajectory from (a₁, a₂) ends: a root of the depressed cubic of eq. 31.

    On the conserved parabola a₂ = a₁²/(2c₁) + C, da₁/dt = −(β/2)·q(a₁) with
    q(a) = a³ + 2c₁C·a − 2c₁α/β. −q has odd degree and a negative leading coefficient, so by
    Theorem 1 a₁ moves monotonically to the nearest real root of q in the direction of
    −q(a₁(0)) (and stays put on a root). Returns (a₁*, a₂*) with a₂* on the same parabola.
    """
    a1, a2 = np.broadcast_arrays(np.asarray(a1, dtype=float), np.asarray(a2, dtype=float))
    C = a111_parabola_constant(a1, a2, c1=c1)
    out = np.empty(a1.shape)
    for idx in np.ndindex(a1.shape):
        roots = np.roots([1.0, 0.0, 2.0 * c1 * C[idx], -2.0 * c1 * alpha / beta])
        real = np.sort(roots[np.abs(roots.imag) <= 1e-9 * max(1.0, np.abs(roots).max())].real)
        x = a1[idx]
        q = x**3 + 2.0 * c1 * C[idx] * x - 2.0 * c1 * alpha / beta
        # a₁ grows (q < 0) to the smallest root above it, else shrinks to the largest below
        ahead = real[real >= x] if q < 0 else real[real <= x][::-1]
        out[idx] = ahead[0] if ahead.size else (real[-1] if q < 0 else real[0])
    return out, out**2 / (2.0 * c1) + C


def a111_unstable(a1, a2, *, c1):
    """True where a fixed point (a₁a₂ = α/β) is unstable: c₁a₂ + a₁² < 0 (eq. 33).

    Linearised, w = a₂u + a₁v obeys dw/dt = −β(c₁a₂ + a₁²)w: it grows where the bracket is
    negative, the part of the hyperbola inside the parabola a₂ = −a₁²/c₁ (eq. 28).
    """
    return c1 * np.asarray(a2, dtype=float) + np.asarray(a1, dtype=float) ** 2 < 0
