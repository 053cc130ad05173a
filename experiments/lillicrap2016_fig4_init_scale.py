"""Lillicrap et al. (2016), Figure 4: if W₀ and W start small, W learns to act like B's
pseudo-inverse.

Feedback alignment on the linear 30-20-10 task of Fig. 1 (configs/lillicrap2016_linear.toml:
y* = T x, T ~ U[−1, 1], x ~ N(0, I), B ~ U[−0.5, 0.5], minibatches of 10) with η = 10⁻³ and
the elements of W₀ and W drawn from U[−ω, ω], ω ∈ {0.0001, 0.001, 0.01, 0.05, 0.1, 0.125, 0.15,
0.2, 0.25}; 5 seeds per ω (the paper shows one run each), 200 epochs of 250 examples. Measured
every epoch on 250 training examples (lpfa.alignment): the angle between FA's hidden update
Δh_FA = B e and backprop's Δh_BP = Wᵀ e (``angle_1``), and pseudobackprop's Δh_PBP = W⁺ e
(``angle_pbp_1``), and W ∠ B⁺ (``angle_wbpinv_1``: 0° when W is B's pseudo-inverse).

The paper: "Experiments with the linear network show that the angle Δh_FA ∠ Δh_PBP quickly
becomes smaller than Δh_FA ∠ Δh_BP (Fig. 4b, c)", for weights that "begin near 0". The table
gives, per ω, the first epoch at which the angle to PBP is below the angle to BP and the epoch
from which it stays below to the end (median over the seeds), and the bar for "quickly": for
every ω ≤ 0.01, each seed's angle to PBP is below its angle to BP from an epoch before the one
at which its test NSE first falls below 10⁻², to the end of training.

Runtime: about 25 s on one core (9 ω × 5 seeds × 200 epochs); ``--quick`` (3 ω, 2 seeds, 80
epochs) about 5 s.

    python experiments/lillicrap2016_fig4_init_scale.py [--quick] [--seeds N] [--out DIR]
"""

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lpfa import config as C
from lpfa.experiment import Results, obtain, parser, script
from lpfa.plots import pyplot, save
from lpfa.report import final_rows
from lpfa.runfiles import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OMEGAS = (0.0001, 0.001, 0.01, 0.05, 0.1, 0.125, 0.15, 0.2, 0.25)
QUICK_OMEGAS = (0.0001, 0.01, 0.25)
#: The claim is about small initial weights: ω up to this.
SMALL = 0.01
#: "Quickly": the angle to PBP is below the angle to BP for good before the test NSE first falls
#: below this, i.e. while the task is still being learned, not only after it has been.
LEARNED = 1e-2
LR = 1e-3


def label(omega: float) -> str:
    """``omega0.0001``."""
    return f"omega{omega:g}"


def configs(quick: bool, seeds: int | None, backend: str) -> dict[str, C.RunConfig]:
    """One FA config per ω: forward weights U[−ω, ω], η = 10⁻³, angles every epoch."""
    base = C.load(ROOT / "configs" / "lillicrap2016_linear.toml")
    base = dataclasses.replace(
        base,
        seeds=tuple(range(seeds or (2 if quick else 5))),
        backend=backend,
        channel=dataclasses.replace(base.channel, rule=C.Rule.RBP),
        train=dataclasses.replace(base.train, lr=LR, epochs=80 if quick else 200, angle_every=1),
    )
    return {
        label(om): dataclasses.replace(
            base, name=label(om), model=dataclasses.replace(base.model, init_scale=om)
        )
        for om in (QUICK_OMEGAS if quick else OMEGAS)
    }


def first_below(a: Sequence[float], b: Sequence[float], start: int = 1) -> int | None:
    """The first index i ≥ ``start`` with a[i] < b[i]; None if there is none.

    ``start`` = 1 leaves out epoch 0, where both angles are those of the random initial weights.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    hits = np.flatnonzero(a[start:] < b[start:])
    return int(hits[0]) + start if hits.size else None


def below_from(a: Sequence[float], b: Sequence[float]) -> int | None:
    """The first index i from which a[j] < b[j] holds for every j ≥ i (to the end); None if
    a[-1] ≥ b[-1]. NaN entries count as not below."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = a < b
    if not ok.size or not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    return int(bad[-1]) + 1 if bad.size else 0


