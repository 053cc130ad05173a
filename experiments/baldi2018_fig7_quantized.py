"""Baldi, Sadowski & Lu (2018), Figures 7-8 and Table 1 quantized rows: few-bit channels.

MNIST, 784-100-100-100-100-10 tanh / softmax, batch 100, for BP, RBP and SRBP:

- quantized error (Fig. 7): the signal J^h each hidden neuron receives is quantized with eq. 19,
  α = 2⁻³, bits 1, 3, 5, before f′ and before it is relayed; the baseline schedule (lr 0.1,
  Keras decay 1e-6, 100 epochs);
- quantized update (Fig. 8): each example's weight change η·R_b ⊗ O_b is quantized with eq. 19,
  α = 2⁻⁶, bits 1, 3, 5, before the minibatch sum; lr 0.1 constant.

Two things the paper leaves open, as flags (docs/results.md has the runs of each):
``--underflow lowest`` (default) is eq. 19 as written, which raises every non-zero value below
the lowest level to it; ``--underflow zero`` sends values under half a log-step below the lowest
level to 0 (``flush_to_zero=True``: a zero code below the range, as in Miyashita et al.'s 2016
log quantizer). ``--update-of step`` (default) quantizes each example's step
η·R_b ⊗ O_b, ``--update-of gradient`` its gradient R_b ⊗ O_b before η. Without ``--out``, a
reading other than the defaults gets its own folder (e.g.
``results/baldi2018_fig7_quantized-underflow_zero``).

Paper (test accuracy %, 5 / 3 / 1 bits): error BP 97.6 / 96.5 / 94.6, RBP 95.4 / 92.5 / 89.8,
SRBP 95.1 / 93.2 / 91.6; update BP 95.2 / 96.5 / 92.5, RBP 94.0 / 91.0 / 9.6, SRBP 93.3 / 92.2 /
90.7.

Runtime on one CPU core, 1 seed: an error row ~4.5 min; an update row forms every example's
outer product explicitly, ~9 s per epoch, ~15 min for 100 epochs (``--update-epochs`` shortens
them). ``--only`` takes label prefixes, so two processes can share the work. ``--quick``: 2 000
examples, 2 epochs (update rows 1).

    python experiments/baldi2018_fig7_quantized.py [--quick] [--seeds N] [--update-epochs N]
        [--underflow lowest|zero] [--update-of step|gradient] [--only error,update5]
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np

from lpfa import config as C
from lpfa import papers
from lpfa.experiment import Results, accuracy_rows, obtain, parser, script, shrink, variants
from lpfa.plots import mark_diverged, pyplot, save
from lpfa.report import comparison_table, final_rows
from lpfa.runfiles import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RULES = ("bp", "rbp", "srbp")
BITS = (5, 3, 1)
ERROR = "log:bits={b},alpha=0.125,flush_to_zero={flush}"
UPDATE = "log:bits={b},alpha={alpha!r},flush_to_zero={flush}"
ALPHA_UPDATE = 2.0**-6
UNDERFLOW = {"zero": True, "lowest": False}
# Table 1's quantized rows, from the table's one home (lpfa/papers/baldi2018_table1.csv)
PAPER = papers.values(
    "baldi2018_table1", [f"{c}{b}_{r}" for c in ("error", "update") for b in BITS for r in RULES]
)
TARGETS = {k: (v - 1.5, v + 1.5) for k, v in PAPER.items()}


def configs(
    quick: bool,
    seeds: int | None,
    backend: str,
    update_epochs: int,
    flush: bool = False,
    gradient: bool = False,
) -> dict[str, C.RunConfig]:
    """The 18 labelled runs; ``gradient`` quantizes R_b ⊗ O_b before the learning rate.

    The channel quantizes η·R_b ⊗ O_b; eq. 19 commutes with a positive factor
    (η·Q_α(g) = Q_{ηα}(η·g)), so quantizing the gradient g with α is quantizing η·g with η·α.
    """
    base = C.load(ROOT / "configs" / "baldi2018_mnist.toml")
    base = dataclasses.replace(base, seeds=tuple(range(seeds or 1)), backend=backend)
    if quick:
        base = shrink(base, n_train=2000, n_test=1000, epochs=2)
        update_epochs = 1
    error = variants(
        base,
        {
            f"error{b}_{r}": {"rule": r, "error_format": ERROR.format(b=b, flush=flush)}
            for b in BITS
            for r in RULES
        },
    )
    update_base = dataclasses.replace(
        base,
        train=dataclasses.replace(
            base.train, lr_decay=0.0, epochs=min(base.train.epochs, update_epochs), angle_every=None
        ),
    )
    alpha = ALPHA_UPDATE * (update_base.train.lr if gradient else 1.0)
    update = variants(
        update_base,
        {
            f"update{b}_{r}": {
                "rule": r,
                "update_format": UPDATE.format(b=b, alpha=alpha, flush=flush),
            }
            for b in BITS
            for r in RULES
        },
    )
    return {**error, **update}


def plot(results: Results, path: Path, reading: str = "") -> None:
    """Test accuracy against bits, one line per rule, error and update panels (Fig. 7-8 style).

    A point is the mean over the seeds of one label, with ± 1 std error bars where there are
    several; a diverged label has no point, only a cross on the bottom edge saying so.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, channel in zip(axes, ("error", "update"), strict=True):
        for rule in RULES:
            xs, ours, spread, paper, seeds = [], [], [], [], set()
            for b in sorted(BITS):
                h = results.done.get(f"{channel}{b}_{rule}")
                if not h:
                    continue
                acc = [100 * r["test_acc"] for r in final_rows(h)]
                xs.append(b)
                ours.append(np.mean(acc))
                spread.append(np.std(acc, ddof=1) if len(acc) > 1 else 0.0)
                seeds.add(len(acc))
                paper.append(PAPER[f"{channel}{b}_{rule}"])
            color = f"C{RULES.index(rule)}"
            if xs:
                n = "–".join(map(str, sorted({min(seeds), max(seeds)})))
                what = f"mean ± std of {n} seeds" if max(seeds) > 1 else "1 seed"
                label = f"{rule.upper()} (lpfa, {what})"
                ax.errorbar(xs, ours, yerr=spread, fmt="o-", color=color, capsize=3, label=label)
                ax.plot(xs, paper, "x--", color=color, alpha=0.6, label=f"{rule.upper()} (paper)")
            for b in BITS:
                epoch = results.diverged.get(f"{channel}{b}_{rule}")
                if epoch is not None:
                    mark_diverged(ax, b, f"{rule.upper()} diverged (epoch {epoch})", color)
        epochs = {
            max(r["epoch"] for r in h)
            for k, h in results.done.items()
            if k.startswith(channel) and h
        }
        shown = f", epoch {max(epochs)}" if epochs else ""
        ax.set_xlabel("bits (eq. 19)")
        ax.set_title(f"{channel} channel{shown} (paper: epoch 100)", fontsize=10)
        ax.set_xticks(sorted(BITS))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%, mean over seeds)")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if reading:
        fig.suptitle(reading, fontsize=10)
    save(fig, path)


