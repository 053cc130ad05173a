"""Lillicrap et al. (2016), Figure 3: the flow field of the three-neuron linear network under
feedback alignment, from the expected dynamics.

The network is lpfa's own 1-1-1 linear network (x → W₀x → W W₀x), trained by FA (RBP) with the
feedback B = 1 on y* = T x with T = 1 and E[x²] = 1 (Baldi et al.'s α = β = c₁ = 1: his Fig. 11
is the same field). The field is :func:`lpfa.dynamics.flow.field` — ExpectedDynamics on a grid of
(W₀, W) as one ensemble, as the paper's Methods did ("we computed the *expected* updates").
The paper states (Fig. 3b and text): the system moves along parabolic paths; the solutions are
the hyperbola W₀W = T = 1; its upper-right branch (W > 0, so eᵀWBe > 0) is stable; part of the
lower-left branch (eᵀWBe < 0) is stable and part unstable (inside W = −W₀²/B, Baldi et al.
eq. 33); a small region of weight space flows to the bad branch, "simply avoided by starting
near 0"; the trajectory from W₀ = W = 0 ends on the good branch. It gives no numbers. lpfa
measures each on the ODE (starts near 0: many uniform in [−0.1, 0.1]²; the bad region: ends of
a grid of starts over the plotted square) and follows the origin's path with simulated minibatch
training (η = 0.01, one example per step) for comparison.

Runtime: ~11 s of CPU on 1 core, ~20 s wall on 2 busy cores (41 × 41 field, 1 000 starts near
0, 81 × 81 starts for the basin, 5 simulated runs); ``--quick`` ~4 s of CPU. The expected
dynamics of a 1-1-1 net run on numpy.

    python experiments/lillicrap2016_fig3_flow.py [--quick] [--seeds N] [--out DIR] [--plot-only]
"""

import sys
from pathlib import Path

import numpy as np

from lpfa import config as C
from lpfa.dynamics import linear_config, moment_design
from lpfa.dynamics.chains import a111_fixed_point, a111_parabola_constant, a111_unstable
from lpfa.dynamics.flow import field, gaussian_sampler, plot_flow, simulate, trajectories
from lpfa.experiment import out_folder, parser, script
from lpfa.runfiles import atomic_write_text, check_out, dump_json

B = T = SXX = 1.0  # feedback, target map, E[x²]
ALPHA, BETA = T * SXX, SXX  # Baldi's α = E[x y*], β = E[x²]
PAIR = ("W1[0,0]", "W2[0,0]")  # (W₀, W)
FEEDBACK = (
    "C2_1[0,0]"  # B, set to 1 (a rule without feedback, e.g. --set channel.rule=bp, has none)
)
SPAN, T_END = 3.0, 60.0
ON = 1e-6  # "on the hyperbola": |W₀W − 1| at t = 60, far above the solver's 1e-9


def network(overrides: list[str]) -> C.RunConfig:
    """The 1-1-1 linear FA network (``--set`` applied)."""
    return linear_config((1, 1, 1), "rbp", overrides=overrides)


def measure(cfg: C.RunConfig, quick: bool, seeds: int | None) -> dict:
    """Field, paths and ends: every array the figure and the table need."""
    X, Y = moment_design(SXX, T * SXX)
    fixed = {FEEDBACK: B} if cfg.channel.rule.has_random_feedback else {}
    grid = np.linspace(-SPAN, SPAN, 21 if quick else 41)
    U, V = field(cfg, X, Y, PAIR, (grid, grid), fixed=fixed)
    rng = np.random.default_rng(0)
    near = np.vstack([[0.0, 0.0], rng.uniform(-0.1, 0.1, (100 if quick else 1000, 2))])
    ends_near = trajectories(cfg, X, Y, PAIR, near, T_END, fixed=fixed, n_points=2)
    basin = np.linspace(-SPAN, SPAN, 21 if quick else 81)
    wide = np.stack(np.meshgrid(basin, basin), -1).reshape(-1, 2)
    ends_wide = trajectories(cfg, X, Y, PAIR, wide, T_END, fixed=fixed, n_points=2)
    show = np.array([[0.0, 0.0], [-2.5, 0.5], [0.5, -2.5], [-1.5, -2.8], [2.5, -1.0], [-2.8, 2.0]])
    paths = trajectories(cfg, X, Y, PAIR, show, 20.0, fixed=fixed, n_points=400)
    sims = [
        simulate(
            cfg,
            gaussian_sampler(SXX, T * SXX),
            PAIR,
            [[0.0, 0.0]],
            20.0,
            lr=0.01,
            fixed=fixed,
            n_points=400,
            seed=s,
        )
        for s in range(seeds or (2 if quick else 5))
    ]
    return {
        "grid": grid,
        "U": U,
        "V": V,
        "near": near,
        "near_end": np.stack([ends_near.x[-1], ends_near.y[-1]], 1),
        "basin": basin,
        "wide": wide,
        "wide_end": np.stack([ends_wide.x[-1], ends_wide.y[-1]], 1),
        "paths_x": paths.x,
        "paths_y": paths.y,
        "sim_x": np.concatenate([s.x for s in sims], 1),
        "sim_y": np.concatenate([s.y for s in sims], 1),
        "ode_x": paths.x[:, 0],
        "ode_y": paths.y[:, 0],
    }


