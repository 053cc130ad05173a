"""Lillicrap et al. (2016), Figure 2d (Task 3): does a fourth layer help BP and FA?

A 30-20-10 and a 30-20-10-10 network (tanh hidden units, linear output, a bias per unit) learn
the outputs of a fixed random 30-20-10-10 tanh teacher (configs/lillicrap2016_nonlinear.toml:
W ~ N(0, 1/fan_in), b ~ N(0, 0.1²); x ~ N(0, I); 20 000 training and 5 000 test points; weights
U[−0.1, 0.1], B U[−0.5, 0.5]; minibatches of 10, η = 0.01; the paper gives none of these
scales). Each of the four networks (3 or 4 layers × backprop or feedback alignment) is n = 20
seeds trained as one ensemble, until backprop makes negligible gains (the table states the
criterion and the measured gains), and the final test NSE of the 4-layer network is compared
with the 3-layer one's by Welch's t-test (two-sided, unequal variances), once per rule, at the
last epoch and at epoch 20 (the config's own epoch count).

The paper: "both backprop (t-test, n = 20, p = 3 × 10⁻¹²) and feedback alignment (t-test,
n = 20, p = 9 × 10⁻¹³) deliver better performance with a four-layer network than with a
three-layer network".

Runtime: about 2.6 min of CPU on one core (4 networks × 20 seeds × 100 epochs of 2 000
minibatches; 6.8 min of wall time on a shared, busy machine); ``--quick`` (5 seeds, 2 000
training points, 10 epochs) about 3 s.

    python experiments/lillicrap2016_fig2d_depth.py [--quick] [--seeds N] [--out DIR]
"""

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from lpfa import config as C
from lpfa.experiment import Results, obtain, parser, script, variants
from lpfa.plots import curves
from lpfa.report import final_rows, mean_std
from lpfa.runfiles import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RULES = {"bp": "backprop", "rbp": "feedback alignment"}
SIZES = {3: (30, 20, 10), 4: (30, 20, 10, 10)}
#: The full protocol's epochs: where backprop's gains have become negligible (see PLATEAU).
EPOCHS = 100
#: "Negligible gains": the mean test NSE fell by less than GAIN (absolute; 0.1 % of the NSE of
#: a network that outputs 0) over the last WINDOW epochs. An absolute bar, since a network that
#: can match the teacher exactly (the 4-layer one) keeps a relative gain as its error goes to 0.
WINDOW, GAIN = 10, 1e-3
#: The epoch of the shipped config, at which the issue found FA's depth result reversed.
EARLY = 20
#: Depth "helps" when the 4-layer mean NSE is lower and Welch's two-sided p is below this.
ALPHA = 0.01
PAPER_P = {"bp": 3e-12, "rbp": 9e-13}


def label(rule: str, depth: int) -> str:
    """``bp-3layer``."""
    return f"{rule}-{depth}layer"


def configs(quick: bool, seeds: int | None, backend: str) -> dict[str, C.RunConfig]:
    """The four networks: 3 or 4 layers × BP or FA, each an ensemble of ``seeds`` (20)."""
    base = C.load(ROOT / "configs" / "lillicrap2016_nonlinear.toml")
    base = dataclasses.replace(
        base,
        seeds=tuple(range(seeds or (5 if quick else 20))),
        backend=backend,
        train=dataclasses.replace(base.train, epochs=10 if quick else EPOCHS, angle_every=None),
    )
    if quick:
        base = dataclasses.replace(
            base, data=dataclasses.replace(base.data, n_train=2000, n_test=2000)
        )
    out = {}
    for depth, sizes in SIZES.items():
        sized = dataclasses.replace(base, model=dataclasses.replace(base.model, sizes=sizes))
        out.update(variants(sized, {label(rule, depth): {"rule": rule} for rule in RULES}))
    return out


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's two-sided t-test of mean(a) = mean(b) without assuming equal variances.

    Returns
    -------
    (t, p) : floats
        t > 0 when mean(a) > mean(b).
    """
    res = stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False)
    return float(res.statistic), float(res.pvalue)


def nse_at(history: Sequence[Mapping[str, Any]], epoch: int | None = None) -> np.ndarray:
    """Test NSE of every member at ``epoch`` (the last one if None), in member order."""
    rows = final_rows(history) if epoch is None else [r for r in history if r["epoch"] == epoch]
    return np.array([r["test_nse"] for r in sorted(rows, key=lambda r: r["member"])], float)


def mean_curve(history: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Mean test NSE over the members at each epoch 0, 1, …"""
    by: dict[int, list[float]] = {}
    for r in history:
        by.setdefault(r["epoch"], []).append(r["test_nse"])
    return np.array([np.mean(by[e]) for e in sorted(by)])