@script
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "results/baldi2018_fig7_quantized")
    p.add_argument("--update-epochs", type=int, default=100, help="epochs of the update rows")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated label prefixes to run, e.g. error,update5; finished labels are kept",
    )
    p.add_argument(
        "--underflow",
        choices=list(UNDERFLOW),
        default="lowest",
        help="below the lowest level: the lowest level (eq. 19 as written) or 0 (flush_to_zero)",
    )
    p.add_argument(
        "--update-of",
        choices=["step", "gradient"],
        default="step",
        help="update rows quantize each example's step η·R⊗O (default) or its gradient R⊗O",
    )
    args = p.parse_args(argv)
    # each reading has its own default folder: one never replaces another's runs
    args.default_out += "".join(
        f"-{flag}_{value}"
        for flag, value, default in (
            ("underflow", args.underflow, "lowest"),
            ("update_of", args.update_of, "step"),
        )
        if value != default
    )
    cfgs = configs(
        args.quick,
        args.seeds,
        args.backend,
        args.update_epochs,
        UNDERFLOW[args.underflow],
        args.update_of == "gradient",
    )
    only = None
    if args.only:
        prefixes = tuple(filter(None, (s.strip() for s in args.only.split(","))))
        only = [k for k in cfgs if k.startswith(prefixes)]
        if not only:
            p.error(f"--only={args.only!r}: matches no label (error1_bp ... update5_srbp)")
    results = obtain(args, cfgs, only)
    out = results.out
    table = comparison_table(accuracy_rows(results, PAPER, TARGETS), unit="test accuracy %")
    atomic_write_text(
        out / "table.md", "# Baldi et al. 2018, Table 1, quantized channels (MNIST)\n\n" + table
    )
    plot(
        results,
        out / "bits_accuracy.png",
        f"underflow={args.underflow}, update of {args.update_of}",
    )
    print(table)
    results.report()
    return results.exit_code


if __name__ == "__main__":
    sys.exit(main())
