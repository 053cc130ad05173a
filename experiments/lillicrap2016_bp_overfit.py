"""Lillicrap et al. (2016), Methods Task 2: when does backprop begin to overfit at the paper's η?

The paper trains every rule "until BP began to overfit on the test set" at η = 10⁻³ per example
with weight decay α = 10⁻⁶, and does not say whether α multiplies η. Both readings, one BP run
each (configs/lillicrap2016_mnist.toml: batch 100, lr 0.1 on the batch mean):

- ``decay_times_eta``: W ← W − η·α·W per example (lpfa ``train.weight_decay = 1e-6``, which
  lpfa multiplies by the lr: 10⁻⁷ per update of 100 examples);
- ``decay_per_example``: W ← W − α·W per example, 10⁻⁴ per update of 100
  (``train.weight_decay = 1e-3``).

The runs are ordinary ``lpfa train`` folders (history.csv written every epoch, so a run stopped
early still has its curve up to that epoch)::

    lpfa train configs/lillicrap2016_mnist.toml --set channel.rule=bp --set train.epochs=300 \\
        --set train.angle_every=50 --out DIR/decay_times_eta
    lpfa train configs/lillicrap2016_mnist.toml --set channel.rule=bp --set train.epochs=300 \\
        --set train.angle_every=50 --set train.weight_decay=1e-3 --out DIR/decay_per_example

This script reads DIR (default docs/data/lillicrap2016_bp_overfit), prints the table of test
error and test loss every 20 epochs with each run's best epoch, and draws ``overfit.png``:

    python experiments/lillicrap2016_bp_overfit.py [--out DIR] [--figure PATH]

Runtime of the runs: about 12 s per epoch on one loaded core (300 epochs: about an hour).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lpfa.report import read_history

ROOT = Path(__file__).resolve().parents[1]
READINGS = {
    "decay_times_eta": "α·η per example (weight_decay 1e-6)",
    "decay_per_example": "α per example (weight_decay 1e-3)",
}
EVERY = 20


def history(folder: Path) -> list[dict[str, float]]:
    """The evaluated epochs of one run: epoch, test error (%), test loss."""
    return [
        {
            "epoch": r["epoch"],
            "test_error": 100 * (1 - r["test_acc"]),
            "test_loss": r["test_loss"],
        }
        for r in read_history(folder / "history.csv")
        if r["test_acc"] is not None
    ]


def table(runs: dict[str, list[dict[str, float]]]) -> str:
    """Markdown: test error and loss every EVERY epochs per reading, then each run's best."""
    last = max(r["epoch"] for h in runs.values() for r in h)
    epochs = list(range(EVERY, last + 1, EVERY))
    head = "| epoch | " + " | ".join(f"{READINGS[k]}: error %, loss" for k in runs) + " |"
    lines = [head, "|---|" + "---|" * len(runs)]
    for e in epochs:
        cells = []
        for h in runs.values():
            row = next((r for r in h if r["epoch"] == e), None)
            cells.append("—" if row is None else f"{row['test_error']:.2f}, {row['test_loss']:.4f}")
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    lines.append("")
    for k, h in runs.items():
        best_err = min(h[1:], key=lambda r: r["test_error"])
        best_loss = min(h[1:], key=lambda r: r["test_loss"])
        lines.append(
            f"- {READINGS[k]}: trained to epoch {h[-1]['epoch']}; lowest test error "
            f"{best_err['test_error']:.2f} % at epoch {best_err['epoch']}, lowest test loss "
            f"{best_loss['test_loss']:.4f} at epoch {best_loss['epoch']}"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "data" / "lillicrap2016_bp_overfit")
    p.add_argument("--figure", type=Path, default=None, help="default: OUT/overfit.png")
    args = p.parse_args(argv)
    runs = {k: history(args.out / k) for k in READINGS if (args.out / k / "history.csv").exists()}
    if not runs:
        print(
            f"error: --out={args.out}: holds no run folder named {' or '.join(READINGS)}",
            file=sys.stderr,
        )
        return 2
    print(table(runs))
    from lpfa.plots import curves

    named = {READINGS[k]: [{**r, "member": 0} for r in h] for k, h in runs.items()}
    path = curves(
        named,
        [("test_error", "test error (%)"), ("test_loss", "test loss")],
        args.figure or args.out / "overfit.png",
        title="Lillicrap et al. 2016: BP at the paper's η, two decay readings",
        logy=["test_error", "test_loss"],
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
