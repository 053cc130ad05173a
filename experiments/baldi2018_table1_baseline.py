"""Baldi, Sadowski & Lu (2018), Table 1 "MNIST Baseline" row and Figure 1.

BP, RBP, SRBP and top layer only on MNIST.

784-100-100-100-100-10 tanh / softmax, cross-entropy, Glorot-normal weights and feedback, batch
100, lr 0.1 with Keras decay 1e-6 per update, no momentum, 100 epochs, 5 seeds (one ensemble per
rule). Paper (test accuracy, %, mean of 5): BP 97.9 (0.1), RBP 97.2 (0.1), SRBP 97.2 (0.2),
top layer only 84.7 (0.7).

Runtime: about 12 minutes on 2 idle CPU cores for the full run (5 seeds × 4 rules × 100 epochs);
``--quick`` (5 000 examples, 3 epochs, 1 seed) takes seconds. MNIST is loaded once for all four
rules. A full run and ``--plot-only`` draw ``accuracy.png`` and ``angles.png``; ``--quick`` draws
them only with ``--plot`` (the plots took longer than its training).

    python experiments/baldi2018_table1_baseline.py [--quick [--plot]] [--seeds N] [--out DIR]
"""

import dataclasses
import sys
from pathlib import Path

from lpfa import config as C
from lpfa import papers
from lpfa.experiment import accuracy_rows, obtain, parser, script, shrink
from lpfa.report import comparison_table
from lpfa.runfiles import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
TABLE = "baldi2018_table1"
# the paper's row "MNIST Baseline": bp, rbp, srbp, top
LABELS = [r["label"] for r in papers.table(TABLE) if r["row"] == "MNIST Baseline"]
PAPER = papers.values(TABLE, LABELS)
# issue targets: BP >= 97.5, RBP/SRBP >= 96.8, top layer only within 3 points of 84.7
TARGETS = {"bp": 97.5, "rbp": 96.8, "srbp": 96.8, "top": (81.7, 87.7)}


def configs(quick: bool, seeds: int | None, backend: str) -> dict[str, C.RunConfig]:
    base = C.load(ROOT / "configs" / "baldi2018_mnist.toml")
    n = seeds or (1 if quick else 5)
    base = dataclasses.replace(base, seeds=tuple(range(n)), backend=backend)
    if quick:
        base = shrink(base, epochs=3)
    return papers.configs(TABLE, base, LABELS)


@script
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "results/baldi2018_table1_baseline")
    p.add_argument(
        "--plot",
        action="store_true",
        help="with --quick, also draw the plots (a full run and --plot-only always do)",
    )
    args = p.parse_args(argv)
    results = obtain(args, configs(args.quick, args.seeds, args.backend))
    out = results.out
    labels = {r: ("top layer only" if r == "top" else r.upper()) for r in PAPER}
    rows = accuracy_rows(results, PAPER, TARGETS, labels)
    table = comparison_table(rows, unit="test accuracy %")
    atomic_write_text(out / "table.md", "# Baldi et al. 2018, Table 1, MNIST baseline\n\n" + table)
    if args.plot or args.plot_only or not args.quick:
        plots(results)
    print(table)
    results.report()
    return results.exit_code


def plots(results) -> None:
    """``accuracy.png`` (Fig. 1: training and test accuracy) and ``angles.png`` in the folder."""
    from lpfa.plots import curves  # matplotlib: imported only when drawing

    out = results.out
    curves(
        results.runs,
        [("train_acc", "training accuracy"), ("test_acc", "test accuracy")],
        out / "accuracy.png",
        title="Baldi et al. 2018 Fig. 1: MNIST 784-100x4-10 tanh",
        diverged=results.diverged,
    )
    hidden = range(1, next(iter(results.configs.values())).model.n_layers)
    curves(
        results.runs,
        [(f"angle_{h}", f"layer {h}") for h in hidden],
        out / "angles.png",
        title="angle between the rule's and BP's hidden updates (°), every hidden layer",
        diverged=results.diverged,
    )


if __name__ == "__main__":
    sys.exit(main())
