"""Garg & Vempala (2022), "How and When Random Feedback Works: A Case Study of Low-Rank Matrix
Factorization": feedback alignment against gradient descent on Y ≈ Z W.

The source is a set of slides; its claims, with no numbers: (a) a convergence analysis "shedding
light on the alignment dynamics and how they facilitate convergence (for a variant of feedback
alignment)"; (b) "FA suboptimal in certain regimes" — a provable separation from GD; (c) "the
representations (matrix Z) found by FA and GD can be almost orthogonal even when their errors
‖Y − ZW‖²_F are approximately equal". The slides also say the results hold for a two-layer
linear network with isotropic input and a linear target.

Design (lpfa's, where the slides are silent). The task is lpfa's ``lowrank`` data set: Y (n × n)
of rank k = n/2 (part (c): k = n) with flat (σ_i = 1) or decaying (σ_i = 1/i) singular values,
Haar-random singular vectors (:func:`lpfa.data.lowrank_target`). The network is lpfa's linear
n-r-n net: W = W¹ (r × n), Z = W² (n × r). With x ~ N(0, I) and t = Y x the mean loss
E[½‖t − ZWx‖²] = ½‖Y − ZW‖²_F, so full-batch gradient descent on the moment design
(:func:`lpfa.dynamics.moment_design` with Σ_xx = I, Σ_tx = Y, through
:class:`lpfa.dynamics.ExpectedDynamics`) *is* GD on the factorization, η = 0.1 per iteration.
GD = ``rule = "bp"``; FA = ``rule = "rbp"``: W learns through a fixed random C (n × r, lpfa's
Glorot-normal feedback) in place of Z, Z follows its gradient. Both start from the same
weights (forward weights come from the member seed whatever the rule). The biases of lpfa's
arrays stay exactly 0 here (the design has mean 0 and the targets no offset, so their
gradients vanish), so the net is the bias-free factorization. Plain FA is run, not the slides'
variant of it. Errors are ‖Y − ZW‖²_F relative to ‖Y‖²_F; the Eckart-Young optimum is
Σ_{i>r} σ_i². lpfa also derives FA's end point: at a fixed point Cᵀ(Y − ZW) = 0 and
(Y − ZW)Wᵀ = 0, so col(Z) = col(Y Yᵀ C) and ZW = Π Y with Π = M (CᵀM)⁻¹ Cᵀ, M = Y Yᵀ C (an
oblique projection); it is compared with the runs.

Measured: (a) n = 32, r = 4, full-rank Y: error vs iteration for GD and FA with the optimum and
the predicted FA end, and the angle between Z and C (vec) over training; (b) the map of FA's
excess error over GD's over r/k ∈ {1/8, 1/4, 1/2, 1, 2}, n ∈ {16, 32, 64}, both spectra;
(c) n = 64, r = 2, full rank: per seed, the error ratio FA/GD and the similarity of col(Z_FA)
and col(Z_GD) as the subspace overlap (mean cos² of the principal angles; 1 = same space, chance
r/n for random subspaces) and linear CKA. 10 seeds throughout (``--seeds``).

Runtime: ~70 s of CPU on 1 core, ~1.5 min wall on 2 busy cores (full); ``--quick`` (n = 16
map, 3 seeds, 1 500 iterations) ~4 s.

    python experiments/garg2022_lowrank.py [--quick] [--seeds N] [--out DIR] [--plot-only]
"""

import sys
from pathlib import Path

import numpy as np

from lpfa import config as C
from lpfa.data import lowrank_target
from lpfa.dynamics import ExpectedDynamics, linear_config, moment_design
from lpfa.dynamics.measures import alignment_deg, linear_cka, subspace_overlap
from lpfa.experiment import out_folder, parser, script
from lpfa.network import Network
from lpfa.report import claims_table
from lpfa.runfiles import atomic_write_text, check_out, dump_json

