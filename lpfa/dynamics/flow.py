"""Flow fields and trajectories of the expected dynamics for any two weights of a small network.

A grid of (x, y) values of two weights is one network whose ensemble axis is the grid: every
member is an independent system (:class:`lpfa.dynamics.ExpectedDynamics`), so a single
right-hand side call evaluates the whole field. Each member starts as a copy of one member of
the configured network (all its weights, biases and feedback); then the two chosen weights, and
any named in ``fixed``, are set per member. Weights are named as in
:meth:`ExpectedDynamics.unpack`, with an index: ``"W1[0,0]"`` (layer 1's forward weight from
input 0 to unit 0), ``"b2[0]"`` (layer 2's bias of unit 0), and feedback ``"C2_1[0,0]"`` (the
channel's array C^{2→1}, stored as Bᵀ: ``C = W²`` gives backprop). A fixed feedback weight may be
an axis of the grid; its rate of change is zero.

:func:`field` gives the vector field, :func:`trajectories` the ODE paths from given starts,
:func:`simulate` the paths of ordinary minibatch training from the same starts (for comparison;
time is η × steps, as the ODE's), and :func:`plot_flow` draws them with the solution manifold,
its stable and unstable branches in different styles.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lpfa.backend import to_numpy
from lpfa.config import ConfigError, RunConfig
from lpfa.dynamics.expected import ExpectedDynamics

__all__ = [
    "Paths",
    "ensemble",
    "field",
    "gaussian_sampler",
    "plot_flow",
    "simulate",
    "trajectories",
]

_NAME = re.compile(r"^(W|b)(\d+)\[(\d+(?:,\d+)?)\]$|^C(\d+)_(\d+)\[(\d+),(\d+)\]$")
_FORMS = "W<h>[i,j], b<h>[i] or C<k>_<h>[i,j] (e.g. 'W1[0,0]', 'C2_1[0,0]')"


@dataclasses.dataclass(frozen=True)
class Paths:
    """Paths of two weights: times ``t`` (K,), values ``x`` and ``y`` (K, n), one column per
    start."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray


def _address(net, name: str) -> tuple[str, object, tuple[int, ...]]:
    """(state name, array, index without the member axis) of a named weight of ``net``."""
    m = _NAME.match(str(name).replace(" ", ""))
    if m is None:
        raise ConfigError("weights", name, f"name a weight as {_FORMS}")
    if m.group(1):
        h = int(m.group(2))
        if not 1 <= h <= len(net.layers):
            raise ConfigError("weights", name, f"layer {h} is not in 1..{len(net.layers)}")
        layer = net.layers[h - 1]
        key, array = f"{m.group(1)}{h}", (layer.W if m.group(1) == "W" else layer.b)
        index = tuple(int(i) for i in m.group(3).split(","))
    else:
        pair = (int(m.group(4)), int(m.group(5)))
        if pair not in net.channel.feedback:
            have = ", ".join(f"C{k}_{h}" for k, h in sorted(net.channel.feedback)) or "none"
            raise ConfigError("weights", name, f"the channel's feedback arrays are: {have}")
        key, array = f"C{pair[0]}_{pair[1]}", net.channel.feedback[pair].C
        index = (int(m.group(6)), int(m.group(7)))
    shape = tuple(array.shape[1:])
    if len(index) != len(shape) or not all(0 <= i < n for i, n in zip(index, shape, strict=True)):
        raise ConfigError("weights", name, f"index out of range for {key} of shape {shape}")
    return key, array, index


