"""What every experiment script shares: its flags, running named configs, and its output files.

An experiment reproduces one figure or table: it trains a few named configurations (each an
ensemble over seeds), writes each run's files under ``OUT/<label>/``, one ``results.csv`` of final
metrics per label and seed, and leaves the table and plots to the script.
"""

import argparse
import csv
import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lpfa.backend import BACKENDS
from lpfa.cli import add_set_option
from lpfa.config import ChannelConfig, RunConfig, apply_overrides, from_dict, to_dict
from lpfa.report import read_history
from lpfa.runfiles import RunWriter
from lpfa.train import DivergenceError, train

__all__ = ["load_runs", "parser", "run_all"]


def parser(doc: str, default_out: str) -> argparse.ArgumentParser:
    """The flags every experiment takes: --quick --backend --seeds --out --plot-only."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="a small version that runs in minutes on a CPU"
    )
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.add_argument(
        "--seeds", type=int, default=None, help="members per configuration (ensemble size)"
    )
    p.add_argument("--out", default=default_out, help="output folder (default: %(default)s)")
    p.add_argument("--plot-only", action="store_true", help="redraw table and plots from OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_set_option(p, "a field of every configuration")
    return p


def run_all(
    configs: Mapping[str, RunConfig], out: Path, *, progress: bool | None = None
) -> dict[str, list]:
    """Train each config, writing ``OUT/<label>/{config.json,history.csv,summary.json}`` as it goes.

    A configuration that diverges is recorded (its summary says so) and the others still run.
    Returns label -> history rows.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(
        json.dumps({label: to_dict(c) for label, c in configs.items()}, indent=2) + "\n"
    )
    runs: dict[str, list] = {}
    for label, cfg in configs.items():
        writer = RunWriter(out / label, cfg)
        print(
            f"[{label}] {cfg.channel.rule.value}, {cfg.n_members} seeds, {cfg.train.epochs} epochs",
            flush=True,
        )
        try:
            result = train(cfg, progress=progress, on_epoch=writer.rows)
        except DivergenceError as err:
            print(f"[{label}] {err}", file=sys.stderr)
            writer.summary({"name": label}, status="diverged", error=str(err))
            runs[label] = err.history
            continue
        writer.summary(result.summary, status="done", meta=result.meta)
        runs[label] = result.history
    write_results(out, runs)
    return runs


def write_results(out: Path, runs: Mapping[str, list]) -> Path:
    """``results.csv``: the last epoch of every label and member."""
    rows: list[dict[str, Any]] = []
    for label, history in runs.items():
        if not history:
            continue
        last = max(r["epoch"] for r in history)
        rows += [{"label": label, **r} for r in history if r["epoch"] == last]
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    path = out / "results.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in fields} for r in rows)
    return path


def load_runs(out: Path, labels: list[str]) -> dict[str, list]:
    """Histories written by :func:`run_all` (for ``--plot-only``)."""
    runs = {}
    for label in labels:
        path = out / label / "history.csv"
        if not path.is_file():
            raise SystemExit(f"--plot-only: {path} not found; run the experiment first")
        runs[label] = read_history(path)
    return runs


def variants(base: RunConfig, channels: Mapping[str, dict[str, Any]]) -> dict[str, RunConfig]:
    """One config per label: ``base`` with its channel replaced by the given fields."""
    return {
        label: dataclasses.replace(
            base, name=label, channel=from_dict(ChannelConfig, {**to_dict(base.channel), **kw})
        )
        for label, kw in channels.items()
    }


def accuracy_rows(
    runs: Mapping[str, list],
    paper: Mapping[str, float | None],
    targets: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Rows for :func:`lpfa.report.comparison_table`: final test accuracy (%) over members."""
    rows = []
    for key, history in runs.items():
        if not history:
            continue
        last = max(r["epoch"] for r in history)
        acc = [100 * r["test_acc"] for r in history if r["epoch"] == last]
        mean = sum(acc) / len(acc)
        std = (sum((a - mean) ** 2 for a in acc) / (len(acc) - 1)) ** 0.5 if len(acc) > 1 else 0.0
        label = (labels or {}).get(key, key)
        rows.append(
            {
                "label": f"{label} (epoch {last})",
                "mean": mean,
                "std": std,
                "n": len(acc),
                "paper": paper.get(key),
                "target": (targets or {}).get(key),
            }
        )
    return rows


def shrink(
    base: RunConfig, *, n_train: int = 5000, n_test: int = 2000, epochs: int = 3
) -> RunConfig:
    """The ``--quick`` version of a config: fewer examples and epochs, everything else kept."""
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, n_train=n_train, n_test=n_test),
        train=dataclasses.replace(base.train, epochs=epochs),
    )


def obtain(args: argparse.Namespace, configs: Mapping[str, RunConfig]) -> dict[str, list]:
    """Train ``configs`` into ``args.out``, or with ``--plot-only`` read what an earlier run wrote
    (the labels it has)."""
    out = Path(args.out)
    if args.set:
        configs = {
            k: from_dict(RunConfig, apply_overrides(to_dict(c), args.set))
            for k, c in configs.items()
        }
    if args.plot_only:
        return load_runs(
            out, [k for k in configs if (out / k / "history.csv").is_file()] or list(configs)
        )
    return run_all(configs, out, progress=False if args.quiet else None)
