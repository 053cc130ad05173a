"""Baldi, Sadowski & Lu (2018), §8: random feedback to the *top* layer "does not work at all".

§8: the postsynaptic terms "must (1) implement gradient descent for the top layer (i.e. random
weights in the learning channel for the top layer do not work at all)". lpfa's rules all train
the top layer by its gradient (Fact 1); ``channel.top_feedback = true`` replaces it by a random
projection of the top error, R^L = e · C^top with C^top (10 × 10) drawn from the channel's
feedback distribution (scaled normal), while the hidden layers' channel still carries e.

BP, RBP, SRBP and top-layer-only, each with the top layer on its gradient and on random
feedback, on the Baldi net (MNIST, 784-100×4-10 tanh/softmax, configs/baldi2018_mnist.toml),
the first 10 000 training and 5 000 test images, 10 epochs, 3 seeds. The paper gives no number
for this; the claim is read as: with random top feedback the net ends more than 10 points of
test accuracy below top-layer-only learning with the gradient (i.e. worse than not training the
deep layers at all). "holds" / "does not hold" per rule.

Runtime (one CPU thread): about 8 s per configuration, 8 configurations, about 1.5 minutes.
``--quick``: 2 000 images, 2 epochs, 2 seeds, top-layer-only and RBP with random top
feedback (a few seconds).

    python experiments/baldi2018_sec8_top_feedback.py [--quick] [--seeds N] [--out DIR]
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np

from lpfa import config as C
from lpfa.experiment import Results, obtain, parser, script, shrink, variants
from lpfa.plots import curves
from lpfa.report import final_rows
from lpfa.runfiles import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RULES = ("bp", "rbp", "srbp", "top")
QUICK_RULES = ("top",)
MARGIN = 10.0  # points of test accuracy below gradient-trained top-layer-only


def configs(quick: bool, seeds: int | None, backend: str) -> dict[str, C.RunConfig]:
    base = C.load(ROOT / "configs" / "baldi2018_mnist.toml")
    base = dataclasses.replace(
        base, seeds=tuple(range(seeds or (2 if quick else 3))), backend=backend
    )
    if quick:
        base = shrink(base, n_train=2000, n_test=1000, epochs=2)
    else:
        base = shrink(base, n_train=10_000, n_test=5000, epochs=10)
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, angle_every=None))
    channels = {}
    for rule in QUICK_RULES if quick else RULES:
        channels[f"{rule}-gradient"] = {"rule": rule}
        channels[f"{rule}-random"] = {"rule": rule, "top_feedback": True}
    if quick:
        channels["rbp-random"] = {"rule": "rbp", "top_feedback": True}
    return variants(base, channels)


def table(results: Results) -> str:
    lines = [
        "| rule | top layer learns by | final test accuracy (%, mean ± std) | claim: random top "
        "feedback ends > 10 points below top-layer-only (gradient) | holds? |",
        "|---|---|---|---|---|",
    ]
    done = results.done
    ref = done.get("top-gradient")
    ref_acc = None if ref is None else 100 * np.mean([r["test_acc"] for r in final_rows(ref)])
    for label in results.configs:
        rule, how = label.split("-")
        if label in results.diverged:
            lines.append(
                f"| {rule} | {how} | **diverged in epoch {results.diverged[label]}** | — | — |"
            )
            continue
        if label not in done:
            continue
        acc = 100 * np.array([r["test_acc"] for r in final_rows(done[label])], dtype=float)
        value = f"{acc.mean():.2f} ± {acc.std(ddof=1):.2f}"
        if how == "gradient" or ref_acc is None:
            lines.append(f"| {rule} | its gradient (Fact 1) | {value} | — | — |")
            continue
        ok = acc.max() < ref_acc - MARGIN
        lines.append(
            f"| {rule} | random feedback C^top | {value} | below {ref_acc - MARGIN:.2f} "
            f"for every seed | {'holds' if ok else '**does not hold**'} |"
        )
    return "\n".join(lines) + "\n"


@script
def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, "results/baldi2018_sec8_top_feedback").parse_args(argv)
    results = obtain(args, configs(args.quick, args.seeds, args.backend))
    out = results.out
    curves(
        results.runs,
        [("test_acc", "test accuracy")],
        out / "top_feedback.png",
        diverged=results.diverged,
        by=lambda k: k.split("-")[0],
        title="Baldi et al. §8: random feedback to the top layer",
    )
    text = table(results)
    atomic_write_text(
        out / "table.md", "# Baldi et al. 2018 §8: random top-layer feedback\n\n" + text
    )
    print(text)
    results.report()
    return results.exit_code


if __name__ == "__main__":
    sys.exit(main())
