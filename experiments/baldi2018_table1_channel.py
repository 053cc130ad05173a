"""Baldi, Sadowski & Lu (2018), Table 1 channel rows: no-f′, adaptive, sparse, LC dropout.

The MNIST protocol of the baseline (784-100-100-100-100-10 tanh / softmax, batch 100, lr 0.1 with
Keras decay 1e-6, 100 epochs) with the learning channel changed:

- no-f′: the signal reaching layer h is not multiplied by f′ (Fig. 1);
- adaptive: ARBP with ΔC = 0.1·η R O (the paper's 0.1× for ARBP), ASRBP with the full η (Fig. 2);
- sparse-n: 0/1 Bernoulli feedback, p = n / fan-in, weight 1 as in the paper (Fig. 3);
- LC dropout p: channel units dropped with probability p, survivors × 1/(1 − p) (Fig. 9).

Paper (test accuracy %, 5 seeds; dropout rows single numbers):
no-f′ BP 89.9, RBP 88.3, SRBP 88.4; adaptive RBP 97.3, SRBP 97.3; sparse-8 96.0 / 96.9,
sparse-2 96.3 / 95.8, sparse-1 90.3 / 94.6 (RBP / SRBP); dropout 10 % 97.7 / 96.5 / 97.1,
20 % 97.8 / 96.7 / 97.2, 50 % 97.7 / 96.7 / 97.1 (BP / RBP / SRBP).

Runtime: 20 configurations × 100 epochs, about 1 minute each per seed on one CPU core
(``--seeds`` defaults to 1 here); ``--quick`` (5 000 examples, 3 epochs) takes about a minute.

    python experiments/baldi2018_table1_channel.py [--quick] [--seeds N] [--only LABEL,...]
"""

import dataclasses
import sys
from pathlib import Path

from lpfa import config as C
from lpfa import papers
from lpfa.experiment import accuracy_rows, obtain, parser, script, shrink
from lpfa.plots import curves
from lpfa.report import comparison_table
from lpfa.runfiles import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]

TABLE = "baldi2018_table1"
GROUPS = ("nofp", "adaptive", "sparse", "dropout")
# the table's MNIST rows No-f', Adaptive, Sparse-n and LC Dropout, with their lpfa settings
CHANNELS = {k: v for k, v in papers.variants(TABLE).items() if k.startswith(GROUPS)}
PAPER = papers.values(TABLE, CHANNELS)
# the bar: within 1.5 points of the paper, else say why
TARGETS = {k: (v - 1.5, v + 1.5) for k, v in PAPER.items()}


def configs(quick: bool, seeds: int | None, backend: str) -> dict[str, C.RunConfig]:
    base = C.load(ROOT / "configs" / "baldi2018_mnist.toml")
    base = dataclasses.replace(base, seeds=tuple(range(seeds or 1)), backend=backend)
    if quick:
        base = shrink(base, epochs=3)
    return papers.configs(TABLE, base, CHANNELS)


def variant(label: str) -> str:
    """A label's panel: the variant without its rule (``sparse8_rbp`` -> ``sparse8``)."""
    return label.rsplit("_", 1)[0]


@script
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "results/baldi2018_table1_channel")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated labels to run (default: all); finished labels are kept",
    )
    args = p.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(CHANNELS)
    if unknown:
        p.error(f"--only: unknown labels {sorted(unknown)}; allowed: {', '.join(CHANNELS)}")
    results = obtain(args, configs(args.quick, args.seeds, args.backend), only or None)
    out = results.out
    table = comparison_table(accuracy_rows(results, PAPER, TARGETS), unit="test accuracy %")
    atomic_write_text(
        out / "table.md", "# Baldi et al. 2018, Table 1, channel variants (MNIST)\n\n" + table
    )
    for group in GROUPS:
        sub = {k: v for k, v in results.runs.items() if k.startswith(group)}
        if sub:
            curves(
                sub,
                [("test_acc", "test accuracy")],
                out / f"{group}.png",
                title=f"Baldi et al. 2018: {group} variants",
                diverged=results.diverged,
                by=variant if group in ("sparse", "dropout") else None,
            )
    print(table)
    results.report()
    return results.exit_code


if __name__ == "__main__":
    sys.exit(main())
