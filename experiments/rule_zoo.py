"""The credit-assignment zoo: every learning rule of lpfa on one protocol, ideal and non-ideal.

Every named setting of every rule (``lpfa audit --rules all``: BP, RBP/FA, SRBP/DFA, SBP,
mixed, cascade, pseudobackprop, node perturbation, top layer only, ARBP, ASRBP, sign symmetry
uSF / frSF / brSF, Kolen-Pollack, direct Kolen-Pollack, weight mirror, DRTP, sign-DFA, binary
DFA, low-rank feedback of rank 2; 22 settings) on Baldi et al.'s net (configs/baldi2018_mnist.toml:
784-100×4-10 tanh / softmax, batch 100, lr 0.1, Keras decay 1e-6, 100 epochs, 5 seeds), on
MNIST and Fashion-MNIST, each under three channels:

- ``ideal``: the rule as it is;
- ``error3``: a 3-bit error channel, ``channel.error_format = "log:bits=3,alpha=0.125"``
  (Baldi et al. 2018 §5, eq. 19): what each hidden unit receives is quantized;
- ``sparse50``: 50 % sparse feedback, ``channel.feedback_keep = 0.5`` (every feedback entry
  removed with probability ½, independently, at the draw; for low-rank feedback, which refuses
  removal, there is no such row). Rules that learn their feedback (ARBP, ASRBP, KP, DKP, weight
  mirror) are left out here: their learning would regrow the removed synapses.

Settings that a rule cannot take (a quantized channel for the rules that send nothing, sparse
feedback for the weight-transport rules) are listed as "n/a" with the reason.

Output (``OUT``): a folder per label ``{dataset}-{channel}-{rule}``, ``results.csv``,
``audit.json`` (the hardware audit of every configuration, from one traced step on the same net),
``table.md`` (test accuracy mean ± std next to the published number for the same or the closest
protocol, with its citation, MLP or not; "none found" where there is none; each rule's locality
and channel energy per step; the drop under the 3-bit and the sparse channel) and
``accuracy_vs_channel_energy.png`` (one point per rule and channel). ``--plot-only`` rebuilds all
of it from the run folders.

Runtime (one core): a pilot, ``kp`` on MNIST, 5 seeds, 3 epochs, trained in 17.9 s on a
loaded 2-core machine, 1.19 s per member-epoch (Baldi et al.'s Table 1 sweep, same net, ran at
0.64 s per member-epoch on an idle core). The full grid — 22 rule settings × 3 channels × 2 data
sets, of which 104 configurations apply, × 5 seeds × 100 epochs = 52 000 member-epochs — is
about 9 hours on one idle core (17 h loaded), less on a GPU (``--backend cupy``), where the 5
seeds of a configuration run as one batched program; rerun the same command to resume.
``--datasets``, ``--channels`` and ``--rules`` pick a part (the parts merge in OUT).
``--quick``: MNIST only (unless ``--datasets`` says otherwise), 2 000 training / 1 000 test
examples, 2 epochs, 2 seeds: a smoke run of every rule and channel (~1 min), not the protocol.

    python experiments/rule_zoo.py [--quick] [--datasets mnist,fashion-mnist]
        [--channels ideal,error3,sparse50] [--rules bp,kp,...] [--out DIR] [--plot-only]
"""

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from hwmodels.audit import audit, variant, write_json
from hwmodels.cli import RULE_VARIANTS
from lpfa import config as C
from lpfa import papers
from lpfa.experiment import obtain, parser, script, shrink
from lpfa.plots import pyplot, save
from lpfa.report import final_rows
from lpfa.runfiles import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RULES = list(RULE_VARIANTS)  # every named setting of every rule, in lpfa.rules' order
DATASETS = {"mnist": "mnist", "fashion-mnist": "fashion-mnist"}
CHANNELS = {
    "ideal": [],
    "error3": ["channel.error_format=log:bits=3,alpha=0.125"],
    "sparse50": ["channel.feedback_keep=0.5"],
}
BALDI = "baldi2018_table1"
# zoo label -> the row of Baldi et al.'s Table 1 with the same setting (same MLP, MNIST)
_BALDI_IDEAL = {"bp": "bp", "rbp": "rbp", "srbp": "srbp", "top": "top",
                "arbp": "adaptive_rbp", "asrbp": "adaptive_srbp"}  # fmt: skip