def verdicts(d: dict) -> list[tuple[str, str, str, bool]]:
    """(paper states, quantity, measured, holds) per claim."""
    a, b = d["near_end"][:, 0], d["near_end"][:, 1]
    good = (b > 0) & (np.abs(a * b - ALPHA / BETA) < ON)
    ow, starts = d["wide_end"], d["wide"]
    # starts on (or within 0.01 of) the parabola through the double root a₁ = −(Bα/β)^{1/3}
    # approach it algebraically, not exponentially (Baldi et al. §7.2): counted apart
    w0 = -((B * ALPHA / BETA) ** (1 / 3))
    c_double = a111_parabola_constant(w0, ALPHA / BETA / w0, c1=B)
    slow = np.abs(a111_parabola_constant(*starts.T, c1=B) - c_double) < 0.01
    on = np.abs(ow[:, 0] * ow[:, 1] - ALPHA / BETA) < ON
    bad = (ow[:, 1] < 0) & (on | slow)
    start_bad = starts[bad]
    cubic = np.stack(a111_fixed_point(*starts.T, c1=B, alpha=ALPHA, beta=BETA), 1)
    miss = np.hypot(*(ow - cubic).T)
    drift = a111_parabola_constant(d["paths_x"], d["paths_y"], c1=B)
    drift = np.abs(drift - drift[0]).max()
    unstable_ends = int(a111_unstable(ow[:, 0], ow[:, 1], c1=B).sum())
    sim_end = np.stack([d["sim_x"][-1], d["sim_y"][-1]], 1)
    sim_good = (sim_end[:, 1] > 0) & (np.abs(sim_end.prod(1) - 1) < 1e-3)
    origin = d["near_end"][0]
    o_good = origin[1] > 0 and abs(origin.prod() - 1) < ON
    dist = np.hypot(*(sim_end - [d["ode_x"][-1], d["ode_y"][-1]]).T)
    near_zero = np.hypot(*start_bad.T).min() if len(start_bad) else np.inf
    return [
        (
            "from W₀ = W = 0 it goes to the hyperbola where eᵀWBe > 0 (Fig. 3b, large arrow)",
            "ODE end (W₀, W) at t = 60",
            f"({origin[0]:.4f}, {origin[1]:.4f})",
            bool(o_good),
        ),
        (
            "trajectories from near 0 reach the hyperbola where eᵀWBe > 0",
            f"fraction of {len(a)} starts in [−0.1, 0.1]² ending on W₀W = 1 with W > 0",
            f"{good.mean():.1%}",
            bool(good.all()),
        ),
        (
            "a small region flows to the bad hyperbola (eᵀWBe < 0), avoided by starting near 0",
            f"fraction of {len(ow)} grid starts on [−3, 3]² ending there (holds: a minority, "
            f"none in the near-0 box; closest to 0: {near_zero:.2f})",
            f"{bad.mean():.1%}",
            bool(0 < bad.mean() < 0.5 and near_zero > 0.1 * np.sqrt(2)),
        ),
        (
            "every start ends on the solution manifold W₀W = T",
            f"fraction of the {len(ow) - slow.sum()} grid starts not within 0.01 of the double "
            "root's parabola "
            f"with abs(W₀W − 1) < {ON:g} at t = 60 ({slow.sum()} near it: ends within "
            f"{miss[slow].max() if slow.any() else 0:.3f} of their cubic root, a double root "
            "being reached slowly)",
            f"{on[~slow].mean():.1%}",
            bool(on[~slow].all()),
        ),
        (
            "the system moves along parabolic paths (2BW − W₀² constant, eq. 14 in 1-D)",
            "max change of W − W₀²/(2B) along the drawn paths",
            f"{drift:.1e}",
            bool(drift < 1e-6),
        ),
        (
            "part of the bad hyperbola is unstable (dashed): no path ends there",
            "grid starts ending where BW + W₀² < 0",
            f"{unstable_ends}",
            unstable_ends == 0,
        ),
        (
            "(lpfa) the end of each path is Baldi et al.'s cubic root (eq. 31)",
            "max distance ODE end ↔ root, the same starts",
            f"{miss[~slow].max():.1e}",
            bool(miss[~slow].max() < 1e-4),
        ),
        (
            "(lpfa) simulated training from 0 (η = 0.01, 1 example/step) reaches the good branch",
            f"fraction of {len(sim_end)} seeds; mean distance to the ODE's end {dist.mean():.3f}",
            f"{sim_good.mean():.1%}",
            bool(sim_good.all()),
        ),
    ]


