"""Baldi, Sadowski & Lu (2018), §7.2, Theorem 2 and Figure 11: the vector field of the linear
chain A[1,1,1] under RBP, with c₁ = 1, α = 1, β = 1 as the figure.

The field is :func:`lpfa.dynamics.flow.field` on lpfa's own 1-1-1 linear network (RBP,
feedback c₁, design with E[I²] = β, E[IT] = α), arrows coloured by dP/dt (P = a₁a₂) as the
paper's. Overlaid: conserved parabolas a₂ = a₁²/(2c₁) + C (eq. 30), the critical hyperbolas
a₁a₂ = α/β with their unstable part (inside the parabola a₂ = −a₁²/c₁, eq. 28 and 33) dashed,
the fixed points predicted by the cubic of eq. 31 (squares) and where the ODE trajectories end
(crosses). The paper states, and lpfa measures on the ODE:

- Theorem 2: every start converges to a fixed point on the hyperbolas; the end point is the root
  of the cubic; the parabola of eq. 30 is conserved;
- eq. 24: dP/dt = (a₁² + c₁a₂)(α − βP);
- eq. 33: linearised, a critical point has the non-zero eigenvalue −β(c₁a₂ + a₁²) (unstable
  where negative) — measured as the trace of the field's Jacobian by central differences;
- the caption: reversing α reflects the field across the a₂-axis; reversing c₁ across both.

The paper gives no numbers; the bars are solver and rounding tolerances (stated in the table).

Runtime: ~3 s of CPU on 1 core, ~5 s wall on 2 busy cores (41 × 41 field, 13 × 13 starts);
``--quick`` ~2 s of CPU. The expected dynamics of a 1-1-1 net run on numpy.

    python experiments/baldi2018_fig11_flow.py [--quick] [--out DIR] [--plot-only]
"""

import sys
from pathlib import Path

import numpy as np

from lpfa import config as C
from lpfa.dynamics import linear_config, moment_design
from lpfa.dynamics.chains import (
    a111_fixed_point,
    a111_parabola_constant,
    a111_rhs,
    a111_unstable,
)
from lpfa.dynamics.flow import field, plot_flow, trajectories
from lpfa.experiment import out_folder, parser, script
from lpfa.runfiles import atomic_write_text, check_out, dump_json

C1, ALPHA, BETA = 1.0, 1.0, 1.0  # Fig. 11
PAIR, FB = ("W1[0,0]", "W2[0,0]"), "C2_1[0,0]"
SPAN, T_END = 3.0, 80.0
TOL = 1e-6  # ODE ends vs closed forms: solve_ivp at rtol 1e-9 over t = 80


def network(overrides: list[str]) -> C.RunConfig:
    """lpfa's 1-1-1 linear RBP network (``--set`` applied)."""
    return linear_config((1, 1, 1), "rbp", overrides=overrides)


def rate(cfg, xs, ys, *, c1=C1, alpha=ALPHA, beta=BETA):
    """lpfa's field (U, V) (len(ys), len(xs)) of (a₁, a₂) for feedback c₁ and design α, β."""
    return field(cfg, *moment_design(beta, alpha), PAIR, (xs, ys), fixed={FB: c1})


def measure(cfg: C.RunConfig, quick: bool) -> dict:
    grid = np.linspace(-SPAN, SPAN, 21 if quick else 41)
    U, V = rate(cfg, grid, grid)
    # the caption's reflections: α → −α and c₁ → −c₁
    Ua, Va = rate(cfg, grid, grid, alpha=-ALPHA)
    Uc, Vc = rate(cfg, grid, grid, c1=-C1)
    side = np.linspace(-2.9, 2.9, 7 if quick else 13)
    starts = np.stack(np.meshgrid(side, side), -1).reshape(-1, 2)
    p = trajectories(
        cfg, *moment_design(BETA, ALPHA), PAIR, starts, T_END, fixed={FB: C1}, n_points=1200
    )
    # the Jacobian's trace at points of both hyperbolas, by central differences of lpfa's field
    a1 = np.concatenate([-np.geomspace(0.4, 2.5, 9), np.geomspace(0.4, 2.5, 9)])
    a2 = ALPHA / BETA / a1
    h = 1e-5
    trace = np.empty_like(a1)
    for k, (x, y) in enumerate(zip(a1, a2, strict=True)):
        Ux, _ = rate(cfg, [x - h, x + h], [y])
        _, Vy = rate(cfg, [x], [y - h, y + h])
        trace[k] = (Ux[0, 1] - Ux[0, 0]) / (2 * h) + (Vy[1, 0] - Vy[0, 0]) / (2 * h)
    return {
        "grid": grid,
        "U": U,
        "V": V,
        "Ua": Ua,
        "Va": Va,
        "Uc": Uc,
        "Vc": Vc,
        "starts": starts,
        "t": p.t,
        "px": p.x,
        "py": p.y,
        "crit_a1": a1,
        "crit_a2": a2,
        "trace": trace,
    }