_BALDI_ERROR3 = {r: f"error3_{r}" for r in ("bp", "rbp", "srbp")}
# where the rule's own papers report numbers, and why none of them is this protocol
ELSEWHERE = {
    "usf": "Liao, Leibo & Poggio 2016; Xiao et al. 2019: CNNs (not MLP)",
    "frsf": "Liao, Leibo & Poggio 2016 (CNNs, not MLP)",
    "brsf": "Liao, Leibo & Poggio 2016 (CNNs, not MLP)",
    "kp": "Akrout et al. 2019: ImageNet ResNet-18/50 (not MLP)",
    "wm": "Akrout et al. 2019: ImageNet ResNet-18/50 (not MLP)",
    "dkp": "Webster, Choi & Ahn 2020: CNNs (not MLP)",
    "drtp": "Frenkel, Lefebvre & Bol 2021 (MNIST, CIFAR-10; other nets; not transcribed here)",
    "sdfa": "Frenkel, Lefebvre & Bol 2021 (MNIST, CIFAR-10; other nets; not transcribed here)",
    "bdfa": "Han & Yoo 2019: CNNs (not MLP)",
}


def _list(text: str | None, allowed, what: str) -> list[str]:
    if text is None:
        return list(allowed)
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise C.ConfigError(what, text, f"allowed: {', '.join(allowed)}")
    return names


def plan(args) -> tuple[dict[str, C.RunConfig], dict[str, str], dict[str, tuple]]:
    """The configurations to run (label -> config), those that do not apply (label -> why),
    and each label's (dataset, channel, rule)."""
    base = C.load(ROOT / "configs" / "baldi2018_mnist.toml")
    n = args.seeds or (2 if args.quick else 5)
    base = dataclasses.replace(
        base,
        seeds=tuple(range(n)),
        backend=args.backend,
        train=dataclasses.replace(base.train, angle_every=None if args.quick else 10),
    )
    if args.quick:
        base = shrink(base, n_train=2000, n_test=1000, epochs=2)
    configs, skipped, where = {}, {}, {}
    # --quick smokes MNIST only unless asked (Fashion-MNIST is a separate download)
    datasets = args.datasets or ("mnist" if args.quick else None)
    for ds in _list(datasets, DATASETS, "--datasets"):
        for ch in _list(args.channels, CHANNELS, "--channels"):
            for rule in _list(args.rules, RULES, "--rules"):
                label = f"{ds}-{ch}-{rule}"
                where[label] = (ds, ch, rule)
                overrides = [f"data.name={DATASETS[ds]}", *RULE_VARIANTS[rule], *CHANNELS[ch]]
                try:
                    cfg = variant(base, overrides, label)
                except C.ConfigError as err:
                    skipped[label] = str(err)
                    continue
                if ch == "sparse50" and cfg.channel.adapt_lr is not None:
                    skipped[label] = "learning feedback would regrow the removed synapses"
                    continue
                configs[label] = cfg
    return configs, skipped, where


def _accuracy(history: list[dict[str, Any]]) -> tuple[float, float, int] | None:
    last = final_rows(history)
    if not last:
        return None
    acc = np.array([100 * r["test_acc"] for r in last])
    std = float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
    return float(acc.mean()), std, len(acc)


def published(rule: str, ch: str, ds: str) -> str:
    """The published number for this setting (Baldi et al.'s Table 1, the same MLP), or where
    the rule's papers report theirs."""
    table = {"ideal": _BALDI_IDEAL, "error3": _BALDI_ERROR3}.get(ch, {})
    if ds == "mnist" and rule in table:
        row = papers.table(BALDI)
        value = papers.value(BALDI, table[rule])
        std = next((r.get("std") for r in row if r["label"] == table[rule]), None)
        pm = f" ± {std:.1f}" if isinstance(std, float) and not math.isnan(std) else ""
        return f"{value:.1f}{pm} (Baldi et al. 2018 Table 1; MLP, same net)"
    if ch == "ideal" and rule in ELSEWHERE:
        return f"none found for this protocol ({ELSEWHERE[rule]})"
    return "none found"


def audits(configs: dict[str, C.RunConfig], where) -> dict[tuple[str, str], Any]:
    """The hardware audit of every (channel, rule) that ran (the data set does not change it)."""
    out = {}
    for label, cfg in configs.items():
        _ds, ch, rule = where[label]
        if (ch, rule) not in out:
            out[(ch, rule)] = audit(cfg, label=f"{ch}-{rule}", source="random")
    return out


def _cell(acc) -> str:
    if acc is None:
        return "—"
    if isinstance(acc, str):
        return acc
    mean, std, n = acc
    return f"{mean:.2f} ± {std:.2f} ({n})"