def table(rows) -> str:
    lines = [
        "| paper states | quantity | lpfa measured | holds |",
        "|---|---|---|---|",
        *(f"| {a} | {q} | {m} | {'yes' if ok else '**no**'} |" for a, q, m, ok in rows),
    ]
    return "\n".join(lines) + "\n"


def figure(d: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 7.2))
    manifold = []
    for sign in (1.0, -1.0):
        w0 = sign * np.geomspace(ALPHA / BETA / SPAN, SPAN, 600)
        w = ALPHA / BETA / w0
        manifold.append((w0, w, ~a111_unstable(w0, w, c1=B)))
    a = np.linspace(-SPAN, SPAN, 200)
    ow = d["wide_end"].reshape(len(d["basin"]), len(d["basin"]), 2)
    bad = ow[..., 1] < 0
    plot_flow(
        ax,
        d["grid"],
        d["grid"],
        d["U"],
        d["V"],
        paths=(d["paths_x"][:, 1:], d["paths_y"][:, 1:]),
        manifold=manifold,
        curves=[(a, -(a**2) / B, "W = −W₀²/B (stability boundary)")],
    )
    ax.contourf(
        d["basin"], d["basin"], bad.astype(float), levels=[0.5, 1.5], colors=["0.8"], alpha=0.6
    )
    ax.fill_between([], [], color="0.8", label="flows to eᵀWBe < 0 (ODE ends)")
    ax.plot(
        d["ode_x"], d["ode_y"], color="tab:purple", lw=5, alpha=0.45, label="from W₀ = W = 0 (ODE)"
    )
    ax.plot(d["sim_x"], d["sim_y"], color="tab:orange", lw=1.0)
    ax.plot([], [], color="tab:orange", lw=0.8, label="from 0, simulated training (η = 0.01)")
    ax.text(1.6, 2.3, "eᵀWBe > 0", fontsize=8)
    ax.text(-2.9, -0.8, "eᵀWBe < 0", fontsize=8)
    ax.set_xlabel("W₀ (input → hidden)")
    ax.set_ylabel("W (hidden → output)")
    ax.set_title(
        "Lillicrap et al. 2016 Fig. 3b: 1-1-1 linear FA, B = 1, T = 1\nexpected dynamics (lpfa)",
        fontsize=10,
    )
    fig.legend(loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(out: Path, d: dict) -> None:
    """results.csv: every start with its ODE end (and the simulated runs' ends)."""
    lines = ["set,start_w0,start_w,end_w0,end_w"]
    for name, s, e in (("near", d["near"], d["near_end"]), ("grid", d["wide"], d["wide_end"])):
        lines += [
            f"{name},{a:.6g},{b:.6g},{c:.10g},{f:.10g}" for (a, b), (c, f) in zip(s, e, strict=True)
        ]
    lines += [
        f"simulated,0,0,{x:.10g},{y:.10g}"
        for x, y in zip(d["sim_x"][-1], d["sim_y"][-1], strict=True)
    ]
    atomic_write_text(out / "results.csv", "\n".join(lines) + "\n")


@script
def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, "results/lillicrap2016_fig3_flow").parse_args(argv)
    out = check_out(out_folder(args))
    cfg = network(args.set)
    if args.plot_only:
        if not (out / "flow.npz").is_file():
            raise C.ConfigError("--out", str(out), "holds no flow.npz; run without --plot-only")
        with np.load(out / "flow.npz") as z:
            d = dict(z)
    else:
        d = measure(cfg, args.quick, args.seeds)
        np.savez_compressed(out / "flow.npz", **d)
        atomic_write_text(
            out / "config.json",
            dump_json(
                {
                    "network": C.to_dict(cfg),
                    "B": B,
                    "T": T,
                    "E[x^2]": SXX,
                    "t_end": T_END,
                    "quick": args.quick,
                    "field_grid": len(d["grid"]),
                    "near_starts": len(d["near"]),
                    "grid_starts": len(d["wide"]),
                    "simulated_seeds": d["sim_x"].shape[1],
                }
            ),
        )
        write_results(out, d)
    figure(d, out / "flow.png")
    text = table(verdicts(d))
    atomic_write_text(
        out / "table.md", "# Lillicrap et al. 2016, Fig. 3 (1-1-1 flow field)\n\n" + text
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