def ensemble(
    cfg: RunConfig, n: int, values: Mapping[str, object] | None = None, *, member: int = 0
):
    """A network of ``n`` members, each a copy of member ``member`` of ``Network.build(cfg)``,
    with the named weights then set per member.

    Parameters
    ----------
    cfg : RunConfig
        The network (``model.dtype = "float64"`` for the expected dynamics).
    n : int
        Ensemble size (the number of grid points or starts).
    values : mapping of weight name to float or array (n,)
        Weights to set (see the module docstring for names).
    member : int
        Which member of ``cfg``'s ensemble (its seed) the other weights come from.

    Returns
    -------
    lpfa.network.Network
    """
    from lpfa.network import Network

    if not 0 <= member < len(cfg.seeds):
        raise ConfigError("member", member, f"must be in 0..{len(cfg.seeds) - 1} (cfg.seeds)")
    template = Network.build(cfg)
    net = Network.build(dataclasses.replace(cfg, seeds=tuple(range(n))))
    for src, dst in zip(template.layers, net.layers, strict=True):
        dst.W[...] = src.W[member]
        dst.b[...] = src.b[member]
        if src.mask is not None:
            dst.mask[...] = src.mask[member]
    for key, fb in template.channel.feedback.items():
        net.channel.feedback[key].C[...] = fb.C[member]
    xp = net.xp
    for name, v in (values or {}).items():
        _, array, index = _address(net, name)
        v = np.broadcast_to(np.asarray(to_numpy(v), dtype=np.float64), (n,))
        array[(slice(None), *index)] = xp.asarray(v.astype(array.dtype))
    return net


def _column(ed: ExpectedDynamics, y, name: str) -> np.ndarray:
    """The named weight of every member (n,) in state ``y``; zeros where it is not part of the
    state (fixed feedback: its rate of change)."""
    key, _, index = _address(ed.net, name)
    named = ed.unpack(y)
    if key not in named:
        return np.zeros(ed.net.n_members)
    return named[key][(slice(None), *index)].copy()


def _check_pair(weights: Sequence[str]) -> tuple[str, str]:
    if isinstance(weights, str) or len(weights) != 2 or weights[0] == weights[1]:
        raise ConfigError("weights", weights, "name two different weights, (x, y)")
    return weights[0], weights[1]


