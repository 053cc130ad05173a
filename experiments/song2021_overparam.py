"""Song, Xu & Lafferty (2021), "Convergence and Alignment of Gradient Descent with Random
Backpropagation Weights": feedback alignment on an overparameterized two-layer network.

The source is an abstract and summary; its claims, with no numbers: for two-layer networks under
squared loss, in the overparameterized setting the training error of feedback alignment
"converges to zero exponentially fast"; "regularization is necessary for parameter alignment
with random weights" (the second layer v aligns with the random vector b only when v is
regularized); FA "can perform comparably to backpropagation".

Design (lpfa's, where the source is silent). Model f(x) = m^{-1/2} Σ_r v_r σ(w_rᵀx) with
w_r ~ N(0, I_d), v_r, b_r ~ N(0, 1) drawn per seed (the same w, v for BP and FA); σ linear,
ReLU or tanh; n = 20 training points x_i uniform on the unit sphere of R^10, targets y_i ~ N(0, 1)
(fixed, random: fitting them is memorisation, so error → 0 needs capacity). FA trains W through
b in place of v; v follows its gradient. Full-batch gradient descent on the mean loss
½·mean_i (y_i − f(x_i))² with η = 1 per iteration, run as
:class:`lpfa.dynamics.ExpectedDynamics` with the training set as the design (exact full-batch
GD for any units). The m^{-1/2} scale: lpfa's net holds W¹ = w/√m, W² = v/√m, feedback
C = b/√m, reads the inputs √m·x and learns at η/m; then S¹ = W¹(√m x) = Wx, f = W² σ(S¹), and one
lpfa step is exactly one GD step of (w, v) in the m^{-1/2} parametrisation (the input scale
multiplies layer 1's effective rate by m). ℓ2 regularisation λ‖v‖²/2 on v only is
``weight_decay = [0, m·λ]``. The model has no biases (``model.bias = false``). Widths m from 5
(< n) to 640 (≫ n), 5 seeds (``--seeds``).

Measured: the training loss vs iteration per width, unit and rule; the fitted rate (−slope of
ln(loss − floor) over the later half of the points above 1e-11 of the start; floor 0, or the
least-squares residual for linear units, which are linear in x and cannot fit n > d points);
the smallest width from which every seed decays at least at half the rate 2λ_min(G∞)/n that
the second layer's kernel alone gives at infinite width (a stalled run has rate ≈ 0), over
3 000 iterations, and whether it reached 1e-6 of its starting loss; and, for ReLU FA at
m ∈ {40, 160, 640}, cos(v, b) over 4 000 iterations for λ ∈ {0, 10⁻³, 10⁻², 10⁻¹}.

Runtime: ~50 s of CPU on 1 core (full); ``--quick`` (3 widths, 800 iterations, 2 values of
λ, "error → 0" read as 1e-3 of the start) ~5 s.

Exit status 3 (after writing everything) if a run diverged, as the other experiments.

    python experiments/song2021_overparam.py [--quick] [--seeds N] [--out DIR] [--plot-only]
"""

import sys
from pathlib import Path

import numpy as np

from lpfa import config as C
from lpfa.dynamics import ExpectedDynamics, linear_config
from lpfa.dynamics.measures import alignment_deg
from lpfa.experiment import EXIT_DIVERGED, out_folder, parser, script
from lpfa.network import Network
from lpfa.report import claims_table
from lpfa.runfiles import atomic_write_text, check_out, dump_json

N_POINTS, DIM = 20, 10
UNITS = ("linear", "relu", "tanh")
RULES = ("bp", "rbp")
WIDTHS = (5, 10, 20, 40, 80, 160, 640)
ALIGN_WIDTHS = (40, 160, 640)
LAMBDAS = (0.0, 1e-3, 1e-2, 1e-1)
ETA = 1.0  # below 2 / (largest eigenvalue of the mean-loss Hessian, ≤ 1 here)
EVERY = 10  # iterations between records
CONVERGED = 1e-6  # "error → 0": every seed's loss below this fraction of its start (--quick 1e-3)
EPS = 1e-11  # points closer than this (relative) to the floor are round-off, not fitted


