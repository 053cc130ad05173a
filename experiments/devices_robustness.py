"""Device physics on every array: BP, RBP, SRBP and sparse / 1-bit-feedback SRBP under each
non-ideality swept alone, on the Baldi net or Lillicrap's 784-1000-10 net (issue 15).

Wolters et al. (2023, DFA through NeuroSim) found that BP degrades *less* than DFA under
compute-in-memory non-idealities. Here the forward arrays W (``model.device``) and the feedback
arrays C (``channel.device``) each have their own device, and BP's transposed read of W is as
noisy as its forward read. Effects, each alone (lpfa.devices; device units, ``scale`` = 0.25 maps
the device range −1 … 1 onto weights of ±0.25):

- ``states``: pulsed constant-step update with bounds ±1, (w_max − w_min)/dw_min states;
- ``asymmetry``: up_down at 1 000 states; ``d2d``: dw_min_dtod at 1 000 states;
  ``c2c``: dw_min_std at 1 000 states;
- ``readW``: read noise on the forward arrays (BP: on its transposed read too);
  ``readC``: on the feedback arrays only (BP has none); ``readWC``: both, equal;
- ``stuckC``: a fraction of the feedback devices stuck at 0.

Net (``--net``): ``baldi``, configs/baldi2018_mnist.toml (784-100×4-10 tanh/softmax, Glorot,
lr 0.1, batch 100; the default); ``lillicrap``, configs/lillicrap2016_mnist.toml (784-1000-10
logistic units, U[−0.05, 0.05] weights and feedback, lr 0.1, batch 100, weight decay 1e-6),
where RBP and SRBP coincide (one hidden layer). The rules below change only the channel fields
they name, so the feedback scale is the config's.
Rules: ``bp``, ``rbp``, ``srbp``, ``srbp-sparse1`` (Bernoulli feedback, one non-zero per output
unit), ``srbp-1bit`` (±1 feedback). Output: one figure per effect (final test accuracy vs
strength, mean ± std over seeds), ``table.md`` with the accuracy drop of every rule and the
"is BP more robust?" comparison per effect and strength.

Full protocol: all of MNIST, 10 epochs, 5 seeds (one ensemble per configuration), 5 rules ×
(1 ideal + 24 strengths, BP without the 6 feedback-array ones) = 124 configurations. Runtime
from a pilot (50 steps of a 5-seed ensemble, one CPU thread of a shared machine): 1.4 s ideal,
1.7-2.0 s with devices, i.e. 3-4 minutes per configuration for 6 000 steps, about 7 hours in all.
``--quick``: 2 000 images, 1 epoch, 1 seed, BP and SRBP, the middle strength of each effect
(17 configurations, about 15 s).

    python experiments/devices_robustness.py [--quick] [--seeds N] [--net baldi|lillicrap]
        [--out DIR] [--plot-only]
"""

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

from lpfa import config as C
from lpfa.experiment import Results, obtain, parser, script, shrink
from lpfa.plots import pyplot, save
from lpfa.report import final_rows
from lpfa.runfiles import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
NETS = {"baldi": ("baldi2018_mnist.toml", "Baldi net"),
        "lillicrap": ("lillicrap2016_mnist.toml", "Lillicrap's 784-1000-10 net")}  # fmt: skip
SCALE = 0.25
BOUNDS = {"w_min": -1.0, "w_max": 1.0}
PULSED = {"dw_min": 0.002, **BOUNDS}  # 1 000 states
RULES = {
    "bp": {"rule": "bp"},
    "rbp": {"rule": "rbp"},
    "srbp": {"rule": "srbp"},
    "srbp-sparse1": {"rule": "srbp", "feedback": "bernoulli", "feedback_nonzeros": 1.0},
    "srbp-1bit": {"rule": "srbp", "feedback": "sign"},
}
# effect -> (strengths, the x-axis name, fields of (model.device, channel.device) at strength s)
EFFECTS = {
    "states": ((10_000, 1000, 300, 100), "states",
               lambda s: ({"dw_min": 2.0 / s, **BOUNDS}, None)),
    "asymmetry": ((0.01, 0.05, 0.2), "up_down", lambda s: ({**PULSED, "up_down": s}, None)),
    "d2d": ((0.3, 1.0, 2.0), "dw_min_dtod", lambda s: ({**PULSED, "dw_min_dtod": s}, None)),
    "c2c": ((0.3, 1.0, 3.0), "dw_min_std", lambda s: ({**PULSED, "dw_min_std": s}, None)),
    "readW": ((0.01, 0.03, 0.1), "read_noise on W", lambda s: ({"read_noise": s}, None)),
    "readC": ((0.01, 0.03, 0.1), "read_noise on C", lambda s: (None, {"read_noise": s})),
    "readWC": ((0.01, 0.03, 0.1), "read_noise on W and C",
               lambda s: ({"read_noise": s}, {"read_noise": s})),
    "stuckC": ((0.01, 0.1, 0.3), "stuck fraction of C", lambda s: (None, {"stuck_prob": s})),
}  # fmt: skip
QUICK = {"rules": ("bp", "srbp"), "index": 1}  # the middle strength of each effect


def _dev(fields):
    return None if fields is None else C.from_dict(C.DeviceConfig, {**fields, "scale": SCALE})


