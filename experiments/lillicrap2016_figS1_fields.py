"""Lillicrap et al. (2016), Supplementary Fig. S1: hidden units' receptive fields, BP and FA.

The paper shows the input weights of hidden units of the 784-1000-10 MNIST network after
training with backprop and with feedback alignment, side by side, and observes that they look
alike. Here both rules start from the *same* initial weights (the same seed draws W₀ the same
way whatever the rule), so the comparison can also be made number by number: for every hidden
unit, the cosine between its change of input weights under BP and under FA, ΔW₀ = W₀(end) −
W₀(start). Plotted: the changes of the 25 units whose BP change is largest, as 28 × 28 images,
BP on the left and FA on the right, each image on its own symmetric colour scale.

Protocol: configs/lillicrap2016_mnist.toml (784-1000-10 logistic, η = 0.1 per minibatch of 100,
weight decay 1e-6), one seed, ``--epochs`` epochs (default 10: the fields have formed by then;
the paper trains until BP overfits). Writes ``fields.png`` and ``summary.json`` (the cosines'
quantiles and the test accuracies; no weights) into ``--out``.

Runtime: about 1-2 minutes on one core at the default; ``--quick``: 5 000 examples, 1 epoch.

    python experiments/lillicrap2016_figS1_fields.py [--quick] [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from lpfa import config as C
from lpfa.backend import to_numpy
from lpfa.network import Network
from lpfa.plots import pyplot, save
from lpfa.runfiles import atomic_write_text, dump_json
from lpfa.training import train

ROOT = Path(__file__).resolve().parents[1]
RULES = {"bp": "backprop", "rbp": "feedback alignment"}
SHOWN = 25


def config(rule: str, epochs: int, quick: bool) -> C.RunConfig:
    sets = [f"channel.rule={rule}", f"train.epochs={epochs}", "train.angle_every=none"]
    if quick:
        sets += ["data.n_train=5000", "data.n_test=2000"]
    return C.load(ROOT / "configs" / "lillicrap2016_mnist.toml", sets)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-by-row cosine of two (units, inputs) arrays."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-300)


def draw(changes: dict[str, np.ndarray], units: np.ndarray, path: Path) -> Path:
    plt = pyplot()
    side = int(np.sqrt(SHOWN))
    fig, axes = plt.subplots(side, 2 * side + 1, figsize=(2 * side + 1, side + 0.6))
    for col0, (rule, delta) in zip((0, side + 1), changes.items(), strict=True):
        for k, unit in enumerate(units):
            ax = axes[k // side, col0 + k % side]
            img = delta[unit].reshape(28, 28)
            lim = float(np.abs(img).max()) or 1.0
            ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[0, col0 + side // 2].set_title(RULES[rule], fontsize=10)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    fig.suptitle(
        "Lillicrap et al. 2016, Fig. S1: change of hidden units' input weights", fontsize=10
    )
    return save(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="5 000 examples, 1 epoch")
    p.add_argument("--out", type=Path, default=Path("results/lillicrap2016_figS1_fields"))
    args = p.parse_args(argv)
    epochs = 1 if args.quick else args.epochs
    if epochs < 1:
        print(f"error: --epochs={epochs}: must be a positive integer", file=sys.stderr)
        return 2
    changes, acc = {}, {}
    for rule in RULES:
        cfg = config(rule, epochs, args.quick)
        start = to_numpy(Network.build(cfg).layers[0].W[0])
        result = train(cfg, progress=False)
        changes[rule] = to_numpy(result.network.layers[0].W[0]) - start
        acc[rule] = result.history[-1]["test_acc"]
    cos = cosines(changes["bp"], changes["rbp"])
    units = np.argsort(-np.linalg.norm(changes["bp"], axis=1))[:SHOWN]
    args.out.mkdir(parents=True, exist_ok=True)
    figure = draw(changes, units, args.out / "fields.png")
    q = np.quantile(cos, [0.1, 0.5, 0.9])
    summary = {
        "epochs": epochs,
        "quick": args.quick,
        "test_acc": acc,
        "cos_dW0_bp_fa": {"q10": float(q[0]), "median": float(q[1]), "q90": float(q[2])},
        "cos_dW0_shown_median": float(np.median(cos[units])),
        "units": int(cos.size),
    }
    atomic_write_text(args.out / "summary.json", dump_json(summary, indent=2) + "\n")
    print(
        f"{epochs} epoch(s): test accuracy BP {acc['bp']:.4f}, FA {acc['rbp']:.4f}; cosine of "
        f"the hidden units' weight changes, BP against FA: median {q[1]:.3f} (10-90 %: "
        f"{q[0]:.3f}-{q[2]:.3f}); wrote {figure} and summary.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