LR = 0.1  # η per full-batch iteration; stable for σ_1 = 1 under both rules
A_SETTING = {"n": 32, "r": 4, "k": 32}
C_SETTING = {"n": 64, "r": 2, "k": 64}
R_OVER_K = (0.125, 0.25, 0.5, 1.0, 2.0)
ZERO = 1e-12  # a relative optimum below this is an exact factorization (r ≥ rank Y)
SETTLED = 5.0  # GD has settled where (σ_r² − σ_{r+1}²) · η · iterations ≥ this (e^−5)
NEAR = 0.05  # "approximately equal" errors: |ratio − 1| ≤ 5 %
ORTHOGONAL = 0.1  # "almost orthogonal": mean cos² of the principal angles below 0.1


def factor_net(n: int, r: int, rule: str, seeds: int, overrides: list[str]) -> Network:
    """The linear n-r-n network W = W¹, Z = W² of ``rule`` (``--set`` applied), float64."""
    cfg = linear_config((n, r, n), rule, seeds=range(seeds), data="lowrank", overrides=overrides)
    return Network.build(cfg)


def target(n: int, k: int, spectrum: str) -> np.ndarray:
    """Y (n × n) of rank k from the ``lowrank`` task (data seed 0)."""
    return lowrank_target(C.DataConfig(name="lowrank", target_rank=k, spectrum=spectrum), n, n)


def eckart_young(Y: np.ndarray, r: int) -> float:
    """The best rank-r error min ‖Y − ZW‖²_F = Σ_{i>r} σ_i²."""
    return float((np.linalg.svd(Y, compute_uv=False)[r:] ** 2).sum())


def fa_fixed_point_error(Y: np.ndarray, C_fb: np.ndarray) -> np.ndarray:
    """‖Y − ΠY‖²_F at FA's fixed point, Π = M (CᵀM)⁻¹ Cᵀ, M = Y Yᵀ C, per member of C (E, n, r).

    NaN where CᵀM is singular (r > rank Y: the fixed point is then any exact factorization,
    error 0)."""
    out = []
    for c in C_fb:
        M = Y @ Y.T @ c
        G = c.T @ M
        if np.linalg.cond(G) > 1e12:
            out.append(np.nan)
            continue
        out.append(float(((Y - M @ np.linalg.solve(G, c.T @ Y)) ** 2).sum()))
    return np.array(out)


def train(Y: np.ndarray, r: int, seeds: int, steps: int, overrides, every: int = 0) -> dict:
    """GD and FA from the same start: final Z and errors, and every ``every`` iterations (if
    > 0) the error, the angle between Z and FA's feedback C, and the overlap of col Z with
    col(Y Yᵀ C), FA's fixed-point subspace (GD's Z is measured against the same C, which it
    never uses: the control)."""
    n = Y.shape[0]
    X, T = moment_design(np.eye(n), Y)
    nets = {rule: factor_net(n, r, rule, seeds, overrides) for rule in ("bp", "rbp")}
    feedback = np.array(nets["rbp"].channel.feedback[(2, 1)].C)
    same = all(
        np.array_equal(a.W, b.W) for a, b in zip(nets["bp"].layers, nets["rbp"].layers, strict=True)
    )
    fixed_space = Y @ Y.T @ feedback
    out: dict = {"C": feedback, "same_start": same}
    for rule, net in nets.items():
        ed = ExpectedDynamics(net, X, T)
        curve, angle, space = [], [], []
        for i in range(steps + 1):
            if every and i % every == 0:
                Z, W = np.array(net.layers[1].W), np.array(net.layers[0].W)
                curve.append(((Y - Z @ W) ** 2).sum(axis=(1, 2)))
                angle.append(alignment_deg(Z, feedback))
                space.append(subspace_overlap(Z, fixed_space))
            if i < steps:
                ed.step(LR)
        Z, W = np.array(net.layers[1].W), np.array(net.layers[0].W)
        out[rule] = {
            "Z": Z,
            "err": ((Y - Z @ W) ** 2).sum(axis=(1, 2)),
            "bias": max(float(np.abs(layer.b).max()) for layer in net.layers),
            "curve": np.array(curve),
            "angle": np.array(angle),
            "space": np.array(space),
        }
    return out


