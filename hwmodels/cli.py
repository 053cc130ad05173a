"""``lpfa audit``: the hardware audit of learning rules, as a subcommand of the lpfa CLI.

lpfa audit CONFIG [--rules bp,rbp,srbp,...] [--preset baldi2018] [--variant LABEL:F=V;F=V]
                  [--set section.field=value ...] [--out DIR] [--results CSV ...]

Registered through the ``lpfa.commands`` entry point (``hwmodels.cli:add_commands``), so lpfa
never imports hwmodels.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from lpfa import config as C
from lpfa import papers
from lpfa.config import ConfigError, add_set_option
from lpfa.rules import RULES, aliases

__all__ = ["PRESETS", "RULE_VARIANTS", "add_commands", "expand"]

# names accepted by --rules, with the channel fields they set (each rule's declaration)
RULE_VARIANTS: dict[str, list[str]] = {
    label: overrides for rule in RULES.values() for label, overrides in rule.settings().items()
}
# rows of a paper table, with its labels and settings, so that results join on them
PRESETS: dict[str, dict[str, list[str]]] = {
    "baldi2018": papers.variants(
        "baldi2018_table1",
        [
            "bp",
            "rbp",
            "srbp",
            "sparse1_rbp",
            "sparse1_srbp",
            *(f"error{b}_{r}" for r in ("bp", "rbp", "srbp") for b in (5, 3, 1)),
        ],
    ),
}
# --results paper:NAME reads a table of lpfa.papers; paper:baldi2018 is Baldi et al.'s Table 1
_PAPER_ALIASES = {"baldi2018": "baldi2018_table1"}


def expand(rules: str | None, presets: list[str], variants: list[str]) -> dict[str, list[str]]:
    """Labelled override lists from ``--rules``, ``--preset`` and ``--variant`` options."""
    out: dict[str, list[str]] = {}
    if rules:
        names = list(RULE_VARIANTS) if rules.strip() == "all" else rules.split(",")
        for name in (n.strip() for n in names if n.strip()):
            key = name.lower().replace("-", "_")
            key = aliases().get(key, key)
            if key not in RULE_VARIANTS:
                raise ConfigError(
                    "--rules", name, f"unknown rule; allowed: {', '.join(RULE_VARIANTS)}, all"
                )
            out[name] = RULE_VARIANTS[key]
    for name in presets:
        out.update(PRESETS[name])
    for text in variants:
        label, sep, rest = text.partition(":")
        if not sep or not label.strip():
            raise ConfigError("--variant", text, "must look like LABEL:section.field=value;...")
        out[label.strip()] = [s.strip() for s in rest.split(";") if s.strip()]
    return out


def _results(paths: list[str]) -> dict[str, float]:
    """Accuracy per label from ``--results`` files; a missing or unusable one is a ConfigError."""
    from hwmodels.audit import read_accuracy

    acc: dict[str, float] = {}
    for p in paths:
        if p.startswith("paper:"):
            name = p.removeprefix("paper:")
            name = _PAPER_ALIASES.get(name, name)
            if name not in papers.names():
                raise ConfigError("--results", p, f"allowed papers: {', '.join(papers.names())}")
            acc.update(papers.values(name))
            continue
        try:
            acc.update(read_accuracy(Path(p)))
        except OSError as err:
            raise ConfigError("--results", p, f"cannot be read: {err.strerror}") from None
        except (ValueError, KeyError, UnicodeDecodeError) as err:
            raise ConfigError(
                "--results", p, f"must be a CSV with columns label and test_acc ({err})"
            ) from None
    return acc


def _floorplan(args: argparse.Namespace):
    from hwmodels.layout import Floorplan

    for flag, value in (("--layer-pitch", args.layer_pitch), ("--unit-pitch", args.unit_pitch)):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(flag, value, "must be a finite length >= 0 (mm)")
    return Floorplan(layer_pitch_mm=args.layer_pitch, unit_pitch_mm=args.unit_pitch)


def _tech(args: argparse.Namespace, dtypes: set[str]):
    """The energy table of ``--tech``, checked to price ``--arith`` (or every variant's dtype)."""
    from hwmodels.energy import TechTable, arith_format

    try:
        table = TechTable.load(args.tech)
    except OSError as err:
        raise ConfigError("--tech", args.tech, f"cannot be read: {err.strerror}") from None
    except (ValueError, UnicodeDecodeError) as err:  # tomllib's errors are ValueErrors
        raise ConfigError("--tech", args.tech, f"not a technology table: {err}") from None
    fmts = {args.arith} if args.arith else {arith_format(d) for d in dtypes}
    for fmt in sorted(fmts):
        try:
            for kind in ("mult", "add", "other"):
                table.op(fmt, kind)
        except KeyError as err:
            raise ConfigError("--arith", fmt, str(err.args[0])) from None
    return table


def _audit(args: argparse.Namespace) -> int:
    """``lpfa audit``: every input is checked before anything is computed or written."""
    from hwmodels.audit import audit, format_table, plot_accuracy, plot_audits, variant, write_json
    from lpfa.runfiles import check_out
    from lpfa.training import check_memory

    base = C.load(args.config, args.set)
    variants = expand(args.rules, args.preset, args.variant)
    if not variants:
        variants = {str(base.channel.rule.value): []}
    configs = {label: variant(base, ov, label) for label, ov in variants.items()}
    for cfg in configs.values():
        check_memory(cfg)
    fp = _floorplan(args)
    table = _tech(args, {c.model.dtype for c in configs.values()})
    acc = _results(args.results) if args.results else None
    if acc is not None and not any(label in acc for label in configs):
        raise ConfigError(
            "--results",
            ",".join(args.results),
            f"has no accuracy for any audited label ({', '.join(configs)})",
        )
    out = check_out(Path(args.out) if args.out else Path("results") / "audit" / base.name)
    kw = {"source": args.data, "floorplan": fp, "tech": table, "arith": args.arith}
    audits = [audit(cfg, label, macs=args.macs, **kw) for label, cfg in configs.items()]
    print(f"lpfa audit {args.config}: {len(audits)} configurations, one traced step each\n")
    print(format_table(audits))
    files = [write_json(audits, out / "audit.json"), *plot_audits(audits, out)]
    if acc is not None:
        files.append(plot_accuracy(audits, acc, out / "accuracy_vs_cost.png"))
        missing = [a.label for a in audits if a.label not in acc]
        if missing:
            print(f"\nno accuracy in the results for: {', '.join(missing)}")
    print("\nwrote " + ", ".join(str(f) for f in files))
    return 0


def add_commands(subparsers) -> None:
    """Add ``audit`` to the ``lpfa`` command line (the ``lpfa.commands`` entry point)."""
    p = subparsers.add_parser(
        "audit",
        help="audit learning rules for locality, wiring, bits and energy (one traced step)",
        description=(
            "Run one real training step of CONFIG's network per rule with traced arrays and "
            "report which signals every update read, the channel's operations, feedback "
            "synapses, wires, bits and energy."
        ),
    )
    p.add_argument("config", help="a TOML run configuration, e.g. configs/baldi2018_mnist.toml")
    p.add_argument(
        "--rules",
        help=f"comma-separated rules to compare ({', '.join(RULE_VARIANTS)}) or 'all'; "
        "default: the config's own rule",
    )
    p.add_argument(
        "--preset",
        action="append",
        default=[],
        choices=sorted(PRESETS),
        help="a named set of variants (baldi2018: BP/RBP/SRBP, sparse-1, 5/3/1-bit errors)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:FIELD=VALUE;...",
        help="a labelled variant, e.g. 'q3:channel.rule=srbp;channel.error_format=log:bits=3,"
        "alpha=0.125' (repeatable)",
    )
    add_set_option(p, "a field of the base config")
    p.add_argument("--out", help="output folder (default: results/audit/<config name>)")
    p.add_argument(
        "--results",
        action="append",
        default=[],
        metavar="CSV",
        help="results file with columns label,test_acc (e.g. results/<exp>/results.csv), or "
        "paper:NAME, a table of lpfa.papers (paper:baldi2018 is Baldi et al.'s Table 1), for the "
        "accuracy-vs-cost figure",
    )
    p.add_argument(
        "--data",
        choices=("data", "random"),
        default="data",
        help="step on the first minibatch of the config's data (default) or on random inputs",
    )
    p.add_argument("--tech", help="energy table (TOML); default: bundled horowitz45")
    p.add_argument("--arith", help="arithmetic entry of the table (default: the model's dtype)")
    p.add_argument(
        "--macs",
        choices=("synapses", "executed", "events"),
        default="synapses",
        help="MACs priced: with a non-zero synapse (default), all executed, or event-driven",
    )
    p.add_argument("--layer-pitch", type=float, default=1.0, help="mm between layers (1)")
    p.add_argument("--unit-pitch", type=float, default=0.01, help="mm between units (0.01)")
    p.set_defaults(func=_audit)
