"""Expected (mean-field) dynamics: dθ/dt = E[Δθ]/η, computed by the simulator's own step.

For a network whose units are linear, every signal of a training step (the layers' outputs, the
error, what the learning channel delivers) is affine in the input x, so every update is a
quadratic form in x and its expectation depends on the first and second moments of (x, t) only.
A *design* — a finite batch with exactly those moments — therefore gives the exact expected
update in one ordinary minibatch step: :func:`moment_design` builds one, 2·N_0 rows
``±√N_0 · (Σ_xx^{1/2})ᵀ`` with targets ``t = M x`` where ``M Σ_xx = Σ_tx``.
:class:`ExpectedDynamics` reads a network's weights (and its adaptive feedback) as one state
vector θ, takes ``Network.step`` on the design with η = 1, and returns the change: the
right-hand side of the ODE is the simulator's update, so the two cannot drift apart. The ODE is
integrated with :func:`scipy.integrate.solve_ivp`; time is in units of η × updates (Baldi et al.
2018, §7: "with the proper scaling of the learning rate (η = dt)").

With non-linear units the same machinery gives the full-batch gradient flow *on the design*
(e.g. the whole training set, or quadrature points of the input distribution): exact for that
finite set, no longer the population expectation. Channel options that draw random numbers at
run time (dropout, redrawn feedback, node perturbation, stochastic rounding) have no
deterministic right-hand side and are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lpfa import config as C
from lpfa.backend import to_numpy
from lpfa.config import ConfigError, Rounding
from lpfa.rules import Delivery

__all__ = ["ExpectedDynamics", "Trajectory", "linear_config", "moment_design"]


def linear_config(
    sizes: Sequence[int],
    rule: str = "rbp",
    *,
    seeds: Sequence[int] = (0,),
    hidden: str = "linear",
    data: str = "linear-teacher",
    channel: dict | None = None,
    model: dict | None = None,
    overrides: Sequence[str] = (),
) -> C.RunConfig:
    """The small chains of the theory: linear (or ``hidden``) units, linear output, squared loss,
    float64, on the linear teacher (or the task ``data``); ``channel`` and ``model`` add fields,
    ``overrides`` are ``--set`` strings applied last."""
    raw = {
        "seeds": list(seeds),
        "data": {"name": data},
        "model": {
            "sizes": list(sizes),
            "hidden": hidden,
            "output": "linear",
            "loss": "squared",
            "dtype": "float64",
            **(model or {}),
        },
        "channel": {"rule": rule, **(channel or {})},
    }
    return C.from_dict(C.RunConfig, C.apply_overrides(raw, list(overrides)))


def moment_design(sigma_xx, sigma_tx, *, dtype="float64") -> tuple[np.ndarray, np.ndarray]:
    """A batch (X, T) whose batch means equal the population moments of linear-network learning.

    Parameters
    ----------
    sigma_xx : array (N_0, N_0) or float
        Input covariance E[x xᵀ] (symmetric, positive semi-definite; a float means σ²·I, and a
        1 × 1 case such as Baldi et al.'s β = E[I²] is a float).
    sigma_tx : array (N_L, N_0) or float
        Target-input cross moment E[t xᵀ] (Baldi et al.'s Σ_TI; α = E[T I] for one unit).

    Returns
    -------
    X : array (N_0 + 1, N_0)
        Rows of √(N_0+1) · Q R with R = Σ_xx^{1/2} and Q (N_0+1, N_0) orthonormal columns
        orthogonal to the ones vector: mean 0 and (1/B) Σ x xᵀ = Σ_xx exactly.
    T : array (N_0 + 1, N_L)
        t = M x with M = Σ_tx Σ_xx⁺, so (1/B) Σ t xᵀ = Σ_tx where Σ_tx lies in Σ_xx's row space.

    Every moment a linear network's expected update needs is then matched: the update of an
    affine network is a quadratic form in x, whose mean is fixed by E[x] and E[x xᵀ]. N_0 + 1
    rows is the fewest that can have mean 0 and full-rank covariance.
    """
    sxx = np.atleast_2d(np.asarray(sigma_xx, dtype=np.float64))
    stx = np.atleast_2d(np.asarray(sigma_tx, dtype=np.float64))
    n = sxx.shape[0]
    if sxx.shape != (n, n) or not np.allclose(sxx, sxx.T):
        raise ValueError(f"sigma_xx.shape={sxx.shape}: need a symmetric (N_0, N_0) matrix")
    if stx.ndim != 2 or stx.shape[1] != n:
        raise ValueError(f"sigma_tx.shape={stx.shape}: need (N_L, {n}) to match sigma_xx")
    vals, vecs = np.linalg.eigh(sxx)
    if vals.min() < -1e-10 * max(1.0, abs(vals).max()):
        raise ValueError(f"sigma_xx: eigenvalue {vals.min():.3g} < 0; need positive semi-definite")
    root = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    M = stx @ np.linalg.pinv(sxx)
    basis = np.eye(n + 1)
    basis[:, 0] = 1.0
    Q = np.linalg.qr(basis)[0][:, 1:]  # orthonormal, each column orthogonal to the ones vector
    X = np.sqrt(n + 1) * (Q @ root)
    return X.astype(dtype), (X @ M.T).astype(dtype)


@dataclass(frozen=True)
class Trajectory:
    """A solution of the expected dynamics: times ``t`` (K,), states ``y`` (K, P), and the
    solver's report. :meth:`ExpectedDynamics.unpack` turns a state into weights."""

    t: np.ndarray
    y: np.ndarray
    success: bool
    message: str
    nfev: int


class ExpectedDynamics:
    """The deterministic ODE dθ/dt = E[Δθ]/η of a network's learning rule, on that network.

    Parameters
    ----------
    net : lpfa.network.Network
        Any network (every member of its ensemble is one independent system); its arrays are
        the ODE's state and are left at the last state evaluated or integrated to.
    X, T : arrays (B, N_0), (B, N_L)
        The design: a batch whose means are the expectations wanted (:func:`moment_design` for
        the population dynamics of a linear network, or a whole training set for full-batch
        gradient flow).
    weight_decay : float or sequence of L floats
        Decay λ of every forward array (dW/dt gains −λ W), or one per array, as in
        ``Network.step``.

    Notes
    -----
    The state θ is, per layer, W (E, N_h, N_{h−1}) then b (E, N_h), then the feedback arrays of
    adaptive rules (ARBP/ASRBP) in the channel's order, flattened and concatenated (host float64).
    Fixed feedback is a parameter of the system, not part of its state.
    """

    def __init__(self, net, X, T, *, weight_decay: float | Sequence[float] = 0.0):
        self.net = net
        self.weight_decay = (
            float(weight_decay) if np.isscalar(weight_decay) else tuple(map(float, weight_decay))
        )
        _check_deterministic(net)
        xp = net.xp
        dtype = net.layers[0].W.dtype
        self.X = xp.asarray(np.asarray(to_numpy(X), dtype=dtype))
        self.T = xp.asarray(np.asarray(to_numpy(T), dtype=dtype))
        sizes = net.model.sizes
        if self.X.ndim != 2 or self.X.shape[1] != sizes[0]:
            raise ValueError(f"X.shape={self.X.shape}: need (B, {sizes[0]}) for model.sizes")
        if self.T.shape != (self.X.shape[0], sizes[-1]):
            raise ValueError(f"T.shape={self.T.shape}: need ({self.X.shape[0]}, {sizes[-1]})")
        self._arrays = self._state_arrays()
        self.size = sum(int(a.size) for _, a in self._arrays)
        self.nfev = 0

    # --- the state vector ----------------------------------------------------------------------

    def _state_arrays(self) -> list[tuple[str, object]]:
        """(name, array) of every evolving array, in state order; the arrays are the network's."""
        out = []
        for h, layer in enumerate(self.net.layers, 1):
            out += [(f"W{h}", layer.W), (f"b{h}", layer.b)]
        if self.net.channel.cfg.adapt_lr is not None:
            for (k, h), fb in sorted(self.net.channel.feedback.items()):
                out.append((f"C{k}_{h}", fb.C))
        return out

    def state(self) -> np.ndarray:
        """The network's current θ, a host float64 vector of length :attr:`size`."""
        return np.concatenate(
            [np.asarray(to_numpy(a), np.float64).ravel() for _, a in self._arrays]
        )

    def set_state(self, y) -> None:
        """Write θ into the network's arrays (in place: the network keeps using them)."""
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (self.size,):
            raise ValueError(f"state of shape {y.shape}: need ({self.size},)")
        i = 0
        for _, a in self._arrays:
            a[...] = self.net.xp.asarray(y[i : i + a.size].reshape(a.shape).astype(a.dtype))
            i += a.size

    def unpack(self, y) -> dict[str, np.ndarray]:
        """θ as named host arrays: ``W1``, ``b1``, … (E, …) and ``C{k}_{h}`` for adaptive rules."""
        y = np.asarray(y, dtype=np.float64)
        out, i = {}, 0
        for name, a in self._arrays:
            out[name] = y[i : i + a.size].reshape(a.shape)
            i += a.size
        return out

    # --- the right-hand side -------------------------------------------------------------------

    def rhs(self, t: float, y) -> np.ndarray:
        """dθ/dt at state ``y`` (``t`` unused: the system is autonomous); the network is left
        holding ``y``."""
        self.set_state(y)
        drift = self.step(1.0) - np.asarray(y, dtype=np.float64)
        self.set_state(y)
        return drift

    def step(self, dt: float) -> np.ndarray:
        """One full-batch update θ ← θ + dt·E[Δθ]/η (an Euler step, the simulator's step on the
        design with η = dt); returns the new θ. Iterating it is full-batch gradient descent for
        the rule."""
        self.nfev += 1
        self.net.step(self.X, self.T, dt, weight_decay=self.weight_decay)
        return self.state()

    def loss(self, y=None) -> np.ndarray:
        """Mean loss on the design, per member (E,), at ``y`` (default: the current state)."""
        if y is not None:
            self.set_state(y)
        with self.net.observing():
            out = self.net.forward(self.X)[-1]
        return np.asarray(to_numpy(self.net.example_loss(out, self.T).mean(axis=1)), np.float64)

    def solve(
        self,
        t_end: float,
        *,
        t_eval: Sequence[float] | None = None,
        method: str = "RK45",
        rtol: float = 1e-8,
        atol: float = 1e-10,
        events: Callable | Sequence[Callable] | None = None,
    ) -> Trajectory:
        """Integrate from the network's current state to ``t_end`` with ``solve_ivp``.

        The network is left at the final state. ``method``, ``rtol``, ``atol`` and ``events``
        are solve_ivp's; the default tolerances are far below any simulation's noise.
        """
        from scipy.integrate import solve_ivp

        if not t_end > 0:
            raise ValueError(f"t_end={t_end!r}: must be > 0")
        sol = solve_ivp(
            self.rhs,
            (0.0, float(t_end)),
            self.state(),
            method=method,
            t_eval=None if t_eval is None else np.asarray(t_eval, dtype=np.float64),
            rtol=rtol,
            atol=atol,
            events=events,
        )
        self.set_state(sol.y[:, -1])
        return Trajectory(sol.t, sol.y.T, bool(sol.success), str(sol.message), int(sol.nfev))


def _check_deterministic(net) -> None:
    """Refuse what has no deterministic right-hand side: draws from the runtime stream."""
    ch, m = net.channel.cfg, net.model
    why = "the expected dynamics need a deterministic update"
    if net.channel.spec.delivery is Delivery.PERTURBATION:
        raise ConfigError("channel.rule", ch.rule.value, f"node perturbation is random; {why}")
    if ch.dropout:
        raise ConfigError("channel.dropout", ch.dropout, f"must be 0: {why}")
    if ch.resample:
        raise ConfigError("channel.resample", True, f"must be false (redrawn feedback): {why}")
    for section, fmts, rounding in (
        ("channel", (ch.error_format, ch.update_format), ch.rounding),
        ("model", (m.input_format, m.output_format, m.weight_format), m.rounding),
    ):
        if rounding is Rounding.STOCHASTIC and any(f is not None for f in fmts):
            raise ConfigError(
                f"{section}.rounding", "stochastic", f"must be nearest or toward_zero: {why}"
            )
    dtype = str(net.layers[0].W.dtype)
    if dtype != "float64":
        raise ConfigError(
            "model.dtype", dtype, "must be float64 (solver tolerances lie below float32's)"
        )