def measure(quick: bool, seeds: int | None, overrides: list[str]) -> dict:
    """Every number the figures and the table need, as flat arrays (saved as npz)."""
    seeds = seeds or (3 if quick else 10)
    steps = 1500 if quick else 4000
    d: dict[str, np.ndarray] = {"seeds": np.array(seeds), "steps": np.array(steps)}
    # (a) curves
    a = A_SETTING
    for spectrum in ("flat", "decaying"):
        Y = target(a["n"], a["k"], spectrum)
        res = train(Y, a["r"], seeds, steps, overrides, every=max(steps // 100, 1))
        norm = (Y**2).sum()
        key = f"a_{spectrum}"
        d[f"{key}_gd"] = res["bp"]["curve"] / norm
        d[f"{key}_fa"] = res["rbp"]["curve"] / norm
        d[f"{key}_angle_fa"] = res["rbp"]["angle"]
        d[f"{key}_angle_gd"] = res["bp"]["angle"]
        d[f"{key}_space_fa"] = res["rbp"]["space"]
        d[f"{key}_space_gd"] = res["bp"]["space"]
        d[f"{key}_opt"] = np.array(eckart_young(Y, a["r"]) / norm)
        d[f"{key}_pred"] = fa_fixed_point_error(Y, res["C"]) / norm
        d[f"{key}_bias"] = np.array(max(res["bp"]["bias"], res["rbp"]["bias"]))
        d[f"{key}_same_start"] = np.array(res["same_start"])
    # (b) map
    rows = []
    for spectrum in ("flat", "decaying"):
        for n in (16,) if quick else (16, 32, 64):
            k = n // 2
            for q in (0.25, 1.0) if quick else R_OVER_K:
                r = round(q * k)
                Y = target(n, k, spectrum)
                res = train(Y, r, seeds, steps, overrides)
                norm = (Y**2).sum()
                pred = fa_fixed_point_error(Y, res["C"]) if r < k else np.zeros(seeds)
                for s in range(seeds):
                    rows.append(
                        (
                            spectrum == "decaying",
                            n,
                            k,
                            r,
                            s,
                            res["bp"]["err"][s] / norm,
                            res["rbp"]["err"][s] / norm,
                            eckart_young(Y, r) / norm,
                            pred[s] / norm,
                        )
                    )
    d["map"] = np.array(rows, dtype=np.float64)
    # (c) similarity next to error
    c = C_SETTING
    for spectrum in ("flat", "decaying"):
        Y = target(c["n"], c["k"], spectrum)
        res = train(Y, c["r"], seeds, steps // 2 if spectrum == "flat" else steps, overrides)
        zf, zg = res["rbp"]["Z"], res["bp"]["Z"]
        d[f"c_{spectrum}"] = np.stack(
            [
                res["rbp"]["err"] / res["bp"]["err"],
                subspace_overlap(zf, zg),
                linear_cka(zf, zg),
                subspace_overlap(zf, res["C"]),
            ],
            axis=1,
        )
    return d


MAP_COLUMNS = ("decaying", "n", "k", "r", "seed", "gd", "fa", "opt", "pred")


def spectral_gap(spectrum: str, n: int, r: int) -> float:
    """σ_r² − σ_{r+1}² of the map's Y (rank n/2): GD's slowest rate near the optimum, ~ 1/time;
    inf where it is 0 (flat σ: every r-subspace of col Y is optimal) or r ≥ rank Y."""
    s = np.linalg.svd(target(n, n // 2, spectrum), compute_uv=False)
    gap = s[r - 1] ** 2 - s[r] ** 2 if r < n // 2 else 0.0
    return float(gap) if gap > 1e-9 else np.inf


def map_cells(d: dict) -> list[dict]:
    """The map's cells: seed means of the relative errors per (spectrum, n, r)."""
    m = d["map"]
    cells = []
    for key in sorted({tuple(row[[0, 1, 3]]) for row in m}):
        sel = m[(m[:, 0] == key[0]) & (m[:, 1] == key[1]) & (m[:, 3] == key[2])]
        col = dict(zip(MAP_COLUMNS, sel.T, strict=True))
        cells.append(
            {
                "spectrum": "decaying" if key[0] else "flat",
                "n": int(key[1]),
                "k": int(col["k"][0]),
                "r": int(key[2]),
                "gd": col["gd"].mean(),
                "fa": col["fa"].mean(),
                "opt": float(col["opt"][0]),
                "ratio": float(np.mean(col["fa"] / col["opt"])) if col["opt"][0] > ZERO else np.nan,
                "fa_gd": float(np.mean(col["fa"] / col["gd"])),
                "gd_opt": float(np.mean(col["gd"] / col["opt"]))
                if col["opt"][0] > ZERO
                else np.nan,
                "gap": spectral_gap("decaying" if key[0] else "flat", int(key[1]), int(key[2])),
                "excess": float(np.mean(col["fa"] - col["gd"])),
                "pred_miss": float(np.max(np.abs(col["fa"] - col["pred"]))),
            }
        )
    return cells


def verdicts(d: dict) -> list[tuple[str, str, str, str]]:
    """(source claims, quantity, measured, verdict) per claim."""
    rows = []
    cells = map_cells(d)
    a = d["a_decaying_fa"]
    angle = d["a_decaying_angle_fa"]
    start, end = angle[0].mean(), angle[-1].mean()
    gd_angle = float(np.mean(d["a_decaying_angle_gd"][-1]))
    space_fa = d["a_decaying_space_fa"]
    space_gd = float(d["a_decaying_space_gd"][-1].mean())
    fa_conv = float(np.max(np.abs(a[-1] - d["a_decaying_pred"])))
    rows.append(
        (
            "(a) alignment dynamics drive FA's convergence (for a variant of FA)",
            "plain FA, n = 32, r = 4, decaying σ: angle(Z, C) start → end (GD's Z against the "
            "same C); overlap of col Z with col(Y Yᵀ C) start → end (GD); max abs(FA end error − "
            "its fixed point's) / ‖Y‖²",
            f"{start:.0f}° → {end:.0f}° (GD {gd_angle:.0f}°); {space_fa[0].mean():.2f} → "
            f"{space_fa[-1].mean():.3f} (GD {space_gd:.2f}); {fa_conv:.1e}",
            "holds (plain FA)"
            if end < gd_angle - 5 and space_fa[-1].min() > 0.99 > space_gd and fa_conv < 1e-3
            else "does not hold",
        )
    )
    same = bool(d["a_flat_same_start"] and d["a_decaying_same_start"])
    bias = float(max(d["a_flat_bias"], d["a_decaying_bias"]))
    rows.append(
        (
            "(lpfa) GD and FA start from the same weights; the biases never move",
            "forward weights equal at the start (part a); max abs(bias) at the end",
            f"{'equal' if same else 'differ'}; {bias:.1e}",
            "holds" if same and bias < 1e-12 else "does not hold",
        )
    )
    t_end = LR * float(d["steps"])
    settled = [c for c in cells if c["r"] < c["k"] and c["gap"] * t_end >= SETTLED]
    slow = [c for c in cells if c["r"] < c["k"] and c["gap"] * t_end < SETTLED]
    gd_gap = max(abs(c["gd"] - c["opt"]) for c in settled)
    slow_txt = (
        f"; {len(slow)} cells with (σ_r² − σ_{{r+1}}²)·t < {SETTLED:g} still approaching: GD / "
        f"optimum up to {max(c['gd_opt'] for c in slow):.3f}"
        if slow
        else ""
    )
    rows.append(
        (
            "(lpfa) GD reaches the Eckart-Young optimum Σ_{i>r} σ_i²",
            f"max abs(GD error − optimum) / ‖Y‖²_F over the {len(settled)} map cells with r < k "
            f"where GD has had time to settle, (σ_r² − σ_{{r+1}}²)·t ≥ {SETTLED:g}, t = {t_end:g}",
            f"{gd_gap:.1e}{slow_txt}",
            "holds" if gd_gap < 1e-3 else "does not hold",
        )
    )
    dec = [c for c in cells if c["spectrum"] == "decaying" and c["r"] < c["k"]]
    worst = max(dec, key=lambda c: c["fa_gd"])
    rows.append(
        (
            "(b) FA is suboptimal in certain regimes (a separation from GD)",
            "decaying σ, r < rank Y: smallest and largest mean FA error / GD error over the map "
            f"(largest at n = {worst['n']}, r = {worst['r']}, k = {worst['k']}: FA / optimum)",
            f"{min(c['fa_gd'] for c in dec):.2f} – {worst['fa_gd']:.2f} × ({worst['ratio']:.2f} ×)",
            "holds: regime decaying σ, r < rank Y"
            if min(c["fa_gd"] for c in dec) > 1.2
            else "does not hold",
        )
    )
    flat = [c for c in cells if c["spectrum"] == "flat" and c["r"] < c["k"]]
    flat_worst = max(c["ratio"] for c in flat)
    closed = max(max(c["fa"], c["gd"]) for c in cells if c["r"] >= c["k"])
    rows.append(
        (
            "(b) … and the gap closes elsewhere",
            "flat σ, r < k: largest FA/optimum; r ≥ rank Y: largest relative error of FA or GD",
            f"{flat_worst:.3f} ×; {closed:.1e}",
            "holds: no gap for flat σ or r ≥ rank Y"
            if flat_worst < 1 + 1e-3 and closed < 1e-2
            else "does not hold",
        )
    )
    miss = max(c["pred_miss"] for c in cells if c["r"] < c["k"])
    rows.append(
        (
            "(lpfa) FA ends at the oblique projection: col Z = col(Y Yᵀ C)",
            "max abs(FA error − ‖(I − Π)Y‖²) / ‖Y‖²_F over the map's cells with r < k",
            f"{miss:.1e}",
            "holds" if miss < 1e-3 else "does not hold",
        )
    )
    cf, cd = d["c_flat"], d["c_decaying"]
    n, r = C_SETTING["n"], C_SETTING["r"]
    near = np.abs(cf[:, 0] - 1) <= NEAR
    rows.append(
        (
            "(c) Z_FA and Z_GD almost orthogonal while their errors are about equal",
            f"flat σ, full rank, n = {n}, r = {r}, {len(cf)} seeds: seeds with error ratio within "
            f"5 %; mean subspace overlap (chance r/n = {r / n:.3f}) [max]; mean linear CKA; "
            "overlap of Z_FA with C",
            f"{near.sum()}/{len(cf)}; {cf[:, 1].mean():.3f} [{cf[:, 1].max():.3f}]; "
            f"{cf[:, 2].mean():.3f}; {cf[:, 3].mean():.3f}",
            "holds: flat σ, r ≪ n"
            if near.all() and cf[:, 1].mean() < ORTHOGONAL
            else "does not hold",
        )
    )
    rows.append(
        (
            "(c) … not when the spectrum decays",
            "decaying σ, same n, r: mean error ratio FA/GD; mean subspace overlap",
            f"{cd[:, 0].mean():.2f}; {cd[:, 1].mean():.3f}",
            "regime: errors differ, subspaces overlap"
            if cd[:, 0].mean() > 1 + NEAR and cd[:, 1].mean() > ORTHOGONAL
            else "same as flat",
        )
    )
    return rows


def map_table(d: dict) -> str:
    lines = [
        "| spectrum | n | rank Y = k | r | GD error | FA error | optimum | FA / optimum |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in map_cells(d):
        ratio = "—" if np.isnan(c["ratio"]) else f"{c['ratio']:.3f}"
        lines.append(
            f"| {c['spectrum']} | {c['n']} | {c['k']} | {c['r']} | {c['gd']:.2e} | "
            f"{c['fa']:.2e} | {c['opt']:.2e} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def figures(d: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = int(d["steps"])
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for col, spectrum in enumerate(("flat", "decaying")):
        key = f"a_{spectrum}"
        it = np.linspace(0, steps, len(d[f"{key}_gd"]))
        ax = axes[0, col]
        for name, color in (("gd", "tab:blue"), ("fa", "tab:red")):
            curve = d[f"{key}_{name}"]
            ax.plot(it, curve.mean(1), color=color, label="GD" if name == "gd" else "FA")
            ax.fill_between(it, curve.min(1), curve.max(1), color=color, alpha=0.2)
        ax.axhline(float(d[f"{key}_opt"]), color="k", ls="--", lw=1, label="Eckart-Young")
        ax.axhline(
            float(np.mean(d[f"{key}_pred"])),
            color="tab:red",
            ls=":",
            lw=1,
            label="FA fixed point (mean)",
        )
        ax.set_yscale("log")
        ax.set_xlabel("iteration (η = 0.1)")
        ax.set_ylabel("‖Y − ZW‖²_F / ‖Y‖²_F")
        ax.set_title(f"(a) {spectrum} σ, n = 32, r = 4, rank 32", fontsize=9)
        ax.legend(fontsize=7)
        ax = axes[1, col]
        ang = d[f"{key}_angle_fa"]
        ax.plot(it, np.nanmean(ang, 1), color="tab:red", label="FA: angle(Z, C)")
        ax.fill_between(it, np.nanmin(ang, 1), np.nanmax(ang, 1), color="tab:red", alpha=0.2)
        ax.plot(
            it,
            d[f"{key}_angle_gd"].mean(1),
            color="tab:blue",
            ls="--",
            label="GD: angle(Z, C), C unused",
        )
        ax.set_ylim(0, 100)
        ax.set_xlabel("iteration")
        ax.set_ylabel("angle (°)")
        twin = ax.twinx()
        for name, color in (("fa", "tab:red"), ("gd", "tab:blue")):
            twin.plot(
                it,
                d[f"{key}_space_{name}"].mean(1),
                color=color,
                lw=2.5,
                alpha=0.4,
                label=f"{name.upper()}: overlap col Z, col YYᵀC",
            )
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("overlap (mean cos²)")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = twin.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="center right")
    fig.suptitle(f"Garg & Vempala: GD vs FA on Y ≈ ZW ({int(d['seeds'])} seeds, range)")
    fig.tight_layout()
    fig.savefig(out / "lowrank_curves.png", dpi=100)
    plt.close(fig)

    cells = map_cells(d)
    ns = sorted({c["n"] for c in cells})
    qs = sorted({c["r"] / c["k"] for c in cells})
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, spectrum in zip(axes[:2], ("flat", "decaying"), strict=True):
        grid = np.full((len(ns), len(qs)), np.nan)
        for c in cells:
            if c["spectrum"] == spectrum:
                grid[ns.index(c["n"]), qs.index(c["r"] / c["k"])] = c["excess"]
        im = ax.imshow(grid, origin="lower", cmap="Reds", vmin=0, vmax=max(0.05, np.nanmax(grid)))
        for c in cells:
            if c["spectrum"] == spectrum:
                txt = "opt = 0" if np.isnan(c["ratio"]) else f"×{c['ratio']:.2f}"
                ax.text(
                    qs.index(c["r"] / c["k"]),
                    ns.index(c["n"]),
                    txt,
                    ha="center",
                    va="center",
                    fontsize=7,
                )
        ax.set_xticks(range(len(qs)), [f"{q:g}" for q in qs])
        ax.set_yticks(range(len(ns)), [str(n) for n in ns])
        ax.set_xlabel("r / rank Y")
        ax.set_ylabel("n (rank Y = n/2)")
        ax.set_title(
            f"(b) {spectrum} σ: colour (FA − GD error) / ‖Y‖²,\ntext FA / optimum", fontsize=9
        )
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax = axes[2]
    for spectrum, color in (("flat", "tab:green"), ("decaying", "tab:purple")):
        c = d[f"c_{spectrum}"]
        ax.scatter(c[:, 0], c[:, 1], color=color, label=f"{spectrum} σ", s=18, zorder=3)
    n, r = C_SETTING["n"], C_SETTING["r"]
    ax.axhline(r / n, color="k", ls=":", lw=1, label=f"chance r/n = {r / n:.3f}")
    ax.axvspan(1 - NEAR, 1 + NEAR, color="0.9", label="ratio within 5 %", zorder=0)
    ax.set_xlabel("error ratio FA / GD")
    ax.set_ylabel("overlap of col Z_FA, col Z_GD (mean cos²)")
    ax.set_ylim(0, 1)
    ax.set_title(f"(c) n = {n}, r = {r}, full rank, per seed", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "lowrank_map.png", dpi=100)
    plt.close(fig)


def write_results(out: Path, d: dict) -> None:
    """results.csv: every map cell and seed, then part (c)'s seeds."""
    lines = [
        "part,spectrum,n,k,r,seed,gd_error,fa_error,optimum,fa_predicted,fa_over_gd,overlap,cka,"
        "overlap_fa_c"
    ]
    for row in d["map"]:
        dec, n, k, r, s, gd, fa, opt, pred = row
        spectrum = "decaying" if dec else "flat"
        lines.append(
            f"b,{spectrum},{n:.0f},{k:.0f},{r:.0f},{s:.0f},{gd:.6g},{fa:.6g},{opt:.6g},"
            f"{pred:.6g},,,,"
        )
    c = C_SETTING
    for spectrum in ("flat", "decaying"):
        for s, (ratio, overlap, cka, with_c) in enumerate(d[f"c_{spectrum}"]):
            lines.append(
                f"c,{spectrum},{c['n']},{c['k']},{c['r']},{s},,,,,{ratio:.6g},{overlap:.6g},"
                f"{cka:.6g},{with_c:.6g}"
            )
    atomic_write_text(out / "results.csv", "\n".join(lines) + "\n")


@script
def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, "results/garg2022_lowrank").parse_args(argv)
    out = check_out(out_folder(args))
    if args.plot_only:
        if not (out / "lowrank.npz").is_file():
            raise C.ConfigError("--out", str(out), "holds no lowrank.npz; run without --plot-only")
        with np.load(out / "lowrank.npz") as z:
            d = dict(z)
    else:
        factor_net(4, 2, "rbp", 1, args.set)  # a bad --set fails here, before any work
        d = measure(args.quick, args.seeds, args.set)
        np.savez_compressed(out / "lowrank.npz", **d)
        atomic_write_text(
            out / "config.json",
            dump_json(
                {
                    "network": C.to_dict(
                        C.from_dict(
                            C.RunConfig,
                            C.apply_overrides(
                                {
                                    "data": {"name": "lowrank"},
                                    "model": {
                                        "sizes": [A_SETTING["n"], A_SETTING["r"], A_SETTING["n"]],
                                        "hidden": "linear",
                                        "output": "linear",
                                        "loss": "squared",
                                        "dtype": "float64",
                                    },
                                    "channel": {"rule": "rbp"},
                                },
                                args.set,
                            ),
                        )
                    ),
                    "lr": LR,
                    "steps": int(d["steps"]),
                    "seeds": int(d["seeds"]),
                    "part_a": A_SETTING,
                    "part_c": C_SETTING,
                    "r_over_k": R_OVER_K,
                    "quick": args.quick,
                }
            ),
        )
        write_results(out, d)
    figures(d, out)
    text = claims_table(verdicts(d))
    atomic_write_text(
        out / "table.md",
        "# Garg & Vempala 2022: random feedback on low-rank factorization\n\n"
        + text
        + "\nThe map of (b), cell by cell: map.md.\n",
    )
    atomic_write_text(
        out / "map.md",
        "# Garg & Vempala 2022, (b): the map (seed means; errors relative to ‖Y‖²_F)\n\n"
        + map_table(d),
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