def recent_gain(curve: Sequence[float], window: int = WINDOW) -> float:
    """How much the curve fell over its last ``window`` epochs, c[−1−window] − c[−1]; NaN when
    it is shorter than ``window`` + 1."""
    c = np.asarray(curve, float)
    if c.size <= window:
        return math.nan
    return float(c[-1 - window] - c[-1])


def plateau_epoch(curve: Sequence[float], window: int = WINDOW, tol: float = GAIN) -> int | None:
    """The first epoch e at which the curve fell by less than ``tol`` over the ``window`` epochs
    before it, c[e − window] − c[e] < tol; None if it never does."""
    c = np.asarray(curve, float)
    for e in range(window, c.size):
        if c[e - window] - c[e] < tol:
            return e
    return None


def depth_rows(results: Results, epoch: int, last: int) -> list[str]:
    """One markdown row per rule at ``epoch``: both networks' test NSE, Welch's t and p, and
    whether depth helps (``last`` marks the last epoch)."""
    when = f"{epoch} (last)" if epoch == last else f"{epoch}"
    rows = []
    for rule, name in RULES.items():
        three, four = label(rule, 3), label(rule, 4)
        if three not in results.done or four not in results.done:
            bad = [k for k in (three, four) if k in results.diverged]
            why = f"**diverged**: {', '.join(bad)}" if bad else "not run"
            rows.append(f"| {name} | {when} | {why} | — | — | — | {PAPER_P[rule]:.0e} | **no** |")
            continue
        a = nse_at(results.runs[three], epoch)
        b = nse_at(results.runs[four], epoch)
        t, p = welch(a, b)
        helps = b.mean() < a.mean() and p < ALPHA
        verdict = "yes" if helps else "**no** (reversed)" if b.mean() > a.mean() else "**no**"
        rows.append(
            f"| {name} | {when} | {mean_std(a.mean(), a.std(ddof=1), digits=2)} (n = {a.size}) "
            f"| {mean_std(b.mean(), b.std(ddof=1), digits=2)} (n = {b.size}) "
            f"| {t:+.2f} | {p:.1e} | {PAPER_P[rule]:.0e} | {verdict} |"
        )
    return rows


def table(results: Results) -> str:
    """Welch tests at the last epoch (and at :data:`EARLY` when the run went past it), one
    pipe table; then the stopping criterion as a list."""
    last = max(r["epoch"] for h in results.runs.values() for r in h)
    lines = [
        "| rule | epoch | 3-layer test NSE (mean ± std) | 4-layer test NSE (mean ± std) "
        "| Welch t (3 − 4) | p (two-sided) | paper p | depth helps (4-layer lower, p < 0.01)? |",
        "|---|---|---|---|---|---|---|---|",
        *depth_rows(results, last, last),
    ]
    if last > EARLY:
        lines += depth_rows(results, EARLY, last)
    text = "\n".join(lines) + (
        f"\n\nTrained until backprop makes negligible gains? Criterion: the mean test NSE fell "
        f"by less than {GAIN:g} over the last {WINDOW} epochs (gain over the last {WINDOW} "
        "epochs; first epoch at which the criterion held):\n\n"
    )
    for key, history in results.done.items():
        curve = mean_curve(history)
        gain, first = recent_gain(curve), plateau_epoch(curve)
        ok = "—" if math.isnan(gain) else "yes" if gain < GAIN else "**no**"
        first_s = "never" if first is None else f"epoch {first}"
        text += f"- {key}: {gain:.2e}; {first_s}; negligible at the end: {ok}\n"
    return text


@script
def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, "results/lillicrap2016_fig2d_depth").parse_args(argv)
    results = obtain(args, configs(args.quick, args.seeds, args.backend))
    out = results.out
    names = {
        label(rule, depth): f"{RULES[rule]}, {depth}-layer ({'-'.join(map(str, sizes))})"
        for rule in RULES
        for depth, sizes in SIZES.items()
    }
    curves(
        {names[k]: v for k, v in results.runs.items()},
        [("test_nse", "normalised squared error (test)")],
        out / "nse.png",
        logy=["test_nse"],
        title="Lillicrap et al. 2016 Fig. 2d: tanh teacher",
        diverged={names[k]: e for k, e in results.diverged.items()},
    )
    text = table(results)
    atomic_write_text(
        out / "table.md", "# Lillicrap et al. 2016, Fig. 2d (Task 3: depth)\n\n" + text
    )
    print(text)
    results.report()
    return results.exit_code


if __name__ == "__main__":
    sys.exit(main())
