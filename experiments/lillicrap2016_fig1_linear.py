"""Lillicrap et al. (2016), Figure 1d-e: a 30-20-10 linear network learns a linear map.

Four algorithms on y* = T x, x ~ N(0, I), T ~ U[−1, 1] (Task 1): shallow learning (top layer
only), node perturbation (the paper's "reinforcement learning"; hidden pre-activations perturbed
by N(0, σ²) noise, σ = ``channel.perturbation``), backprop (BP) and feedback alignment (FA = RBP);
weights start in U[−0.01, 0.01], B ~ U[−0.5, 0.5]; squared error, minibatches of 10.

Learning rates. The paper "chose the learning rate η for each algorithm via manual search in
order to optimize learning speed" and does not give them. Here each rule is first trained at
every η of a grid (``GRID``) on held-out seeds (``SEARCH_SEEDS``: other draws of the weights and
of B, the same task and data), and scored by its learning speed: the mean over epochs of
log10 of the training loss (the loss of the minibatches during the epoch, before their updates;
lower is faster; a diverged η is out). The η with the lowest score is the one the reported seeds
are trained at. The search runs are kept in ``OUT/search/`` with their own ``results.csv`` and a
figure of the scores; the grid, the scores and the choice are in ``table.md``. ``--set
train.lr=η`` fixes η for every rule and skips the search.

What the paper says (text and Fig. 1d-e): with shallow learning "the loss hardly decreases";
with reinforcement learning "there is some progress but it is slow"; backprop "sends the loss
rapidly towards zero", and so does feedback alignment; the angle between Δh_FA and Δh_BP starts
near 90° and falls well below it. It gives no table of numbers; the bars here are NSE < 1e-2
for BP and FA, shallow learning ≥ 0.1, node perturbation below shallow learning but later than
BP and FA to reach NSE < 1e-2, and the FA angle starting at 80–100° and ending below 60°.

Runtime: about 15 s on one core (search: 4 rules × 8 η × 2 seeds; then 5 seeds × 4 rules;
60 epochs of 250 examples each); ``--quick`` (4 η, 1 search seed, 15 epochs) about 4 s.

    python experiments/lillicrap2016_fig1_linear.py [--quick] [--seeds N] [--out DIR]
"""

import argparse
import contextlib
import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lpfa import config as C
from lpfa.experiment import Results, obtain, out_folder, parser, script, variants
from lpfa.plots import curves, pyplot, save
from lpfa.report import final_rows
from lpfa.runfiles import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
LABELS = {
    "bp": "backprop",
    "rbp": "feedback alignment",
    "top": "shallow (top layer only)",
    "node_perturbation": "node perturbation (reinforcement)",
}
#: η searched per rule (half-decade steps), and the smaller grid of --quick.
GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
QUICK_GRID = (0.001, 0.01, 0.1, 1.0)
#: Seeds of the search runs: never among the reported seeds 0 … n−1.
SEARCH_SEEDS = (100, 101)
QUICK_SEARCH_SEEDS = (100,)
#: "Reaches" means the mean test NSE over the seeds falls below this.
REACH = 1e-2


def base_config(quick: bool, backend: str) -> C.RunConfig:
    """Task 1 as configs/lillicrap2016_linear.toml says, 15 epochs with ``quick``."""
    base = dataclasses.replace(
        C.load(ROOT / "configs" / "lillicrap2016_linear.toml"), backend=backend
    )
    if quick:
        base = dataclasses.replace(base, train=dataclasses.replace(base.train, epochs=15))
    return base


def search_label(rule: str, lr: float) -> str:
    """The search run of ``rule`` at ``lr``: ``bp-lr0.003``."""
    return f"{rule}-lr{lr:g}"


