"""The blog post on Lillicrap et al. (2016): non-linear backward paths (and Baldi et al. §8).

The post: "they ignore any nonlinearities in the backward projection path ... It would be
interesting to explore what happens when non-linearities in the backward pathway are
included." Baldi et al. (2018, §8) conclude that the deep layers' signal may be F(T − O) with F
"a composition of linear propagation with non-linear activation functions".

Each channel unit passes its summed input J^h through g (``channel.backward``) before f′:
``linear`` (the papers' channel), ``tanh``, ``relu`` (only positive errors pass), ``sign`` and
``hardtanh`` (clip to [−1, 1]). RBP (g compounds down the chain) and SRBP, on the Baldi net
(MNIST, 784-100×4-10 tanh/softmax, configs/baldi2018_mnist.toml) with the first 10 000 training
and 5 000 test images, 20 epochs, 3 seeds; BP and top-layer-only as the two references.

Claim (Baldi §8) → measurement: a non-linear backward path still teaches the deep layers,
read as: its final test accuracy is within 2 points of the same rule's linear channel and
above top-layer-only. "holds" / "does not hold" per rule and curve.

Runtime (one CPU thread): about 10 s per configuration, 12 configurations, 2.6 minutes.
``--quick``: 2 000 images, 2 epochs, 2 seeds, top-layer-only, RBP linear/sign, SRBP
linear/tanh (a few seconds).

    python experiments/open_questions_backward.py [--quick] [--seeds N] [--out DIR]
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
CURVES = ("linear", "tanh", "relu", "sign", "hardtanh")
QUICK_CURVES = {"rbp": ("linear", "sign"), "srbp": ("linear", "tanh")}
MARGIN = 2.0  # points of test accuracy: "within" the linear channel


def configs(quick: bool, seeds: int | None, backend: str) -> dict[str, C.RunConfig]:
    base = C.load(ROOT / "configs" / "baldi2018_mnist.toml")
    base = dataclasses.replace(
        base, seeds=tuple(range(seeds or (2 if quick else 3))), backend=backend
    )
    if quick:
        base = shrink(base, n_train=2000, n_test=1000, epochs=2)
    else:
        base = shrink(base, n_train=10_000, n_test=5000, epochs=20)
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, angle_every=None))
    channels: dict[str, dict] = (
        {"top": {"rule": "top"}} if quick else {"bp": {"rule": "bp"}, "top": {"rule": "top"}}
    )
    for rule in ("rbp", "srbp"):
        for g in CURVES if not quick else QUICK_CURVES[rule]:
            channels[f"{rule}-{g}"] = {"rule": rule, "backward": g}
    return variants(base, channels)


def final_acc(results: Results, label: str) -> np.ndarray | None:
    if label not in results.runs or label in results.diverged:
        return None
    return 100 * np.array([r["test_acc"] for r in final_rows(results.runs[label])], dtype=float)


def table(results: Results) -> str:
    lines = [
        "| rule | backward g | final test accuracy (%, mean ± std) | vs linear channel (points) "
        "| claim: still learns (within 2 points of linear, above top-layer-only) | holds? |",
        "|---|---|---|---|---|---|",
    ]
    top = final_acc(results, "top")
    for label in results.configs:
        acc = final_acc(results, label)
        rule, _, g = label.partition("-")
        if label in results.diverged:
            lines.append(
                f"| {rule} | {g or '—'} | **diverged in epoch {results.diverged[label]}** "
                f"| — | — | **no** (diverged) |"
            )
            continue
        if acc is None:
            continue
        value = f"{acc.mean():.2f} ± {acc.std(ddof=1):.2f}"
        if not g:
            lines.append(f"| {rule} | (reference) | {value} | — | — | — |")
            continue
        linear = final_acc(results, f"{rule}-linear")
        if g == "linear" or linear is None:
            lines.append(f"| {rule} | {g} | {value} | 0 | the papers' channel | — |")
            continue
        diff = acc.mean() - linear.mean()
        ok = diff >= -MARGIN and (top is None or acc.mean() > top.mean())
        lines.append(
            f"| {rule} | {g} | {value} | {diff:+.2f} | within {MARGIN:g} points | "
            f"{'holds' if ok else '**does not hold**'} |"
        )
    return "\n".join(lines) + "\n"


@script
def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, "results/open_questions_backward").parse_args(argv)
    results = obtain(args, configs(args.quick, args.seeds, args.backend))
    out = results.out
    refs = {k: v for k, v in results.runs.items() if "-" not in k}
    for rule in ("rbp", "srbp"):
        runs = {**refs, **{k: v for k, v in results.runs.items() if k.startswith(rule + "-")}}
        diverged = {k: e for k, e in results.diverged.items() if k in runs}
        curves(
            runs,
            [("test_acc", "test accuracy")],
            out / f"backward_{rule}.png",
            diverged=diverged,
            title=f"{rule.upper()} with a non-linear backward path (MNIST)",
        )
    text = table(results)
    atomic_write_text(out / "table.md", "# Non-linear backward paths (MNIST, Baldi net)\n\n" + text)
    print(text)
    results.report()
    return results.exit_code


if __name__ == "__main__":
    sys.exit(main())
