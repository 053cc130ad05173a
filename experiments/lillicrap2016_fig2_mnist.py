"""Lillicrap et al. (2016), Figure 2a-b: 784-1000-10 logistic network on MNIST, BP vs FA.

Backprop, feedback alignment, and feedback alignment with 50 % of the forward weights W (hidden →
output) and of the feedback weights B removed, "so that neurons in h and y have a 25 % chance of
reciprocal connection" (the remaining ones drawn from the same distributions; W₀, input → hidden,
stays dense: ``model.weight_keep = [1.0, 0.5]``), and Fig. 2a's shallow learning (only W, hidden →
output, learns; channel rule ``top``). Learning
stops where backprop begins to overfit: every rule is trained for ``train.epochs`` and all are
reported at the epoch where BP's test error is lowest. The protocol choices the paper leaves
open (batch size, output loss, ω, β) are listed in configs/lillicrap2016_mnist.toml.

Paper (test error %, n = 20): BP 2.4, FA 2.1, FA with 50 % of W and B removed 2.4. The issue's
bar: BP ≤ 2.6, FA ≤ 2.4, sparse FA ≤ 2.7.

Runtime: about 5-10 s per epoch and seed on 2 CPU cores; the default (1 seed, 30 epochs, 4
rules) takes 10-25 minutes. ``--quick``: 5 000 examples, 3 epochs.

The paper's protocol (5 seeds, 250 epochs, β = 1.0: about 4 CPU hours) runs as a resumable sweep,
experiments/lillicrap2016_fig2_paper.toml; ``--store FILE`` trains nothing and draws the table
and plots from the finished runs of that sweep in FILE (its seeds finished so far).

    python experiments/lillicrap2016_fig2_mnist.py [--quick] [--seeds N] [--out DIR]
    python experiments/lillicrap2016_fig2_mnist.py \
        --store docs/data/lillicrap2016_fig2_paper.sqlite --out docs/data/lillicrap2016_fig2_paper
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np

from lpfa import config as C
from lpfa.config import ConfigError
from lpfa.experiment import (
    Results,
    collect_store,
    obtain,
    out_folder,
    parser,
    script,
    shrink,
    variants,
    write_results,
)
from lpfa.plots import curves
from lpfa.runfiles import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
SWEEP = "lillicrap2016_fig2_paper"  # experiments/lillicrap2016_fig2_paper.toml, read by --store
CHANNELS = {
    "bp": {"rule": "bp"},
    "fa": {"rule": "rbp"},
    "fa_sparse": {"rule": "rbp", "feedback_keep": 0.5},
    "shallow": {"rule": "top"},  # Fig. 2a's light grey curve: only W (hidden -> output) learns
}
PAPER = {"bp": 2.4, "fa": 2.1, "fa_sparse": 2.4}  # the paper gives shallow learning no number
BAR = {"bp": 2.6, "fa": 2.4, "fa_sparse": 2.7}
LABELS = {
    "bp": "backprop",
    "fa": "feedback alignment",
    "fa_sparse": "FA, 50 % of W and B removed",
    "shallow": "shallow (output layer only)",
}


def configs(quick: bool, seeds: int | None, backend: str) -> dict[str, C.RunConfig]:
    base = C.load(ROOT / "configs" / "lillicrap2016_mnist.toml")
    base = dataclasses.replace(base, seeds=tuple(range(seeds or len(base.seeds))), backend=backend)
    if quick:
        base = shrink(base, epochs=3)
    cfgs = variants(base, CHANNELS)
    sparse = cfgs["fa_sparse"]
    cfgs["fa_sparse"] = dataclasses.replace(
        sparse, model=dataclasses.replace(sparse.model, weight_keep=(1.0, 0.5))
    )  # the paper removes half of W (hidden -> output) and of B; W0 (input -> hidden) stays dense
    return cfgs


def error_at(history: list, epoch: int) -> np.ndarray:
    return np.array([100 * (1 - r["test_acc"]) for r in history if r["epoch"] == epoch])


def stopping_epoch(results: Results) -> tuple[int, str]:
    """The epoch where BP's mean test error is lowest, and a sentence saying how it was chosen.

    Without a finished BP run (diverged, or not run yet), the last epoch of the others.
    """
    bp = results.done.get("bp")
    if bp:
        epochs = sorted({r["epoch"] for r in bp if r["epoch"] > 0})
        stop = min(epochs, key=lambda e: error_at(bp, e).mean())
        return stop, (
            f"Stopped at epoch {stop}, where backprop's mean test error is lowest "
            f"(of epochs 1-{epochs[-1]})."
        )
    stop = min(max(r["epoch"] for r in h) for h in results.done.values())
    why = "diverged" if "bp" in results.diverged else "has not run"
    return stop, f"Backprop {why}: shown at epoch {stop}, the last epoch of every other rule."


def table(results: Results) -> tuple[str, int]:
    """Test error at the stopping epoch per rule; a diverged rule is marked, without numbers."""
    stop, sentence = stopping_epoch(results) if results.done else (0, "Every rule diverged.")
    lines = [
        sentence,
        "",
        "| rule | test error % at stop (mean, min–max) | seeds | paper (n = 20) | ours − paper "
        "| bar | meets |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, history in results.runs.items():
        paper, bar = PAPER.get(key), BAR.get(key)
        paper_cell = "—" if paper is None else f"{paper:.1f}"
        bar_cell = "—" if bar is None else f"≤ {bar}"
        if key in results.diverged:
            lines.append(
                f"| {LABELS[key]} | **diverged in epoch {results.diverged[key]}** | "
                f"{len(results.seeds[key])} | {paper_cell} | — | {bar_cell} "
                f"| {'—' if bar is None else '**no** (diverged)'} |"
            )
            continue
        err = error_at(history, stop)
        diff = "—" if paper is None else f"{err.mean() - paper:+.2f}"
        meets = "—" if bar is None else ("yes" if err.mean() <= bar else "**no**")
        lines.append(
            f"| {LABELS[key]} | {err.mean():.2f} ({err.min():.2f}–{err.max():.2f}) | {len(err)} | "
            f"{paper_cell} | {diff} | {bar_cell} | {meets} |"
        )
    if results.missing:
        names = ", ".join(LABELS[k] for k in results.missing)
        lines += ["", f"Not finished yet: {names}."]
    return "\n".join(lines) + "\n", stop


@script
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "results/lillicrap2016_fig2_mnist")
    p.add_argument(
        "--store",
        default=None,
        help=f"train nothing: read the finished runs of sweep {SWEEP} from this results store",
    )
    args = p.parse_args(argv)
    if args.store is None:
        results = obtain(args, configs(args.quick, args.seeds, args.backend))
    else:
        for flag, value in (("--set", args.set), ("--seeds", args.seeds), ("--quick", args.quick)):
            if value:
                raise ConfigError(flag, value, "has no effect with --store, which trains nothing")
        results = collect_store(args.store, SWEEP, list(CHANNELS), out_folder(args))
        results.out.mkdir(parents=True, exist_ok=True)
        write_results(results)
    out = results.out
    for history in results.runs.values():
        for r in history:
            r["test_error"] = None if r["test_acc"] is None else 100 * (1 - r["test_acc"])
    named = {LABELS[k]: v for k, v in results.runs.items()}
    diverged = {LABELS[k]: e for k, e in results.diverged.items()}
    curves(
        named,
        [("test_error", "test error (%)")],
        out / "test_error.png",
        title="Lillicrap et al. 2016 Fig. 2a: MNIST 784-1000-10",
        logy=["test_error"],
        diverged=diverged,
    )
    curves(
        {k: v for k, v in named.items() if k not in (LABELS["bp"], LABELS["shallow"])},
        [
            ("angle_1", "Δh_FA ∠ Δh_BP (°)"),
            ("angle_pbp_1", "Δh_FA ∠ Δh_PBP (°)"),
            ("angle_wb_1", "W ∠ Bᵀ (°)"),
        ],
        out / "alignment.png",
        title="Fig. 2b: alignment of the hidden update with backprop",
        diverged=diverged,
    )
    text, _ = table(results)
    atomic_write_text(out / "table.md", "# Lillicrap et al. 2016, Fig. 2a (MNIST)\n\n" + text)
    print(text)
    results.report()
    return results.exit_code


if __name__ == "__main__":
    sys.exit(main())