def search_configs(
    base: C.RunConfig, grid: Sequence[float], seeds: Sequence[int]
) -> dict[str, C.RunConfig]:
    """One config per rule and η of ``grid``, on ``seeds``, without angle measurements."""
    train = dataclasses.replace(base.train, angle_every=None)
    out = {}
    for rule in LABELS:
        for lr in grid:
            cfg = dataclasses.replace(
                base, seeds=tuple(seeds), train=dataclasses.replace(train, lr=lr)
            )
            out.update(variants(cfg, {search_label(rule, lr): {"rule": rule}}))
    return out


def speed_score(history: Sequence[Mapping[str, Any]]) -> float:
    """Learning speed of one run: the mean over its epochs of log10 of the training loss.

    The training loss of an epoch (averaged over its members) is that of its minibatches before
    their updates, so the score is the area under the log learning curve over the examples
    seen: lower is faster. Epoch 0 (before training) has no training loss and is left out.

    Returns
    -------
    float
        The score; ``inf`` for a history without training epochs.
    """
    by_epoch: dict[int, list[float]] = {}
    for r in history:
        if r["epoch"] > 0 and r.get("train_loss") is not None:
            by_epoch.setdefault(r["epoch"], []).append(float(r["train_loss"]))
    if not by_epoch:
        return math.inf
    return float(np.mean([math.log10(np.mean(v)) for v in by_epoch.values()]))


def choose_lr(
    search: Results, rule: str, grid: Sequence[float]
) -> tuple[float, dict[float, float | None]]:
    """The η of ``grid`` with the lowest :func:`speed_score` for ``rule``, and every score.

    A diverged (or missing) η scores None and is never chosen; ties go to the smaller η.

    Raises
    ------
    ConfigError
        When no η of the grid finished without diverging.
    """
    scores: dict[float, float | None] = {}
    for lr in grid:
        label = search_label(rule, lr)
        done = label in search.runs and label not in search.diverged
        scores[lr] = speed_score(search.runs[label]) if done else None
    finite = {lr: s for lr, s in scores.items() if s is not None and math.isfinite(s)}
    if not finite:
        raise C.ConfigError(
            "train.lr", list(grid), f"every η of the search diverged for rule {rule}"
        )
    return min(finite, key=lambda lr: (finite[lr], lr)), scores


def configs(
    base: C.RunConfig, seeds: int | None, quick: bool, lrs: Mapping[str, float] | None
) -> dict[str, C.RunConfig]:
    """The reported runs: one per rule, at its chosen η (``lrs``; None keeps the config's)."""
    base = dataclasses.replace(base, seeds=tuple(range(seeds or (2 if quick else 5))))
    out = variants(base, {rule: {"rule": rule} for rule in LABELS})
    if lrs is None:
        return out
    return {
        k: dataclasses.replace(c, train=dataclasses.replace(c.train, lr=lrs[k]))
        for k, c in out.items()
    }


def lr_fixed(settings: Sequence[str]) -> bool:
    """Whether the ``--set`` overrides fix ``train.lr`` (then there is no search)."""
    return any(s.partition("=")[0].strip() == "train.lr" for s in settings)


def examples_to_reach(history: Sequence[Mapping[str, Any]], level: float = REACH) -> int | None:
    """Examples seen when the mean test NSE over the members first falls below ``level``.

    Uses the rows' ``examples`` (added by :func:`main`); None when it never does.
    """
    by_epoch: dict[int, list[dict[str, Any]]] = {}
    for r in history:
        by_epoch.setdefault(r["epoch"], []).append(r)
    for epoch in sorted(by_epoch):
        rows = by_epoch[epoch]
        if np.mean([r["test_nse"] for r in rows]) < level:
            return int(rows[0]["examples"])
    return None


def _bar(rule: str) -> str:
    return {
        "bp": f"NSE < {REACH:g}",
        "rbp": f"NSE < {REACH:g}; angle starts 80–100°, ends < 60°",
        "top": "NSE far above 1e-2 (≥ 0.1): hardly decreases",
        "node_perturbation": f"NSE below shallow's; reaches NSE < {REACH:g} later than BP and FA",
    }[rule]