def training_set() -> tuple[np.ndarray, np.ndarray]:
    """n points uniform on the unit sphere of R^d and random N(0, 1) targets (fixed)."""
    rng = np.random.default_rng(np.random.SeedSequence(2021))
    x = rng.standard_normal((N_POINTS, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True), rng.standard_normal((N_POINTS, 1))


def floor(unit: str, x: np.ndarray, y: np.ndarray) -> float:
    """The lowest training loss the model class reaches: 0, or least squares for linear units."""
    if unit != "linear":
        return 0.0
    a = np.linalg.lstsq(x, y, rcond=None)[0]
    return float(0.5 * np.mean((y - x @ a) ** 2))


def kernel_rate(unit: str, x: np.ndarray, draws: int = 100_000) -> float:
    """2 λ_min(G∞)/n: the rate of ln(loss) that the second layer alone gives at infinite width.

    G∞_ij = E_w[σ(wᵀx_i) σ(wᵀx_j)], w ~ N(0, I), by Monte Carlo over ``draws`` fixed draws
    (relative error of the entries ~ 1/√draws). With v trained by its gradient the loss obeys
    de/dt = −(1/n) H e with H ⪰ G (FA's first-layer term (1/m) Σ v_r b_r σ′σ′ xᵢᵀxⱼ vanishes
    at large width while v and b are unaligned), so ½‖e‖² decays at least as fast as
    exp(−2 λ_min(G) t / n) once H ≈ G∞. 0 for linear units when n > d.
    """
    w = np.random.default_rng(np.random.SeedSequence(17)).standard_normal((draws, x.shape[1]))
    S = x @ w.T
    F = {"linear": S, "relu": np.maximum(S, 0.0), "tanh": np.tanh(S)}[unit]
    return float(max(2.0 * np.linalg.eigvalsh(F @ F.T / draws)[0] / len(x), 0.0))


def network(m: int, unit: str, rule: str, seeds: int, overrides: list[str]) -> Network:
    """The d-m-1 net holding w/√m, v/√m and feedback b/√m (see the module docstring)."""
    # the design is the training set (the linear teacher's data are not read); no biases
    cfg = linear_config((DIM, m, 1), rule, seeds=range(seeds), hidden=unit,
                        model={"bias": False}, overrides=overrides)  # fmt: skip
    net = Network.build(cfg)
    draws = [np.random.default_rng([s, m]) for s in range(seeds)]
    w = np.stack([g.standard_normal((m, DIM)) for g in draws])
    v = np.stack([g.standard_normal((1, m)) for g in draws])
    b = np.stack([g.standard_normal((1, m)) for g in draws])
    scale = 1.0 / np.sqrt(m)
    net.layers[0].W[...] = net.xp.asarray(w * scale)
    net.layers[1].W[...] = net.xp.asarray(v * scale)
    if (2, 1) in net.channel.feedback:
        net.channel.feedback[(2, 1)].C[...] = net.xp.asarray(b * scale)
    return net


def run(m, unit, rule, seeds, steps, overrides, lam: float = 0.0, every: int = EVERY) -> dict:
    """Full-batch GD of the m^{-1/2} model, every ``every`` iterations: loss, cos(v, b), ‖w‖_F
    and ‖v‖ (each (K, E))."""
    x, y = training_set()
    net = network(m, unit, rule, seeds, overrides)
    ed = ExpectedDynamics(net, np.sqrt(m) * x, y, weight_decay=[0.0, m * lam])
    fb = net.channel.feedback.get((2, 1))
    loss, cos, norms = [], [], []
    for i in range(steps + 1):
        if i % every == 0:
            loss.append(ed.loss())
            norms.append([np.sqrt(m) * np.linalg.norm(a.W, axis=(1, 2)) for a in net.layers])
            angle = alignment_deg(net.layers[1].W, fb.C) if fb is not None else np.nan
            cos.append(np.cos(np.radians(angle)) * np.ones(seeds))
        if i < steps:
            ed.step(ETA / m)
    norms = np.array(norms)
    return {"loss": np.array(loss), "cos": np.array(cos), "w": norms[:, 0], "v": norms[:, 1]}


def fitted_rate(loss: np.ndarray, floor_value: float, every: int = EVERY) -> np.ndarray:
    """−d ln(loss − floor)/dt per member (t = η × iterations), over the later half of the
    records still above EPS of the start; NaN with fewer than 4 such records."""
    excess = loss - floor_value
    rel = excess / excess[0]
    out = np.full(loss.shape[1], np.nan)
    for e in range(loss.shape[1]):
        valid = np.flatnonzero(rel[:, e] > EPS)
        valid = valid[: np.argmax(np.diff(valid) > 1) + 1] if np.any(np.diff(valid) > 1) else valid
        if len(valid) < 4:
            continue
        use = valid[len(valid) // 2 :]
        t = use * every * ETA
        out[e] = -np.polyfit(t, np.log(excess[use, e]), 1)[0]
    return out


def measure(quick: bool, seeds: int | None, overrides: list[str]) -> dict:
    seeds = seeds or 5
    steps = 800 if quick else 3000
    widths = (5, 40, 160) if quick else WIDTHS
    d: dict[str, np.ndarray] = {
        "converged": np.array(1e-3 if quick else CONVERGED),
        "seeds": np.array(seeds),
        "steps": np.array(steps),
        "widths": np.array(widths),
    }
    x, y = training_set()
    for unit in UNITS:
        d[f"floor_{unit}"] = np.array(floor(unit, x, y))
        d[f"kernel_rate_{unit}"] = np.array(kernel_rate(unit, x))
        for rule in RULES:
            for m in widths:
                r = run(m, unit, rule, seeds, steps, overrides)
                d[f"loss_{unit}_{rule}_{m}"] = r["loss"]
                d[f"cos_{unit}_{rule}_{m}"] = r["cos"][-1]
    a_steps = 800 if quick else 4000
    a_widths = (40, 160) if quick else ALIGN_WIDTHS
    lams = (0.0, 1e-2) if quick else LAMBDAS
    d["a_steps"], d["a_widths"], d["lambdas"] = (
        np.array(a_steps),
        np.array(a_widths),
        np.array(lams),
    )
    for m in a_widths:
        for lam in lams:
            r = run(m, "relu", "rbp", seeds, a_steps, overrides, lam=lam, every=20)
            d[f"align_{m}_{lam:g}"] = r["cos"]
            d[f"align_loss_{m}_{lam:g}"] = r["loss"][-1]
            d[f"align_w_{m}_{lam:g}"] = r["w"]
            d[f"align_v_{m}_{lam:g}"] = r["v"]
    return d


def summary(d: dict) -> dict:
    """Per (unit, rule, width): relative end excess, fitted rate (mean), converged."""
    out, converged = {}, float(d["converged"])
    for unit in UNITS:
        fl = float(d[f"floor_{unit}"])
        kappa = float(d[f"kernel_rate_{unit}"])
        for rule in RULES:
            for m in d["widths"]:
                loss = d[f"loss_{unit}_{rule}_{m}"]
                rel = (loss[-1] - fl) / (loss[0] - fl)
                rate = fitted_rate(loss, fl)
                out[unit, rule, int(m)] = {
                    "rel_end": float(np.max(rel)),
                    "rate": float(np.nanmean(rate)) if np.isfinite(rate).any() else np.nan,
                    "converged": bool(np.all(rel < converged)),
                    # every seed decays at ≥ half the infinite-width kernel rate (or has reached
                    # round-off): exponential convergence, not a stall at a positive loss
                    "exponential": bool(
                        kappa > 0 and np.all((np.nan_to_num(rate, nan=np.inf)) >= 0.5 * kappa)
                    ),
                    "cos": float(np.mean(d[f"cos_{unit}_{rule}_{m}"])),
                }
    return out


def exponential_width(s: dict, unit: str, rule: str, widths) -> int | None:
    """The smallest width from which every wider net converges exponentially (None if the
    widest does not)."""
    best = None
    for m in sorted(widths, reverse=True):
        if not s[unit, rule, int(m)]["exponential"]:
            break
        best = int(m)
    return best


def verdicts(d: dict) -> list[tuple[str, str, str, str]]:
    s = summary(d)
    widths = [int(m) for m in d["widths"]]
    top = max(widths)
    converged = float(d["converged"])
    rows = []
    for unit in ("relu", "tanh"):
        mw = {rule: exponential_width(s, unit, rule, widths) for rule in RULES}
        fa = s[unit, "rbp", top]
        kappa = float(d[f"kernel_rate_{unit}"])
        rows.append(
            (
                f"overparameterized FA: training error → 0 exponentially fast ({unit})",
                f"n = {N_POINTS}: smallest width from which every seed's fitted rate is ≥ ½ of "
                f"the infinite-width kernel rate 2λ_min(G∞)/n = {kappa:.2g} (BP's width); at "
                f"m = {top}: FA's mean rate (BP's), and whether every seed reached "
                f"{converged:g} of its start in {int(d['steps'])} iterations",
                f"m ≥ {mw['rbp']} ({mw['bp']}); {fa['rate']:.3g} "
                f"({s[unit, 'bp', top]['rate']:.3g}); {'yes' if fa['converged'] else 'no'}",
                f"holds from m = {mw['rbp']}" if mw["rbp"] is not None else "does not hold",
            )
        )
    small = min(widths)
    stuck = [u for u in ("relu", "tanh") if not s[u, "rbp", small]["exponential"]]
    rows.append(
        (
            "… in the overparameterized regime only",
            f"units for which FA at m = {small} (< n = {N_POINTS}) is not exponential (a seed "
            "stalls)",
            ", ".join(stuck) or "none",
            f"regime: m = {small} is not enough" if stuck else "converges even there",
        )
    )
    mid = sorted(widths)[len(widths) // 2]
    ratio = {
        (u, m): s[u, "rbp", m]["rate"] / float(d[f"kernel_rate_{u}"])
        for u in ("relu", "tanh")
        for m in (mid, top)
    }
    rows.append(
        (
            "(lpfa) FA's rate falls towards the second-layer kernel's as m grows",
            f"FA's mean rate / 2λ_min(G∞)/n at m = {mid} → {top}, ReLU; tanh",
            "; ".join(f"{ratio[u, mid]:.2f} → {ratio[u, top]:.2f}" for u in ("relu", "tanh")),
            "holds: falling, staying above it"
            if all(ratio[u, top] < ratio[u, mid] and ratio[u, top] >= 0.9 for u in ("relu", "tanh"))
            else "does not hold",
        )
    )
    lin = s["linear", "rbp", top]
    rows.append(
        (
            "(lpfa) linear units (n = 20 > d = 10 points)",
            f"FA at m = {top}: loss − least-squares floor, relative to the start; fitted rate",
            f"{lin['rel_end']:.1e}; {lin['rate']:.3g}",
            "regime: converges exponentially to the floor, not to 0"
            if lin["rel_end"] < converged
            else "does not converge",
        )
    )
    ratio = s["relu", "rbp", top]["rate"] / s["relu", "bp", top]["rate"]
    rows.append(
        (
            "FA performs comparably to BP",
            f"ReLU, m = {top}: FA's rate / BP's",
            f"{ratio:.2f}",
            "holds: same exponential behaviour, a slower rate" if ratio > 0.1 else "does not hold",
        )
    )
    a_top = int(max(d["a_widths"]))
    lams = [float(v) for v in d["lambdas"]]
    end = {lam: float(d[f"align_{a_top}_{lam:g}"][-1].mean()) for lam in lams}
    pos = [lam for lam in lams if lam > 0]
    rows.append(
        (
            "regularization is necessary for v to align with b",
            f"ReLU FA, m = {a_top}, after {int(d['a_steps'])} iterations: mean cos(v, b) for "
            + ", ".join(f"λ = {lam:g}" for lam in lams),
            ", ".join(f"{end[lam]:.2f}" for lam in lams),
            "holds: λ ≥ 0.01 aligns, λ = 0 does not"
            if all(end[lam] > end[0.0] + 0.3 for lam in pos if lam >= 1e-2)
            else "does not hold",
        )
    )
    bad = diverged(d)
    rows.append(
        (
            "(lpfa) ℓ2 on v only, at small width",
            "alignment runs that diverged (m, λ: members; mean norms before)",
            "; ".join(
                f"m = {m}, λ = {lam:g}: {k}/{int(d['seeds'])} ({norms})" for m, lam, k, norms in bad
            )
            or "none",
            "regime: w keeps growing while v stays small (ReLU is positively homogeneous: "
            "scale moved from v into w lowers the penalty) until η = 1 is unstable"
            if bad
            else "none diverged",
        )
    )
    cos0 = [s["relu", "rbp", m]["cos"] for m in widths]
    rows.append(
        (
            "(lpfa) without regularization, wider nets align less",
            f"ReLU FA, λ = 0, after {int(d['steps'])} iterations: cos(v, b) at m = "
            f"{widths[0]} → {top}",
            f"{cos0[0]:.2f} → {cos0[-1]:.2f}",
            "holds" if cos0[-1] < cos0[0] else "does not hold",
        )
    )
    return rows


def diverged(d: dict) -> list[tuple[int, float, int, str]]:
    """(m, λ, members, mean ‖w‖_F and ‖v‖ from the start to the last finite record) of the
    alignment runs whose state became non-finite."""
    out = []
    for m in d["a_widths"]:
        for lam in d["lambdas"]:
            bad = ~np.isfinite(d[f"align_{m}_{lam:g}"][-1])
            if bad.any():
                w, v = d[f"align_w_{m}_{lam:g}"], d[f"align_v_{m}_{lam:g}"]
                last = int(np.argmin(np.isfinite(w).all(axis=1))) - 1
                low = int(np.argmin(v[: last + 1].mean(axis=1)))  # v at its smallest
                norms = (
                    f"‖v‖ {v[0].mean():.1f} → {v[low].mean():.1f} by iteration {20 * low}; ‖w‖ "
                    f"{w[0].mean():.0f} → {w[last].mean():.0f} by {20 * last}, then non-finite"
                )
                out.append((int(m), float(lam), int(bad.sum()), norms))
    return out


def figures(d: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = [int(m) for m in d["widths"]]
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(widths)))
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for row, rule in enumerate(RULES):
        for col, unit in enumerate(UNITS):
            ax = axes[row, col]
            fl = float(d[f"floor_{unit}"])
            for m, c in zip(widths, colors, strict=True):
                loss = d[f"loss_{unit}_{rule}_{m}"]
                rel = np.maximum((loss - fl) / (loss[0] - fl), 1e-16)
                it = np.arange(len(rel)) * EVERY
                ax.plot(it, np.exp(np.log(rel).mean(1)), color=c, label=f"m = {m}")
            ax.set_yscale("log")
            ax.set_ylim(1e-16, 10)
            ax.set_title(
                f"{'BP' if rule == 'bp' else 'FA'}, {unit}"
                + (" (loss − least-squares floor)" if unit == "linear" else ""),
                fontsize=9,
            )
            ax.set_xlabel("iteration (η = 1)")
            ax.set_ylabel("training loss / start (geometric mean)")
        axes[row, 0].legend(fontsize=7)
    s = summary(d)
    ax = axes[0, 3]
    for unit, marker in zip(UNITS, "osd", strict=True):
        for rule, ls in (("bp", "--"), ("rbp", "-")):
            rates = [s[unit, rule, m]["rate"] for m in widths]
            ax.plot(
                widths, rates, ls, marker=marker, label=f"{'BP' if rule == 'bp' else 'FA'} {unit}"
            )
    for unit, color in (("relu", "tab:orange"), ("tanh", "tab:green")):
        ax.axhline(
            float(d[f"kernel_rate_{unit}"]),
            color=color,
            ls=":",
            lw=1,
            label=f"2λ_min(G∞)/n, {unit}",
        )
    ax.axvline(N_POINTS, color="k", ls=":", lw=1, label=f"m = n = {N_POINTS}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width m")
    ax.set_ylabel("fitted rate −d ln(loss − floor)/dt")
    ax.set_title("rate vs width (seed mean)", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[1, 3]
    lams = [float(v) for v in d["lambdas"]]
    a_widths = [int(m) for m in d["a_widths"]]
    lam_colors = plt.cm.plasma(np.linspace(0, 0.8, len(lams)))
    for lam, c in zip(lams, lam_colors, strict=True):
        for m, ls in zip(a_widths, (":", "--", "-"), strict=False):
            cos = d[f"align_{m}_{lam:g}"]
            it = np.arange(len(cos)) * 20
            finite = np.isfinite(cos).all(axis=1)
            label = f"λ = {lam:g}, m = {m}"
            if not finite.all():
                stop = int(np.argmin(finite))
                ax.plot(it[stop - 1], cos[stop - 1].mean(), "x", color=c, ms=8)
                label += f" (diverged at {it[stop]})"
            ax.plot(it[finite], cos[finite].mean(1), ls, color=c, label=label)
            if m == max(a_widths):
                ax.fill_between(it, cos.min(1), cos.max(1), color=c, alpha=0.15)
    ax.set_ylim(-0.1, 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("cos(v, b)")
    ax.set_title("ReLU FA: alignment vs λ (band: range at the widest)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    fig.suptitle(
        f"Song, Xu & Lafferty: f = m^(-1/2) Σ v_r σ(w_r·x), n = {N_POINTS}, d = {DIM}, "
        f"{int(d['seeds'])} seeds"
    )
    fig.tight_layout()
    fig.savefig(out / "overparam.png", dpi=100)
    plt.close(fig)


def write_results(out: Path, d: dict) -> None:
    """results.csv: per unit, rule, width and seed: end loss, relative excess, rate, cos(v, b);
    then the alignment runs' end cos(v, b) and loss per width, λ and seed."""
    lines = ["part,unit,rule,m,lambda,seed,end_loss,rel_excess,rate,cos_vb"]
    for unit in UNITS:
        fl = float(d[f"floor_{unit}"])
        for rule in RULES:
            for m in d["widths"]:
                loss = d[f"loss_{unit}_{rule}_{m}"]
                rate = fitted_rate(loss, fl)
                cos = d[f"cos_{unit}_{rule}_{m}"]
                for s in range(loss.shape[1]):
                    rel = (loss[-1, s] - fl) / (loss[0, s] - fl)
                    lines.append(
                        f"width,{unit},{rule},{m},0,{s},{loss[-1, s]:.6g},{rel:.6g},"
                        f"{rate[s]:.6g},{cos[s]:.6g}"
                    )
    for m in d["a_widths"]:
        for lam in d["lambdas"]:
            cos, loss = d[f"align_{m}_{lam:g}"][-1], d[f"align_loss_{m}_{lam:g}"]
            for s in range(len(cos)):
                lines.append(f"align,relu,rbp,{m},{lam:g},{s},{loss[s]:.6g},,,{cos[s]:.6g}")
    atomic_write_text(out / "results.csv", "\n".join(lines) + "\n")


@script
def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, "results/song2021_overparam").parse_args(argv)
    out = check_out(out_folder(args))
    if args.plot_only:
        if not (out / "overparam.npz").is_file():
            raise C.ConfigError(
                "--out", str(out), "holds no overparam.npz; run without --plot-only"
            )
        with np.load(out / "overparam.npz") as z:
            d = dict(z)
    else:
        net = network(4, "relu", "rbp", 1, args.set)  # a bad --set fails here, before any work
        d = measure(args.quick, args.seeds, args.set)
        np.savez_compressed(out / "overparam.npz", **d)
        atomic_write_text(
            out / "config.json",
            dump_json(
                {
                    "model": C.to_dict(net.model),
                    "channel": C.to_dict(net.channel.cfg),
                    "n_points": N_POINTS,
                    "dim": DIM,
                    "eta": ETA,
                    "steps": int(d["steps"]),
                    "seeds": int(d["seeds"]),
                    "widths": [int(m) for m in d["widths"]],
                    "align_widths": [int(m) for m in d["a_widths"]],
                    "lambdas": [float(v) for v in d["lambdas"]],
                    "align_steps": int(d["a_steps"]),
                    "quick": args.quick,
                }
            ),
        )
        write_results(out, d)
    figures(d, out)
    text = claims_table(verdicts(d))
    atomic_write_text(
        out / "table.md",
        "# Song, Xu & Lafferty 2021: convergence and alignment of FA, two-layer nets\n\n" + text,
    )
    print(text)
    return EXIT_DIVERGED if diverged(d) else 0


if __name__ == "__main__":
    sys.exit(main())