def field(
    cfg: RunConfig,
    X,
    T,
    weights: Sequence[str],
    grid: tuple[Sequence[float], Sequence[float]],
    *,
    fixed: Mapping[str, float] | None = None,
    member: int = 0,
    weight_decay: float | Sequence[float] = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The vector field (dx/dt, dy/dt) of two weights over a grid, from the expected dynamics.

    Parameters
    ----------
    cfg : RunConfig
        The network; every weight not named keeps member ``member``'s initial value.
    X, T : arrays (B, N_0), (B, N_L)
        The design (:func:`lpfa.dynamics.moment_design`).
    weights : (str, str)
        The weights on the horizontal and the vertical axis, e.g. ``("W1[0,0]", "W2[0,0]")``.
    grid : (xs, ys)
        Their values: 1-D sequences of lengths n_x and n_y.
    fixed : mapping of weight name to float, optional
        Other weights to hold at a value (e.g. the feedback ``"C2_1[0,0]": 1.0``).
    member, weight_decay
        As in :func:`ensemble` and :class:`ExpectedDynamics`.

    Returns
    -------
    U, V : arrays (n_y, n_x)
        dx/dt and dy/dt at (xs[j], ys[i]) in [i, j]: the layout of matplotlib's ``quiver`` and
        ``streamplot``. All n_x·n_y points are one ensemble and one right-hand side call.
    """
    wx, wy = _check_pair(weights)
    gx, gy = np.meshgrid(np.asarray(grid[0], float), np.asarray(grid[1], float))
    values = {**(fixed or {}), wx: gx.ravel(), wy: gy.ravel()}
    ed = ExpectedDynamics(
        ensemble(cfg, gx.size, values, member=member), X, T, weight_decay=weight_decay
    )
    drift = ed.rhs(0.0, ed.state())
    return _column(ed, drift, wx).reshape(gx.shape), _column(ed, drift, wy).reshape(gx.shape)


def _starts(starts) -> np.ndarray:
    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    if starts.ndim != 2 or starts.shape[1] != 2 or len(starts) == 0:
        raise ConfigError("starts", f"shape {starts.shape}", "need (K, 2): one (x, y) per row")
    return starts


def trajectories(
    cfg: RunConfig,
    X,
    T,
    weights: Sequence[str],
    starts,
    t_end: float,
    *,
    fixed: Mapping[str, float] | None = None,
    member: int = 0,
    n_points: int = 200,
    rtol: float = 1e-9,
    atol: float = 1e-11,
    weight_decay: float | Sequence[float] = 0.0,
) -> Paths:
    """ODE paths of two weights from each start, all starts one ensemble and one solve.

    Parameters
    ----------
    starts : array (K, 2)
        Initial (x, y) of each path.
    t_end : float
        Time to integrate to (in units of η × updates).
    n_points : int
        Evenly spaced times, 0 … t_end, at which the paths are reported.
    rtol, atol : float
        ``solve_ivp``'s tolerances (the solver controls the error of the whole ensemble at once).

    Other parameters as in :func:`field`.

    Returns
    -------
    Paths
        ``t`` (n_points,), ``x`` and ``y`` (n_points, K).
    """
    wx, wy = _check_pair(weights)
    s = _starts(starts)
    values = {**(fixed or {}), wx: s[:, 0], wy: s[:, 1]}
    ed = ExpectedDynamics(
        ensemble(cfg, len(s), values, member=member), X, T, weight_decay=weight_decay
    )
    traj = ed.solve(t_end, t_eval=np.linspace(0.0, t_end, n_points), rtol=rtol, atol=atol)
    if not traj.success:
        raise RuntimeError(f"the ODE solver stopped at t={traj.t[-1]:.4g}: {traj.message}")
    px = np.stack([_column(ed, y, wx) for y in traj.y])
    py = np.stack([_column(ed, y, wy) for y in traj.y])
    if wx.startswith("C") and ed.net.channel.cfg.adapt_lr is None:
        px = np.broadcast_to(s[:, 0], px.shape).copy()  # fixed feedback stays where it started
    if wy.startswith("C") and ed.net.channel.cfg.adapt_lr is None:
        py = np.broadcast_to(s[:, 1], py.shape).copy()
    return Paths(traj.t, px, py)


def gaussian_sampler(sigma_xx, sigma_tx) -> Callable:
    """Draws of the linear-network task x ~ N(0, Σ_xx), t = M x with M Σ_xx = Σ_tx.

    Returns ``sample(rng, shape) -> (x, t)`` with x (*shape, N_0) and t (*shape, N_L): the
    population whose moments :func:`lpfa.dynamics.moment_design` matches.
    """
    sxx = np.atleast_2d(np.asarray(sigma_xx, dtype=np.float64))
    stx = np.atleast_2d(np.asarray(sigma_tx, dtype=np.float64))
    vals, vecs = np.linalg.eigh(sxx)
    root = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    M = stx @ np.linalg.pinv(sxx)

    def sample(rng: np.random.Generator, shape: tuple[int, ...]):
        x = rng.standard_normal((*shape, sxx.shape[0])) @ root
        return x, x @ M.T

    return sample


def simulate(
    cfg: RunConfig,
    sample: Callable,
    weights: Sequence[str],
    starts,
    t_end: float,
    *,
    lr: float,
    batch_size: int = 1,
    fixed: Mapping[str, float] | None = None,
    member: int = 0,
    n_points: int = 100,
    seed: int = 0,
) -> Paths:
    """Paths of two weights under ordinary minibatch training (``Network.step``), for
    comparison with :func:`trajectories`.

    Every start is one member; all members train on the same minibatches, drawn by
    ``sample(rng, (batch_size,))`` (:func:`gaussian_sampler`) from
    ``np.random.default_rng(seed)`` (``Network.step`` takes one batch for the ensemble: for
    independent data streams call again with other seeds). Time is η × steps, the ODE's time,
    so as η → 0 the paths approach the ODE's (with a spread of order √η).

    Returns
    -------
    Paths
        ``t`` (n_points,) on the step grid, ``x`` and ``y`` (n_points, K).
    """
    wx, wy = _check_pair(weights)
    s = _starts(starts)
    if not lr > 0:
        raise ConfigError("lr", lr, "must be > 0")
    steps = max(1, round(t_end / lr))
    net = ensemble(cfg, len(s), {**(fixed or {}), wx: s[:, 0], wy: s[:, 1]}, member=member)
    read = [_address(net, w) for w in (wx, wy)]
    rng = np.random.default_rng(seed)
    # np.array copies: a slice of a weight is a view that the next step would change
    marks = set(np.unique(np.linspace(0, steps, n_points).round().astype(int)).tolist())
    t, px, py = [], [], []
    dtype = net.layers[0].W.dtype
    for k in range(steps + 1):
        if k in marks:
            t.append(k * lr)
            px.append(np.array(to_numpy(read[0][1][(slice(None), *read[0][2])]), float))
            py.append(np.array(to_numpy(read[1][1][(slice(None), *read[1][2])]), float))
        if k < steps:
            x, y = sample(rng, (batch_size,))
            net.step(net.xp.asarray(x.astype(dtype)), net.xp.asarray(y.astype(dtype)), lr)
    return Paths(np.asarray(t), np.stack(px), np.stack(py))


def plot_flow(
    ax,
    xs,
    ys,
    U,
    V,
    *,
    kind: str = "stream",
    color=None,
    cmap: str = "Greys",
    paths: Paths | tuple[np.ndarray, np.ndarray] | None = None,
    manifold: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] = (),
    curves: Sequence[tuple[np.ndarray, np.ndarray, str]] = (),
    region: tuple[np.ndarray, str] | None = None,
):
    """Draw a flow field on ``ax`` (matplotlib, imported by the caller's figure).

    Parameters
    ----------
    ax : matplotlib Axes
    xs, ys : 1-D arrays (n_x,), (n_y,)
        The grid of :func:`field`.
    U, V : arrays (n_y, n_x)
        The field.
    kind : {"stream", "quiver"}
        Streamlines or arrows (arrows normalised to unit length, so direction is legible).
    color : array (n_y, n_x), optional
        Colour of the arrows or streamlines (e.g. dP/dt, as Baldi et al.'s Fig. 11); default
        log₁₀ of the speed.
    paths : Paths or (x, y) arrays (K, n), optional
        Trajectories: a line each, a dot at its start and a cross at its end.
    manifold : sequence of (x, y, stable)
        Branches of the fixed-point set, sampled along a curve; ``stable`` (bool, same length)
        marks the stable points: drawn solid black, the unstable ones dashed red.
    curves : sequence of (x, y, label)
        Other curves (conserved quantities, the boundary of stability), dotted.
    region : (mask (n_y, n_x) bool, label), optional
        A set of grid points to shade (e.g. the basin of the bad branch).

    Returns
    -------
    ax
    """
    if kind not in ("stream", "quiver"):
        raise ConfigError("kind", kind, "must be 'stream' or 'quiver'")
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    U, V = np.asarray(U, float), np.asarray(V, float)
    speed = np.hypot(U, V)
    c = np.log10(speed + 1e-12) if color is None else np.asarray(color, float)
    if region is not None:
        mask, label = region
        ax.contourf(xs, ys, np.asarray(mask, float), levels=[0.5, 1.5], colors=["0.85"])
        ax.fill_between([], [], color="0.85", label=label)  # legend entry for the shading
    if kind == "stream":
        ax.streamplot(xs, ys, U, V, color=c, cmap=cmap, density=1.2, linewidth=0.7, arrowsize=0.8)
    else:
        norm = np.where(speed > 0, speed, 1.0)
        gx, gy = np.meshgrid(xs, ys)
        ax.quiver(gx, gy, U / norm, V / norm, c, cmap=cmap, angles="xy", pivot="mid")
    for cx, cy, label in curves:
        ax.plot(cx, cy, ":", color="tab:green", lw=1.2, label=label)
    for i, (mx, my, stable) in enumerate(manifold):
        stable = np.asarray(stable, bool)
        mx, my = np.asarray(mx, float), np.asarray(my, float)
        first = i == 0
        ax.plot(
            np.where(stable, mx, np.nan),
            np.where(stable, my, np.nan),
            "-",
            color="k",
            lw=2.2,
            label="stable fixed points" if first else None,
        )
        ax.plot(
            np.where(~stable, mx, np.nan),
            np.where(~stable, my, np.nan),
            "--",
            color="tab:red",
            lw=2.2,
            label="unstable fixed points" if first else None,
        )
    if paths is not None:
        px, py = (paths.x, paths.y) if isinstance(paths, Paths) else paths
        ax.plot(px, py, color="tab:blue", lw=1.1, alpha=0.9)
        ax.plot(px[0], py[0], "o", color="tab:blue", ms=3)
        ax.plot(px[-1], py[-1], "x", color="tab:blue", ms=5)
    ax.set_xlim(xs.min(), xs.max())
    ax.set_ylim(ys.min(), ys.max())
    return ax