def configs(
    quick: bool, seeds: int | None, backend: str, net: str = "baldi"
) -> dict[str, C.RunConfig]:
    base = C.load(ROOT / "configs" / NETS[net][0])
    base = dataclasses.replace(base, seeds=tuple(range(seeds or (1 if quick else 5))),
                               backend=backend)  # fmt: skip
    base = (
        shrink(base, n_train=2000, n_test=1000, epochs=1)
        if quick
        else shrink(base, n_train=60_000, n_test=10_000, epochs=10)
    )
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, angle_every=None))
    out = {}
    for rule, ch in RULES.items() if not quick else [(r, RULES[r]) for r in QUICK["rules"]]:
        channel = C.from_dict(C.ChannelConfig, {**C.to_dict(base.channel), **ch})
        out[f"{rule}__ideal__0"] = dataclasses.replace(base, channel=channel)
        for eff, (strengths, _, fields) in EFFECTS.items():
            chosen = strengths if not quick else strengths[QUICK["index"] : QUICK["index"] + 1]
            for s in chosen:
                wdev, cdev = fields(s)
                if rule == "bp" and wdev is None:
                    continue  # BP has no feedback array
                out[f"{rule}__{eff}__{s:g}"] = dataclasses.replace(
                    base,
                    model=dataclasses.replace(base.model, device=_dev(wdev)),
                    channel=dataclasses.replace(channel, device=_dev(cdev)),
                )
    return out


def final_acc(results: Results, label: str) -> np.ndarray | None:
    if label not in results.runs or label in results.diverged:
        return None
    return 100 * np.array([r["test_acc"] for r in final_rows(results.runs[label])], dtype=float)


def figures(results: Results, out: Path, net: str = "baldi") -> list[Path]:
    plt = pyplot()
    paths = []
    rules = list(dict.fromkeys(k.split("__")[0] for k in results.configs))
    for eff, (strengths, xname, _) in EFFECTS.items():
        fig, ax = plt.subplots(figsize=(5, 3.4))
        any_line = False
        for rule in rules:
            xs, ms, ss = [], [], []
            for s in strengths:
                acc = final_acc(results, f"{rule}__{eff}__{s:g}")
                if acc is not None:
                    xs.append(s), ms.append(acc.mean()), ss.append(acc.std())
            if xs:
                any_line = True
                ax.errorbar(xs, ms, yerr=ss, marker="o", ms=3, capsize=2, label=rule)
        if not any_line:
            plt.close(fig)
            continue
        ax.set_xscale("log")
        ax.set_xlabel(xname)
        ax.set_ylabel("final test accuracy (%)")
        ax.set_title(f"{eff}, swept alone ({NETS[net][1]}, MNIST)", fontsize=9)
        ax.legend(fontsize=7)
        path = out / f"devices_{eff}.png"
        save(fig, path)
        paths.append(path)
    return paths


def _verdict(drops: dict[str, tuple[float, float]]) -> str:
    """BP against RBP and SRBP: a difference of drops counts only beyond twice its standard
    error (each drop is paired by seed, so its error is the spread of the per-seed drops)."""
    others = {r: v for r, v in drops.items() if r in ("rbp", "srbp")}
    if "bp" not in drops or not others:
        return "— (no BP run: BP has no feedback array)"
    bp, se_bp = drops["bp"]
    worse = [r for r, (d, se) in others.items() if bp - d > 2 * math.hypot(se_bp, se)]
    better = [r for r, (d, se) in others.items() if d - bp > 2 * math.hypot(se_bp, se)]
    if worse:
        return "no: BP drops more than " + ", ".join(worse)
    if len(better) == len(others):
        return "yes: BP drops least"
    ties = [r for r in others if r not in better]
    return (
        "tie within noise with "
        + ", ".join(ties)
        + (f" (BP drops less than {', '.join(better)})" if better else "")
    )


def table(results: Results) -> str:
    rules = list(dict.fromkeys(k.split("__")[0] for k in results.configs))
    ideal = {r: final_acc(results, f"{r}__ideal__0") for r in rules}
    head = " | ".join(f"{r} drop" for r in rules)
    lines = [f"| effect | strength | {head} | BP more robust than FA / DFA? |",
             "|---|---|" + "---|" * len(rules) + "---|"]  # fmt: skip
    base = ["—" if ideal[r] is None else f"({ideal[r].mean():.2f} %)" for r in rules]
    lines.append("| ideal | — | " + " | ".join(base) + " | — |")
    for eff, (strengths, _, _) in EFFECTS.items():
        for s in strengths:
            drops = {}  # rule -> (mean drop, its standard error), paired by seed
            for r in rules:
                acc = final_acc(results, f"{r}__{eff}__{s:g}")
                if acc is not None and ideal[r] is not None and len(acc) == len(ideal[r]):
                    d = ideal[r] - acc
                    se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0.0
                    drops[r] = (float(d.mean()), float(se))
            if not drops:
                continue
            cells = " | ".join(
                f"{drops[r][0]:+.2f} ± {drops[r][1]:.2f}" if r in drops else "—" for r in rules
            )
            lines.append(f"| {eff} | {s:g} | {cells} | {_verdict(drops)} |")
    return "\n".join(lines) + "\n"


@script
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "results/devices_robustness")
    p.add_argument("--net", default="baldi", choices=tuple(NETS), help="the net (default baldi)")
    args = p.parse_args(argv)
    results = obtain(args, configs(args.quick, args.seeds, args.backend, args.net))
    out = results.out
    figures(results, out, args.net)
    text = table(results)
    note = ("Drop = ideal accuracy − accuracy with the effect (points of final test accuracy, "
            "mean ± standard error over seeds, paired by seed). 'BP more robust' compares "
            "BP's drop with RBP's and SRBP's; a difference counts only beyond twice its "
            "standard error."
            "\n\n")  # fmt: skip
    title = f"# Device non-idealities, each alone ({NETS[args.net][1]}, MNIST)"
    atomic_write_text(out / "table.md", title + "\n\n" + note + text)
    print(text)
    results.report()
    return results.exit_code


if __name__ == "__main__":
    sys.exit(main())