def member_series(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """``key`` per member and epoch, shape (E, n_epochs + 1), members and epochs in order."""
    members = sorted({r["member"] for r in history})
    epochs = sorted({r["epoch"] for r in history})
    out = np.full((len(members), len(epochs)), np.nan)
    for r in history:
        v = r.get(key)
        out[members.index(r["member"]), epochs.index(r["epoch"])] = np.nan if v is None else v
    return out


def _median_epoch(values: Sequence[int | None]) -> str:
    """Median of the epochs, or "never (k of n seeds)" when some seed has none."""
    found = [v for v in values if v is not None]
    if len(found) < len(values):
        return f"never for {len(values) - len(found)} of {len(values)} seeds"
    return f"{np.median(found):g}"


def omega_row(omega: float, history: Sequence[Mapping[str, Any]]) -> tuple[str, bool]:
    """A table row for one ω, and whether each of its seeds meets the bar: the angle to PBP
    below the angle to BP from an epoch before its NSE reaches :data:`LEARNED` to the end."""
    bp = member_series(history, "angle_1")
    pbp = member_series(history, "angle_pbp_1")
    nse_series = member_series(history, "test_nse")
    first = [first_below(p, b) for p, b in zip(pbp, bp, strict=True)]
    stays = [below_from(p, b) for p, b in zip(pbp, bp, strict=True)]
    learned = [first_below(n, np.full_like(n, LEARNED), start=0) for n in nse_series]
    ok = all(s is not None and (t is None or s < t) for s, t in zip(stays, learned, strict=True))
    last = final_rows(history)
    nse = np.array([r["test_nse"] for r in last])
    wb = np.array([r["angle_wbpinv_1"] for r in last], float)
    row = (
        f"| {omega:g} | {nse.mean():.2e} | {bp[:, -1].mean():.1f} | {pbp[:, -1].mean():.1f} "
        f"| {wb.mean():.1f} | {_median_epoch(first)} | {_median_epoch(stays)} "
        f"| {_median_epoch(learned)} "
        f"| {sum(s is not None for s in stays)} of {len(stays)} | {'yes' if ok else '**no**'} |"
    )
    return row, ok


def table(results: Results, omegas: Sequence[float]) -> str:
    """Per ω the angles and crossing epochs (one pipe table); then the claim for
    ω ≤ :data:`SMALL` as a list: what the paper states, what lpfa measured, whether it holds."""
    lines = [
        "| ω | final test NSE | Δh_FA∠Δh_BP at end (°) | Δh_FA∠Δh_PBP at end (°) | W∠B⁺ at end (°) "
        "| first epoch PBP angle < BP angle (median) | below from epoch … to the end (median) "
        f"| NSE < {LEARNED:g} from epoch (median) | seeds below at the end "
        "| below for good before NSE < 0.01? |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    small_ok = []
    for om in omegas:
        key = label(om)
        if key in results.diverged:
            lines.append(
                f"| {om:g} | **diverged in epoch {results.diverged[key]}** | — | — | — | — | — "
                "| — | — | **no** (diverged) |"
            )
            if om <= SMALL:
                small_ok.append(False)
            continue
        if key not in results.runs:
            continue
        row, ok = omega_row(om, results.runs[key])
        lines.append(row)
        if om <= SMALL:
            small_ok.append(ok)
    holds = bool(small_ok) and all(small_ok)
    claim = (
        "\n- paper states: for weights starting near 0 the angle to PBP quickly becomes smaller "
        "than the angle to BP (Fig. 4b-c)\n"
        f"- lpfa measured: for every ω ≤ {SMALL:g}, each seed's angle to PBP below its angle to "
        f"BP for good from an epoch before its test NSE falls below {LEARNED:g}: "
        f"{sum(small_ok)} of {len(small_ok)} ω\n"
        f"- holds: {'yes' if holds else '**no**'}\n"
    )
    return "\n".join(lines) + "\n" + claim


def plot(results: Results, omegas: Sequence[float], path: Path) -> Path:
    """Fig. 4a-c: NSE, angle to BP and angle to PBP against examples, one line per ω (mean over
    seeds), blue (smallest ω) through red (largest); a diverged ω is left out and named."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = plt.get_cmap("jet")(np.linspace(0, 1, len(omegas)))
    panels = [
        ("test_nse", "normalised squared error (test)"),
        ("angle_1", "Δh_FA ∠ Δh_BP (°)"),
        ("angle_pbp_1", "Δh_FA ∠ Δh_PBP (°)"),
    ]
    for om, color in zip(omegas, colors, strict=True):
        key = label(om)
        if key not in results.done:
            continue
        history = results.done[key]
        batch = results.configs[key].train.batch_size
        steps = member_series(history, "step")[0]
        for ax, (metric, _) in zip(axes, panels, strict=True):
            ax.plot(steps * batch, np.nanmean(member_series(history, metric), axis=0),
                    color=color, label=f"ω = {om:g}")  # fmt: skip
    for ax, (metric, ylabel) in zip(axes, panels, strict=True):
        ax.set_xlabel("examples seen")
        ax.set_ylabel(ylabel)
        if metric == "test_nse":
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, 95)
    gone = [f"ω = {om:g} diverged" for om in omegas if label(om) in results.diverged]
    axes[0].legend(fontsize=7, title="; ".join(gone) or None)
    n = len(next(iter(results.seeds.values()), []))
    fig.suptitle(f"Lillicrap et al. 2016 Fig. 4: FA, η = {LR:g}, W₀, W ~ U[−ω, ω] (mean of {n} "
                 "seeds)")  # fmt: skip
    return save(fig, path)


@script
def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, "results/lillicrap2016_fig4_init_scale").parse_args(argv)
    cfgs = configs(args.quick, args.seeds, args.backend)
    omegas = QUICK_OMEGAS if args.quick else OMEGAS
    results = obtain(args, cfgs)
    plot(results, omegas, results.out / "fig4.png")
    text = table(results, omegas)
    atomic_write_text(
        results.out / "table.md",
        "# Lillicrap et al. 2016, Fig. 4 (initial weight scale ω)\n\n" + text,
    )
    print(text)
    results.report()
    return results.exit_code


if __name__ == "__main__":
    sys.exit(main())
