"""Baldi, Sadowski & Lu (2018), Figures 1, 3, 4, 7 and 9, drawn from the stored sweeps.

Every curve and point comes from the runs kept under ``docs/data/`` (one SQLite store per sweep
spec in ``experiments/``); nothing is trained here. Each figure is one command:

    python experiments/baldi2018_figures.py fig1   # 9 rules: BP, SBP, RBP, SRBP, no-f', top
    python experiments/baldi2018_figures.py fig3   # sparse RBP / SRBP (n = 8, 2, 1) vs normal
    python experiments/baldi2018_figures.py fig4   # sparse SRBP accuracy vs n = 0 ... 100
    python experiments/baldi2018_figures.py fig7   # quantized error channel, 1-10 bits
    python experiments/baldi2018_figures.py fig9   # learning-channel dropout 0/10/20/50 %
    python experiments/baldi2018_figures.py all    [--data DIR] [--out DIR]

The stores and the specs that fill them:

- ``baldi2018_table1.sqlite`` — ``experiments/baldi2018_table1.toml`` (Table 1's rows);
- ``baldi2018_fig1_sbp.sqlite`` — ``experiments/baldi2018_fig1_sbp.toml`` (SBP, SBP no-f′);
- ``baldi2018_fig4_sparse.sqlite`` — ``experiments/baldi2018_fig4_sparse.toml`` (n = 0 … 100,
  and sparse rows scaled by 1/√n);
- ``baldi2018_fig7_error.sqlite`` — ``experiments/baldi2018_fig7_error.toml`` (1-10 bits).

Only the runs of the spec as it is now are drawn (a run whose configuration the spec no longer
has is left out). A configuration whose runs have not finished is missing from the figure and
named on the terminal. Figures go to ``docs/figures/baldi2018_<fig>.png`` (``--out``).
Exit status 2 with one line when a store is missing.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lpfa import papers
from lpfa.experiment import collect_store
from lpfa.names import ConfigError
from lpfa.plots import curves, pyplot, save
from lpfa.sweep.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
RULES = ("bp", "rbp", "srbp")
PERCENT = ("train_acc", "test_acc")  # drawn in %
STORES = {  # spec -> store, both named after the sweep
    "baldi2018_table1": "baldi2018_table1.sqlite",
    "baldi2018_fig1_sbp": "baldi2018_fig1_sbp.sqlite",
    "baldi2018_fig4_sparse": "baldi2018_fig4_sparse.sqlite",
    "baldi2018_fig7_error": "baldi2018_fig7_error.sqlite",
}
ACC = [("train_acc", "training accuracy (%)"), ("test_acc", "test accuracy (%)")]


def histories(data: Path, spec: str, labels: Sequence[str] | None = None) -> dict[str, list]:
    """label -> per-epoch rows (epoch 1 on) of every finished seed (``member`` = the seed,
    accuracies in %), for the runs of ``experiments/<spec>.toml`` as it is now; a label with a
    diverged seed is left out, as every table leaves it (:func:`lpfa.experiment.collect_store`).
    """
    store = data / STORES[spec]
    if not store.exists():
        raise ConfigError(
            "store",
            str(store),
            f"does not exist; make it with: lpfa sweep experiments/{spec}.toml --store {store}",
        )
    sweep = load_spec(ROOT / "experiments" / f"{spec}.toml")
    wanted = list(dict.fromkeys(r.label for r in sweep.runs)) if labels is None else list(labels)
    got = collect_store(
        store, sweep.name, wanted, data, config_hashes={r.config_hash for r in sweep.runs}
    )

    def percent(row: dict) -> dict:
        return {k: 100 * row[k] for k in PERCENT if row.get(k) is not None}

    out = {
        label: [
            {**row, "member": row["seed"], **percent(row)}
            for row in rows
            if row["epoch"] != 0  # before training: ~10 %, it would squash the curves
        ]
        for label, rows in got.done.items()
    }
    missing = [label for label in wanted if label not in out]
    if missing:
        print(f"{spec}: no finished runs yet for {', '.join(missing)}", file=sys.stderr)
    return out


def final(history: list) -> np.ndarray:
    """Test accuracy (%) of every seed at its last epoch."""
    last = max(r["epoch"] for r in history)
    return np.array([r["test_acc"] for r in history if r["epoch"] == last])


def fig1(data: Path, out: Path) -> Path:
    table = histories(data, "baldi2018_table1", ["bp", "rbp", "srbp", "nofp_bp", "nofp_rbp",
                                                 "nofp_srbp", "top"])  # fmt: skip
    sbp = histories(data, "baldi2018_fig1_sbp")
    runs = {**table, **sbp}
    order = ["bp", "sbp", "rbp", "srbp", "nofp_bp", "nofp_sbp", "nofp_rbp", "nofp_srbp", "top"]
    runs = {k: runs[k] for k in order if k in runs}
    return curves(
        runs, ACC, out / "baldi2018_fig1.png",
        title="Baldi et al. Fig. 1: MNIST, 784-100×4-10 tanh (mean ± std over seeds)",
        by=lambda label: "with f′" if not label.startswith("nofp") and label != "top"
        else "no f′ / top layer only",
    )  # fmt: skip


def fig3(data: Path, out: Path) -> Path:
    labels = [f"{kind}_{rule}" for rule in ("rbp", "srbp")
              for kind in ("sparse8", "sparse2", "sparse1")]  # fmt: skip
    runs = histories(data, "baldi2018_table1", ["rbp", "srbp", *labels])
    return curves(
        runs, ACC, out / "baldi2018_fig3.png",
        title="Baldi et al. Fig. 3: sparse feedback (Bernoulli, n expected non-zeros)",
        by=lambda label: label.rsplit("_", 1)[-1].upper(),
    )  # fmt: skip


def fig4(data: Path, out: Path) -> Path:
    """Final test accuracy of sparse SRBP against n, with the 1/√n-scaled rows beside it."""
    plain = {**histories(data, "baldi2018_table1", ["sparse8_srbp", "sparse2_srbp",
                                                     "sparse1_srbp", "srbp"])}  # fmt: skip
    extra = histories(data, "baldi2018_fig4_sparse")
    paper = papers.values("baldi2018_table1", ["sparse8_srbp", "sparse2_srbp", "sparse1_srbp"])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    points = []
    for label, h in {**plain, **extra}.items():
        if label == "srbp" or label.endswith("_normalized"):
            continue
        points.append((float(label.removeprefix("sparse").split("_")[0]), final(h)))
    points.sort(key=lambda p: p[0])
    if points:
        n = np.array([p[0] for p in points])
        ax.errorbar(n, [p[1].mean() for p in points], yerr=[p[1].std(ddof=1) for p in points],
                    fmt="o-", capsize=3, label="sparse SRBP, 0/1 weights (lpfa)")  # fmt: skip
    scaled = sorted(
        (float(k.removeprefix("sparse").split("_")[0]), final(h))
        for k, h in extra.items() if k.endswith("_srbp_normalized")
    )  # fmt: skip
    if scaled:
        ax.errorbar([p[0] for p in scaled], [p[1].mean() for p in scaled],
                    yerr=[p[1].std(ddof=1) for p in scaled], fmt="s", capsize=3,
                    label="sparse SRBP, weights 1/√n (lpfa)")  # fmt: skip
    ax.plot([8, 2, 1], [paper[f"sparse{k}_srbp"] for k in (8, 2, 1)], "kx", ms=8,
            label="paper, Table 1")  # fmt: skip
    if "srbp" in plain:
        dense = final(plain["srbp"])
        ax.axhline(dense.mean(), color="C2", ls="--", lw=1,
                   label=f"dense normal SRBP (lpfa) {dense.mean():.1f} %")  # fmt: skip
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks([0, 1, 2, 5, 10, 20, 50, 100], ["0", "1", "2", "5", "10", "20", "50", "100"])
    ax.set_xlabel("n: expected non-zero feedback weights per output unit and hidden layer")
    ax.set_ylabel("test accuracy after 100 epochs (%)\n(mean ± std over seeds)")
    ax.set_title("Baldi et al. Fig. 4: sparse SRBP, MNIST", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, out / "baldi2018_fig4.png")


def fig7(data: Path, out: Path) -> Path:
    """Final test accuracy against bits (1-10) for BP, RBP, SRBP; float baseline dashed."""
    runs = histories(data, "baldi2018_fig7_error")
    base = histories(data, "baldi2018_table1", list(RULES))
    paper = papers.values("baldi2018_table1", [f"error{b}_{r}" for b in (5, 3, 1) for r in RULES])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, rule in enumerate(RULES):
        color = f"C{i}"
        pts = sorted(
            (int(k.removeprefix("error").split("_")[0]), final(h))
            for k, h in runs.items() if k.endswith(f"_{rule}")
        )  # fmt: skip
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1].mean() for p in pts],
                        yerr=[p[1].std(ddof=1) for p in pts], fmt="o-", color=color, capsize=3,
                        label=f"{rule.upper()} (lpfa, lr 0.1 constant)")  # fmt: skip
        decay = sorted(
            (int(k.removeprefix("error").split("_")[0]), final(h))
            for k, h in runs.items() if k.endswith(f"_{rule}_decay")
        )  # fmt: skip
        if decay:
            ax.plot(
                [p[0] + 0.15 for p in decay],
                [p[1].mean() for p in decay],
                "^",
                color=color,
                mfc="none",
                label=f"{rule.upper()} (lpfa, lr decaying)",
            )
        ax.plot([5, 3, 1], [paper[f"error{b}_{rule}"] for b in (5, 3, 1)], "x--", color=color,
                alpha=0.6, label=f"{rule.upper()} (paper)")  # fmt: skip
        if rule in base:
            ax.axhline(final(base[rule]).mean(), color=color, ls=":", lw=1)
    ax.set_xlabel("bits of the error signal (eq. 19, α = 2⁻³)")
    ax.set_ylabel("test accuracy after 100 epochs (%)\n(mean ± std over seeds)")
    ax.set_title("Baldi et al. Fig. 7: quantized error channel, MNIST (dotted: float32)",
                 fontsize=10)  # fmt: skip
    ax.set_xticks(range(1, 11))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return save(fig, out / "baldi2018_fig7.png")


def fig9(data: Path, out: Path) -> Path:
    labels = [f"{kind}{rule}" for rule in RULES
              for kind in ("", "dropout10_", "dropout20_", "dropout50_")]  # fmt: skip
    runs = histories(data, "baldi2018_table1", labels)
    return curves(
        runs, ACC, out / "baldi2018_fig9.png",
        title="Baldi et al. Fig. 9: dropout in the learning channel (survivors × 1/(1−p))",
        by=lambda label: label.rsplit("_", 1)[-1].upper(),
    )  # fmt: skip


FIGURES: dict[str, Callable[[Path, Path], Path]] = {
    "fig1": fig1, "fig3": fig3, "fig4": fig4, "fig7": fig7, "fig9": fig9,
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("figure", choices=[*FIGURES, "all"])
    p.add_argument("--data", type=Path, default=ROOT / "docs" / "data", help="the stores")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures", help="figure folder")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for name in FIGURES if args.figure == "all" else [args.figure]:
            print(f"wrote {FIGURES[name](args.data, args.out)}")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