def _meets(rule: str, results: Results, reach: Mapping[str, int | None]) -> bool:
    """The verdict of a finished (not diverged) rule against :func:`_bar`."""
    history = results.runs[rule]
    nse = np.array([r["test_nse"] for r in final_rows(history)])
    if rule == "top":
        return bool(nse.min() >= 0.1)
    if rule == "node_perturbation":
        done = results.done
        ok = "top" not in done or nse.max() < min(r["test_nse"] for r in final_rows(done["top"]))
        mine = math.inf if reach[rule] is None else reach[rule]
        for other in ("bp", "rbp"):
            if other in done:
                theirs = math.inf if reach[other] is None else reach[other]
                ok = ok and mine > theirs
        return bool(ok)
    ok = nse.max() < REACH
    if rule == "rbp":
        start = np.array([r["angle_1"] for r in history if r["epoch"] == 0], dtype=float)
        end = np.array([r["angle_1"] for r in final_rows(history)], dtype=float)
        ok = ok and np.all(np.abs(start - 90) < 10) and np.all(end < 60)
    return bool(ok)


def table(results: Results) -> str:
    """The bars of Fig. 1d-e per rule; a diverged rule is marked, without numbers."""
    lines = [
        "| rule | η | final test NSE (mean, min–max) | examples to NSE < 1e-2 "
        "| angle Δh vs Δh_BP at start (°) | at end (°) | bar | meets |",
        "|---|---|---|---|---|---|---|---|",
    ]
    reach = {k: examples_to_reach(h) for k, h in results.done.items()}
    for rule, history in results.runs.items():
        lr = f"{results.configs[rule].train.lr:g}"
        if rule in results.diverged:
            lines.append(
                f"| {LABELS[rule]} | {lr} | **diverged in epoch {results.diverged[rule]}** | — "
                f"| — | — | {_bar(rule)} | **no** (diverged) |"
            )
            continue
        final = final_rows(history)
        nse = np.array([r["test_nse"] for r in final])
        if rule in ("bp", "rbp"):
            start = np.array([r["angle_1"] for r in history if r["epoch"] == 0], dtype=float)
            end = np.array([r["angle_1"] for r in final], dtype=float)
            angles = (f"{start.mean():.1f}", f"{end.mean():.1f} ({end.min():.1f}–{end.max():.1f})")
        else:
            angles = ("—", "—")
        n = "never" if reach[rule] is None else f"{reach[rule]:,}"
        ok = _meets(rule, results, reach)
        lines.append(
            f"| {LABELS[rule]} | {lr} | {nse.mean():.2e} ({nse.min():.1e}–{nse.max():.1e}) | "
            f"{n} | {angles[0]} | {angles[1]} | {_bar(rule)} | {'yes' if ok else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def search_list(scores: Mapping[str, tuple[float, dict[float, float | None]]]) -> str:
    """The search as a list (table.md holds one pipe table): per rule the chosen η and the score
    of every η searched, the chosen one in bold."""
    lines = []
    for rule, (chosen, per_lr) in scores.items():
        cells = ", ".join(
            f"{lr:g}: "
            + ("diverged" if s is None else f"**{s:.2f}**" if lr == chosen else f"{s:.2f}")
            for lr, s in per_lr.items()
        )
        edge = " (edge of the grid)" if chosen in (min(per_lr), max(per_lr)) else ""
        lines.append(f"- {LABELS[rule]}: chosen η = {chosen:g}{edge}; scores {cells}")
    return "\n".join(lines) + "\n"


def plot_search(scores: Mapping[str, tuple[float, dict[float, float | None]]], path: Path) -> Path:
    """Score against η per rule, the chosen η ringed, a diverged η crossed (along the bottom,
    one row per rule)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    edge = ax.get_xaxis_transform()  # x in data, y in axes fraction
    for i, (rule, (chosen, per_lr)) in enumerate(scores.items()):
        lrs = [lr for lr, s in per_lr.items() if s is not None]
        (line,) = ax.plot(lrs, [per_lr[lr] for lr in lrs], "o-", label=LABELS[rule])
        ax.plot([chosen], [per_lr[chosen]], "o", ms=12, mfc="none", color=line.get_color())
        gone = [lr for lr, s in per_lr.items() if s is None]
        y = [0.03 + 0.05 * i] * len(gone)  # one row of crosses per rule, along the bottom
        ax.plot(gone, y, "x", ms=8, color=line.get_color(), transform=edge, clip_on=False)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("mean log10 training loss over epochs")
    ax.set_title(
        "η search (held-out seeds): lower is faster; chosen η ringed; × diverged", fontsize=10
    )
    ax.legend(fontsize=8)
    return save(fig, path)


def search(args: argparse.Namespace, base: C.RunConfig) -> dict[str, tuple[float, dict]]:
    """Run (or, with --plot-only, read) the η search in ``OUT/search``; rule -> (η, scores)."""
    grid = QUICK_GRID if args.quick else GRID
    seeds = QUICK_SEARCH_SEEDS if args.quick else SEARCH_SEEDS
    sub = argparse.Namespace(**{**vars(args), "out": str(out_folder(args) / "search")})
    # an η that diverges is a result of the search (the edge of the grid), not an error: its
    # one-line report goes to stdout with the other labels', and stderr stays for real faults
    with contextlib.redirect_stderr(sys.stdout):
        found = obtain(sub, search_configs(base, grid, seeds))
    scores = {rule: choose_lr(found, rule, grid) for rule in LABELS}
    plot_search(scores, found.out / "eta_search.png")
    return scores


@script
def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, "results/lillicrap2016_fig1_linear").parse_args(argv)
    base = base_config(args.quick, args.backend)
    scores = None if lr_fixed(args.set) else search(args, base)
    lrs = None if scores is None else {rule: s[0] for rule, s in scores.items()}
    results = obtain(args, configs(base, args.seeds, args.quick, lrs))
    out = results.out
    for label, history in results.runs.items():
        batch = results.configs[label].train.batch_size
        for r in history:
            r["examples"] = r["step"] * batch
    named = {
        f"{LABELS[k]} (η = {results.configs[k].train.lr:g})": v for k, v in results.runs.items()
    }
    keys = dict(zip(results.runs, named, strict=True))
    diverged = {keys[k]: e for k, e in results.diverged.items()}
    curves(
        named,
        [("test_nse", "normalised squared error (test)")],
        out / "nse.png",
        x="examples",
        xlabel="examples seen",
        logy=["test_nse"],
        title="Lillicrap et al. 2016 Fig. 1d: linear 30-20-10",
        diverged=diverged,
    )
    curves(
        {keys[k]: v for k, v in results.runs.items() if k in ("bp", "rbp")},
        [("angle_1", "Δh ∠ Δh_BP (°)")],
        out / "angle.png",
        x="examples",
        xlabel="examples seen",
        title="Fig. 1e: angle to backprop's hidden update",
        diverged=diverged,
    )
    text = table(results)
    if scores is None:
        text += "\nη fixed for every rule by `--set train.lr`: no search.\n"
    else:
        grid = QUICK_GRID if args.quick else GRID
        seeds = QUICK_SEARCH_SEEDS if args.quick else SEARCH_SEEDS
        text += (
            f"\n## η search\n\nGrid {', '.join(f'{lr:g}' for lr in grid)}; held-out seeds "
            f"{', '.join(map(str, seeds))}; {results.configs['bp'].train.epochs} epochs; "
            "runs in `search/`. Score: the mean over epochs of log10 of the training loss "
            "(lower is faster).\n\n" + search_list(scores)
        )
    atomic_write_text(
        out / "table.md", "# Lillicrap et al. 2016, Fig. 1d-e (linear task)\n\n" + text
    )
    print(text)
    results.report()
    return results.exit_code


if __name__ == "__main__":
    sys.exit(main())