def verdicts(d: dict) -> list[tuple[str, str, str, bool]]:
    grid, U, V = d["grid"], d["U"], d["V"]
    gx, gy = np.meshgrid(grid, grid)
    u, v = a111_rhs(gx, gy, c1=C1, alpha=ALPHA, beta=BETA)
    eq23 = max(np.abs(U - u).max(), np.abs(V - v).max())
    dP = gy * U + gx * V  # d(a₁a₂)/dt from lpfa's field
    eq24 = np.abs(dP - (gx**2 + C1 * gy) * (ALPHA - BETA * gx * gy)).max()
    s, px, py = d["starts"], d["px"], d["py"]
    # starts within 0.01 of the parabola through the double root a₁ = −(c₁α/β)^{1/3} (eq. 31's
    # double root) approach their fixed point slowly (algebraically on it): counted apart
    r = -((C1 * ALPHA / BETA) ** (1 / 3))
    c_double = a111_parabola_constant(r, ALPHA / BETA / r, c1=C1)
    slow = np.abs(a111_parabola_constant(s[:, 0], s[:, 1], c1=C1) - c_double) < 0.01
    fast = ~slow
    gap = np.abs(px[-1, fast] * py[-1, fast] - ALPHA / BETA).max()
    k = a111_parabola_constant(px, py, c1=C1)
    drift = np.abs(k - k[0]).max()
    f1, f2 = a111_fixed_point(s[:, 0], s[:, 1], c1=C1, alpha=ALPHA, beta=BETA)
    miss = np.hypot(px[-1] - f1, py[-1] - f2)
    cubic = miss[fast].max()
    apart = (
        f"; {slow.sum()} starts within 0.01 of the double root's parabola apart: "
        f"{miss[slow].max():.1e}"
        if slow.any()
        else ""
    )
    unstable = int(a111_unstable(px[-1], py[-1], c1=C1).sum())
    a1, a2 = d["crit_a1"], d["crit_a2"]
    lam = -BETA * (C1 * a2 + a1**2)
    eq33 = np.abs(d["trace"] - lam).max()
    signs = int(np.sum(np.sign(d["trace"]) == np.sign(lam)))
    n_unstable = int(np.sum(lam > 0))
    flip_a = max(np.abs(d["Ua"] + U[:, ::-1]).max(), np.abs(d["Va"] - V[:, ::-1]).max())
    flip_c = max(np.abs(d["Uc"] + U[::-1, ::-1]).max(), np.abs(d["Vc"] + V[::-1, ::-1]).max())
    return [
        (
            "eq. 23: da₁/dt = c₁(α − βa₁a₂), da₂/dt = a₁(α − βa₁a₂)",
            f"max abs(lpfa field − eq. 23) on the {len(grid)}² grid (bar: 1e-12, rounding)",
            f"{eq23:.1e}",
            eq23 < 1e-12,
        ),
        (
            "eq. 24: dP/dt = (a₁² + c₁a₂)(α − βP) (the arrows' colour)",
            "max abs(a₂U + a₁V − eq. 24) on the grid (bar: 1e-12)",
            f"{eq24:.1e}",
            eq24 < 1e-12,
        ),
        (
            "Thm 2: every start converges to a fixed point on a₁a₂ = α/β",
            f"max abs(a₁a₂ − α/β) at t = {T_END:g} over {fast.sum()} of {len(s)} starts "
            f"(bar: {TOL:g}){apart.split(':')[0]}",
            f"{gap:.1e}",
            gap < TOL,
        ),
        (
            "eq. 30: a₂ − a₁²/(2c₁) is constant along each trajectory",
            f"max drift along the {len(s)} trajectories (bar: {TOL:g})",
            f"{drift:.1e}",
            drift < TOL,
        ),
        (
            "eq. 31: the end point is the root of the cubic (the one in the flow's direction)",
            f"max distance ODE end ↔ cubic root, the same starts (bar: {TOL:g}){apart}",
            f"{cubic:.1e}",
            cubic < TOL,
        ),
        (
            "eq. 33: the critical points with c₁a₂ + a₁² < 0 are unstable, none is reached",
            f"trajectories ending there, of {len(s)}",
            f"{unstable}",
            unstable == 0,
        ),
        (
            "eq. 33: the linearised rate is −β(c₁a₂ + a₁²)",
            f"max abs(trace of lpfa's Jacobian − eq. 33) at {len(a1)} critical points "
            f"({n_unstable} unstable; sign agrees at {signs}; bar: 1e-6, central differences)",
            f"{eq33:.1e}",
            eq33 < 1e-6 and signs == len(a1) and n_unstable > 0,
        ),
        (
            "caption: reversing α reflects the field across the a₂-axis",
            "max abs(field(−α) − reflected field(α))",
            f"{flip_a:.1e}",
            flip_a < 1e-12,
        ),
        (
            "caption: reversing c₁ reflects the field across both axes",
            "max abs(field(−c₁) − reflected field(c₁))",
            f"{flip_c:.1e}",
            flip_c < 1e-12,
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

    grid, U, V = d["grid"], d["U"], d["V"]
    gx, gy = np.meshgrid(grid, grid)
    dP = gy * U + gx * V
    fig, ax = plt.subplots(figsize=(6.4, 7.2))
    manifold = []
    for sign in (1.0, -1.0):
        a1 = sign * np.geomspace(ALPHA / BETA / SPAN, SPAN, 600)
        a2 = ALPHA / BETA / a1
        manifold.append((a1, a2, ~a111_unstable(a1, a2, c1=C1)))
    a = np.linspace(-SPAN, SPAN, 300)
    curves = [(a, -(a**2) / C1, "a₂ = −a₁²/c₁ (eq. 28: dP/dt = 0)")]
    for const in (-2.5, -1.5, -0.5, 0.5, 1.5):
        curves.append((a, a**2 / (2 * C1) + const, None))
    curves[1] = (a, a**2 / (2 * C1) - 2.5, "conserved parabolas (eq. 30)")
    plot_flow(
        ax,
        grid,
        grid,
        U,
        V,
        kind="quiver",
        color=np.sign(dP) * np.log1p(np.abs(dP)),
        cmap="coolwarm",
        manifold=manifold,
    )
    for cx, cy, label in curves:
        style = ":" if label and "28" in label else "-"
        ax.plot(
            cx,
            cy,
            style,
            color="tab:green",
            lw=1.0 if style == "-" else 1.6,
            alpha=0.5 if style == "-" else 1.0,
            label=label,
        )
    s, px, py = d["starts"], d["px"], d["py"]
    f1, f2 = a111_fixed_point(s[:, 0], s[:, 1], c1=C1, alpha=ALPHA, beta=BETA)
    pick = np.arange(0, len(s), max(1, len(s) // 14))
    ax.plot(px[:, pick], py[:, pick], color="tab:blue", lw=1.0)
    ax.plot(px[0, pick], py[0, pick], "o", color="tab:blue", ms=3)
    ax.plot(f1, f2, "s", mfc="none", mec="k", ms=7, label="cubic root (eq. 31)")
    ax.plot(px[-1], py[-1], "x", color="tab:orange", ms=5, label="ODE end, t = 80")
    ax.set_xlim(-SPAN, SPAN)
    ax.set_ylim(-SPAN, SPAN)
    ax.set_xlabel("a₁")
    ax.set_ylabel("a₂")
    ax.set_title(
        "Baldi et al. 2018 Fig. 11: A[1,1,1], RBP, c₁ = α = β = 1\n"
        "lpfa's expected dynamics; arrows coloured by dP/dt (red > 0)",
        fontsize=10,
    )
    fig.legend(loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(out: Path, d: dict) -> None:
    """results.csv: every start, its ODE end and the cubic's root."""
    s, px, py = d["starts"], d["px"], d["py"]
    f1, f2 = a111_fixed_point(s[:, 0], s[:, 1], c1=C1, alpha=ALPHA, beta=BETA)
    lines = ["start_a1,start_a2,end_a1,end_a2,cubic_a1,cubic_a2"]
    lines += [
        ",".join(f"{v:.10g}" for v in row)
        for row in zip(s[:, 0], s[:, 1], px[-1], py[-1], f1, f2, strict=True)
    ]
    atomic_write_text(out / "results.csv", "\n".join(lines) + "\n")


@script
def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, "results/baldi2018_fig11_flow").parse_args(argv)
    out = check_out(out_folder(args))
    cfg = network(args.set)
    if args.plot_only:
        if not (out / "flow.npz").is_file():
            raise C.ConfigError("--out", str(out), "holds no flow.npz; run without --plot-only")
        with np.load(out / "flow.npz") as z:
            d = dict(z)
    else:
        d = measure(cfg, args.quick)
        np.savez_compressed(out / "flow.npz", **d)
        config = {
            "network": C.to_dict(cfg),
            "c1": C1,
            "alpha": ALPHA,
            "beta": BETA,
            "t_end": T_END,
            "quick": args.quick,
            "grid": len(d["grid"]),
            "starts": len(d["starts"]),
        }
        atomic_write_text(out / "config.json", dump_json(config))
        write_results(out, d)
    figure(d, out / "flow.png")
    text = table(verdicts(d))
    atomic_write_text(
        out / "table.md", "# Baldi et al. 2018, Fig. 11 / Theorem 2 (A[1,1,1] under RBP)\n\n" + text
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
