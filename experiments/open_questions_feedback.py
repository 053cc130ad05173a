"""The blog post on Lillicrap et al. (2016): "what is the optimal fixed feedback matrix?"

Feedback alignment (RBP) with eight kinds of feedback B, on two tasks, next to backprop:

- ``gaussian`` (scaled normal, Baldi et al.'s choice), ``uniform``, ``sign`` (±s), ``orthogonal``
  (s·Q, Q Haar semi-orthogonal), ``congruent`` (Gaussian magnitudes with the signs of the forward
  weights), ``init`` (B = the transpose of the *initial* forward weights, then fixed),
  ``rank2`` (the best rank-2 approximation of the Gaussian draw), and ``adapt5`` (adaptive
  feedback, ARBP with adapt_lr = 0.1, learned for 5 epochs and then frozen).
- The Baldi net (MNIST, 784-100×4-10 tanh/softmax, configs/baldi2018_mnist.toml) on the first
  10 000 training and 5 000 test images, 20 epochs, 3 seeds; the scales are matched to the
  Gaussian's entry size (std ≈ 0.1: ``sign`` s = 0.1, ``uniform`` U[−0.17, 0.17], ``orthogonal``
  s = 1, whose entries have std 1/√100).
- Lillicrap's linear task (30-20-10, configs/lillicrap2016_linear.toml: B ~ U[−0.5, 0.5]),
  60 epochs, 5 seeds; scales matched to that uniform's std 0.29 (``orthogonal`` s = 1.29).

Measured: final test accuracy (MNIST) or NSE (linear), and epochs to a target: 89 % test
accuracy (MNIST; BP reaches it in 3 epochs here, Gaussian FA near the end) and NSE < 10⁻²
(linear, the bar of Fig. 1). The post asks a question and makes no claim; the table says
which B teaches best and whether the ranking is the same on both tasks. A kind meets the bar
when every seed reaches the target.

Runtime (one CPU thread): MNIST about 10 s per kind, linear about 2 s per kind; the whole
script about 2.5 minutes. ``--quick``: MNIST on 2 000 images for 2 epochs (Gaussian,
orthogonal), the linear task for 10 epochs (Gaussian, rank 2), 2 seeds (a few seconds).

    python experiments/open_questions_feedback.py [--quick] [--seeds N] [--out DIR]
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
TARGET = {"mnist": 0.89, "linear": 1e-2}

# per task: label -> channel fields (the rule is rbp unless given)
KINDS = {
    "mnist": {
        "bp": {"rule": "bp"},
        "gaussian": {"feedback": "glorot_normal"},
        "uniform": {"feedback": "uniform", "feedback_scale": 0.17},
        "sign": {"feedback": "sign", "feedback_scale": 0.1},
        "orthogonal": {"feedback": "orthogonal", "feedback_scale": 1.0},
        "congruent": {"feedback": "glorot_normal", "congruent": True},
        "init": {"feedback_from_init": True},
        "rank2": {"feedback": "glorot_normal", "feedback_rank": 2},
        "adapt5": {"feedback": "glorot_normal", "adapt_lr": 0.1, "adapt_epochs": 5},
    },
    "linear": {
        "bp": {"rule": "bp"},
        "gaussian": {"feedback": "normal", "feedback_scale": 0.29},
        "uniform": {"feedback": "uniform", "feedback_scale": 0.5},
        "sign": {"feedback": "sign", "feedback_scale": 0.29},
        "orthogonal": {"feedback": "orthogonal", "feedback_scale": 1.29},
        "congruent": {"feedback": "uniform", "feedback_scale": 0.5, "congruent": True},
        "init": {"feedback_from_init": True},
        "rank2": {"feedback": "uniform", "feedback_scale": 0.5, "feedback_rank": 2},
        "adapt5": {
            "feedback": "uniform",
            "feedback_scale": 0.5,
            "adapt_lr": 0.1,
            "adapt_epochs": 5,
        },
    },
}
QUICK_KINDS = {"mnist": ("gaussian", "orthogonal"), "linear": ("gaussian", "rank2")}


def configs(quick: bool, seeds: int | None, backend: str) -> dict[str, C.RunConfig]:
    mnist = C.load(ROOT / "configs" / "baldi2018_mnist.toml")
    linear = C.load(ROOT / "configs" / "lillicrap2016_linear.toml")
    n = seeds or (2 if quick else None)
    mnist = dataclasses.replace(mnist, seeds=tuple(range(n or 3)), backend=backend)
    linear = dataclasses.replace(linear, seeds=tuple(range(n or 5)), backend=backend)
    if quick:
        mnist = shrink(mnist, n_train=2000, n_test=1000, epochs=2)
        linear = dataclasses.replace(linear, train=dataclasses.replace(linear.train, epochs=10))
    else:
        mnist = shrink(mnist, n_train=10_000, n_test=5000, epochs=20)
    mnist = dataclasses.replace(mnist, train=dataclasses.replace(mnist.train, angle_every=None))
    out: dict[str, C.RunConfig] = {}
    for task, base in (("mnist", mnist), ("linear", linear)):
        kinds = {k: v for k, v in KINDS[task].items() if not quick or k in QUICK_KINDS[task]}
        channels = {f"{task}-{k}": {"rule": "rbp", **v} for k, v in kinds.items()}
        out.update(variants(base, channels))
    return out


def epochs_to(history: list, key: str, target: float, below: bool) -> list[int | None]:
    """Per member: the first epoch whose ``key`` meets the target (None if none does)."""
    members = sorted({r["member"] for r in history})
    out = []
    for m in members:
        rows = sorted((r for r in history if r["member"] == m), key=lambda r: r["epoch"])
        hit = [r["epoch"] for r in rows if (r[key] < target if below else r[key] >= target)]
        out.append(hit[0] if hit else None)
    return out


def table(results: Results) -> str:
    lines = [
        "| task | feedback B | final (mean ± std over seeds) | epochs to target (mean; seeds "
        "that reach it) | target | reached by every seed |",
        "|---|---|---|---|---|---|",
    ]
    for label in results.configs:
        task, kind = label.split("-", 1)
        if label in results.diverged:
            lines.append(
                f"| {task} | {kind} | **diverged in epoch {results.diverged[label]}** "
                f"| — | — | **no** (diverged) |"
            )
            continue
        if label not in results.runs:
            continue
        history = results.runs[label]
        key, below = ("test_nse", True) if task == "linear" else ("test_acc", False)
        final = np.array([r[key] for r in final_rows(history)], dtype=float)
        hits = epochs_to(history, key, TARGET[task], below)
        reached = [h for h in hits if h is not None]
        if task == "linear":
            value, target = f"NSE {final.mean():.2e} ± {final.std(ddof=1):.1e}", "NSE < 1e-2"
        else:
            value = f"{100 * final.mean():.2f} ± {100 * final.std(ddof=1):.2f} %"
            target = f"test acc ≥ {100 * TARGET[task]:.0f} %"
        speed = f"{np.mean(reached):.1f} ({len(reached)}/{len(hits)})" if reached else "never"
        ok = len(reached) == len(hits)
        lines.append(
            f"| {task} | {kind} | {value} | {speed} | {target} | {'yes' if ok else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


@script
def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, "results/open_questions_feedback").parse_args(argv)
    results = obtain(args, configs(args.quick, args.seeds, args.backend))
    out = results.out
    for task, key, name, logy in (
        ("mnist", "test_acc", "test accuracy", []),
        ("linear", "test_nse", "test NSE", ["test_nse"]),
    ):
        runs = {k.split("-", 1)[1]: v for k, v in results.runs.items() if k.startswith(task)}
        diverged = {
            k.split("-", 1)[1]: e for k, e in results.diverged.items() if k.startswith(task)
        }
        if runs:
            curves(
                runs,
                [(key, name)],
                out / f"{task}.png",
                logy=logy,
                diverged=diverged,
                title=f"Which fixed feedback teaches best? ({task})",
            )
    text = table(results)
    atomic_write_text(out / "table.md", "# Which fixed feedback B teaches best?\n\n" + text)
    print(text)
    results.report()
    return results.exit_code


if __name__ == "__main__":
    sys.exit(main())