def table(results, configs, skipped, where, found) -> str:
    """table.md: one table per data set, a row per rule."""
    accs: dict[str, Any] = {}
    for label in where:
        if label in skipped:
            accs[label] = "n/a"
        elif label in results.diverged:
            accs[label] = f"diverged (epoch {results.diverged[label]})"
        elif label in results.runs:
            accs[label] = _accuracy(results.runs[label])
        else:
            accs[label] = None
    # the epochs the stored runs trained (``--set train.epochs`` included), not the protocol's
    epochs = {max(r["epoch"] for r in h) for h in results.runs.values() if h} or {
        cfg.train.epochs for cfg in configs.values()
    }
    lines = [
        "# The credit-assignment zoo: test accuracy (%), mean ± std (seeds), after "
        f"{'/'.join(map(str, sorted(epochs)))} epochs",
        "",
        "Net: configs/baldi2018_mnist.toml (784-100×4-10 tanh / softmax, MLP). Channels: ideal; "
        'error3 = `channel.error_format = "log:bits=3,alpha=0.125"`; sparse50 = '
        "`channel.feedback_keep = 0.5`. Δ = that channel minus ideal. Locality and channel "
        "energy per step (J, one network, batch 100, Horowitz 45 nm float32) from `lpfa audit` "
        "of the ideal setting. Published values: the same MLP (Baldi et al. 2018, Table 1) where "
        "it has the setting; otherwise none found (where the rule's paper reports, and on what).",
        "",
    ]
    datasets = list(dict.fromkeys(ds for ds, _, _ in where.values()))
    rules = list(dict.fromkeys(r for _, _, r in where.values()))
    chans = list(dict.fromkeys(c for _, c, _ in where.values()))
    for ds in datasets:
        lines += [f"## {ds}", ""]
        head = ["rule", "locality", "channel J/step"]
        for ch in chans:
            head.append(f"{ch} (ours)")
            if ch != "ideal":
                head.append(f"Δ {ch}")
            if ch in ("ideal", "error3") and ds == "mnist":
                head.append(f"{ch}: published")
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for rule in rules:
            a = found.get(("ideal", rule))
            row = [
                rule,
                a.verdict if a else "—",
                f"{a.energy_per_step['channel']:.3g}" if a else "—",
            ]
            ideal = accs.get(f"{ds}-ideal-{rule}")
            for ch in chans:
                acc = accs.get(f"{ds}-{ch}-{rule}")
                row.append(_cell(acc))
                if ch != "ideal":
                    ok = isinstance(acc, tuple) and isinstance(ideal, tuple)
                    row.append(f"{acc[0] - ideal[0]:+.2f}" if ok else "—")
                if ch in ("ideal", "error3") and ds == "mnist":
                    row.append(published(rule, ch, ds))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    if skipped:
        lines += ["## Settings that do not apply", ""]
        why = {}
        for label, reason in skipped.items():
            why.setdefault(reason, []).append(label)
        for reason, labels in why.items():
            lines.append(f"- {', '.join(sorted(labels))}: {reason}")
        lines.append("")
    return "\n".join(lines)


def figure(results, where, found, path: Path) -> Path:
    """Test accuracy against channel energy per step, one point per rule and channel."""
    plt = pyplot()
    datasets = list(dict.fromkeys(ds for ds, _, _ in where.values()))
    fig, axes = plt.subplots(1, len(datasets), figsize=(7.5 * len(datasets), 5.5), squeeze=False)
    markers = {"ideal": "o", "error3": "s", "sparse50": "^"}
    energies = [a.energy_per_step["channel"] for a in found.values()]
    floor = min((e for e in energies if e > 0), default=1e-9) / 3  # rules with no channel
    for ax, ds in zip(axes[0], datasets, strict=True):
        for label, (d, ch, rule) in where.items():
            if d != ds or label not in results.done or (ch, rule) not in found:
                continue
            acc = _accuracy(results.done[label])
            if acc is None:
                continue
            a = found[(ch, rule)]
            x = max(a.energy_per_step["channel"], floor)
            color = "tab:blue" if a.local else "tab:red"
            ax.errorbar(x, acc[0], yerr=acc[1], fmt=markers[ch], color=color, ms=5, capsize=2)
            if ch == "ideal":
                ax.annotate(
                    rule, (x, acc[0]), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
        ax.set_xscale("log")
        ax.set_xlabel("learning-channel energy per step (J, audit)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{ds}: o ideal, ■ 3-bit error, ▲ 50 % sparse (red: non-local)")
        ax.grid(alpha=0.3)
    fig.suptitle("credit-assignment zoo, 784-100×4-10 (rules with no channel at the left edge)")
    return save(fig, path)


@script
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "results/rule_zoo")
    p.add_argument("--datasets", default=None, help=f"comma list of {', '.join(DATASETS)}")
    p.add_argument("--channels", default=None, help=f"comma list of {', '.join(CHANNELS)}")
    p.add_argument("--rules", default=None, help="comma list of rule settings (default: all)")
    args = p.parse_args(argv)
    configs, skipped, where = plan(args)
    results = obtain(args, configs)
    out = results.out
    found = audits({k: c for k, c in configs.items() if k in results.runs}, where)
    write_json(list(found.values()), out / "audit.json")
    atomic_write_text(out / "table.md", table(results, configs, skipped, where, found))
    figure(results, where, found, out / "accuracy_vs_channel_energy.png")
    atomic_write_text(out / "skipped.json", json.dumps(skipped, indent=1, ensure_ascii=False))
    results.report()
    print(f"wrote {out / 'table.md'}")
    return results.exit_code


if __name__ == "__main__":
    sys.exit(main())
