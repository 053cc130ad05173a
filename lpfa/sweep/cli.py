"""The ``lpfa sweep``, ``lpfa results`` and ``lpfa plot`` commands.

lpfa sweep SPEC.toml [--quick] [--dry-run] [--store FILE] [--only LABEL ...]
           [--executor inline|process|dask]
           [--scheduler ADDRESS [--scheduler-timeout SECONDS]]
lpfa results STORE [--sweep NAME] [--by FIELD ...] [--metric NAME ...] [--paper SPEC]
lpfa plot STORE --x FIELD --y METRIC [--hue FIELD] [--out FILE]
lpfa plot STORE --x epoch --y METRIC [METRIC ...] [--only LABEL ...] [--by FIELD] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

from lpfa.config import ConfigError, add_set_option
from lpfa.doctables import write_block
from lpfa.sweep.executors import EXECUTORS

__all__ = ["add_commands", "write_block"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``sweep``, ``results`` and ``plot`` to the ``lpfa`` command line."""
    s = sub.add_parser("sweep", help="run a grid of configurations into a results store")
    s.add_argument("spec", help="a sweep spec (TOML), e.g. experiments/baldi2018_table1.toml")
    s.add_argument("--quick", action="store_true", help="apply the spec's [quick] table")
    s.add_argument("--dry-run", action="store_true", help="list the runs and their cost only")
    s.add_argument("--store", help="SQLite results file (default: results/<sweep>.sqlite)")
    add_set_option(s, "a field of every run")
    s.add_argument(
        "--only",
        action="append",
        metavar="LABEL",
        help="run only the configurations whose label matches, shell-style: --only 'update1_*' "
        "(repeatable; a chunk of a long sweep)",
    )
    s.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="inline (default), a local process pool, or Dask (implied by --scheduler)",
    )
    s.add_argument("--workers", type=int, help="processes of the pool / LocalCluster workers")
    s.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler, tcp://host:8786")
    s.add_argument(
        "--scheduler-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for --scheduler to answer (default: 5)",
    )
    s.add_argument(
        "--local-cluster",
        action="store_true",
        help="start a Dask LocalCluster of --workers processes here",
    )
    s.add_argument("--retries", type=int, default=2, help="reruns of a pack whose worker died")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--no-pack", action="store_true", help="one run per seed (no batching)")
    g.add_argument("--pack", type=int, metavar="N", help="at most N seeds per batched run")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_sweep)

    r = sub.add_parser("results", help="a table of a store's runs, mean ± std over seeds")
    r.add_argument("store", help="the SQLite results file")
    r.add_argument("--sweep", help="which sweep (needed when the store holds several)")
    r.add_argument(
        "--by",
        nargs="+",
        default=["label"],
        metavar="FIELD",
        help="group by label or config fields, e.g. --by rule channel.dropout",
    )
    r.add_argument("--metric", nargs="+", metavar="NAME", help="final metrics, e.g. test_acc")
    r.add_argument("--paper", metavar="SPEC", help="compare with the spec's [paper] numbers")
    r.add_argument("--quick", action="store_true", help="with --paper: the spec's quick sweep")
    r.add_argument(
        "--write",
        metavar="FILE",
        help="with --paper: write the markdown table into FILE (between its "
        "<!-- lpfa:table NAME --> … <!-- lpfa:end --> markers, or as the whole file)",
    )
    r.set_defaults(func=_results)

    p = sub.add_parser(
        "plot",
        help="a figure of final metrics against a config field, or learning curves (--x epoch)",
    )
    p.add_argument("store", help="the SQLite results file")
    p.add_argument(
        "--x",
        required=True,
        help="config field on the x axis, e.g. channel.dropout; or epoch: learning curves, "
        "one line per label (mean ± std over its seeds), one panel per --y",
    )
    p.add_argument(
        "--y",
        required=True,
        nargs="+",
        help="final metric, e.g. test_accuracy (with --x epoch: per-epoch metrics, one panel each)",
    )
    p.add_argument("--hue", help="config field with one line per value, e.g. rule")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="LABEL",
        help="with --x epoch: only labels matching, shell-style (repeatable)",
    )
    p.add_argument("--by", help="with --x epoch: config field with one column of panels per value")
    p.add_argument("--sweep", help="which sweep (needed when the store holds several)")
    p.add_argument("--out", help="image file (default: results/<sweep>_<y>_vs_<x>.png)")
    p.set_defaults(func=_plot)


def _sweep(args: argparse.Namespace) -> int:
    from lpfa.sweep.execute import SweepInterrupted, pool_size, run_sweep
    from lpfa.sweep.report import dry_run
    from lpfa.sweep.spec import load_spec
    from lpfa.threads import set_threads

    set_threads()  # inline runs: LPFA_THREADS, else the measured default (pool workers set theirs)
    sweep = load_spec(args.spec, quick=args.quick, overrides=args.set)
    if args.no_pack:
        sweep = dataclasses.replace(sweep, pack=False)
    elif args.pack is not None:
        if args.pack < 1:
            raise ConfigError("--pack", args.pack, "must be >= 1")
        sweep = dataclasses.replace(sweep, pack=args.pack)
    if args.only:
        sweep = _only(sweep, args.only)
    store = Path(args.store) if args.store else Path("results") / f"{sweep.name}.sqlite"
    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers", args.workers, "must be >= 1")
    executor = args.executor or ("dask" if args.scheduler or args.local_cluster else "inline")
    if args.dry_run:
        print(dry_run(sweep, store, spread=pool_size(executor, args.workers)))
        return 0
    if executor == "dask" and not (args.scheduler or args.local_cluster):
        raise ConfigError("--executor", "dask", "needs --scheduler ADDRESS or --local-cluster")
    if executor == "dask":
        try:
            import distributed  # noqa: F401
        except ModuleNotFoundError:
            raise ConfigError(
                "--executor", "dask", 'needs Dask: pip install "lpfa[dask]"'
            ) from None
    if not (math.isfinite(args.scheduler_timeout) and args.scheduler_timeout > 0):
        raise ConfigError("--scheduler-timeout", args.scheduler_timeout, "must be > 0 seconds")
    print(
        f"lpfa sweep {sweep.name}: {len(sweep.runs)} runs, executor {executor}, store {store}",
        flush=True,
    )
    try:
        out = run_sweep(
            sweep,
            store,
            executor=executor,
            workers=args.workers,
            scheduler=args.scheduler,
            scheduler_timeout=args.scheduler_timeout,
            retries=args.retries,
            progress=False if args.quiet else None,
        )
    except SweepInterrupted as err:
        print(err, file=sys.stderr)
        return 130
    print(
        f"{out.done} done, {out.failed} failed, {out.diverged} diverged, "
        f"{out.skipped} already done; {out.seconds:.1f} s"
    )
    for line in out.errors:
        print(f"  {line}", file=sys.stderr)
    print(f"see: lpfa results {store} --sweep {sweep.name}")
    return 0 if not (out.failed or out.diverged) else 1


def _only(sweep, patterns: list[str]):
    """The sweep with only the runs whose label matches one of ``patterns`` (fnmatch)."""
    from fnmatch import fnmatchcase

    labels = list(dict.fromkeys(r.label for r in sweep.runs))
    for p in patterns:
        if not any(fnmatchcase(label, p) for label in labels):
            shown = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
            raise ConfigError("--only", p, f"matches no label of {sweep.name} ({shown})")
    runs = tuple(r for r in sweep.runs if any(fnmatchcase(r.label, p) for p in patterns))
    return dataclasses.replace(sweep, runs=runs)


def _results(args: argparse.Namespace) -> int:
    from lpfa.sweep.report import format_table, paper_table, results
    from lpfa.sweep.spec import load_spec
    from lpfa.sweep.store import pick_sweep, reading

    if args.paper:
        sweep = load_spec(args.paper, quick=args.quick)
        with reading(args.store) as db:
            table = paper_table(sweep, db)
        print(table)
        if args.write:
            print(f"wrote {write_block(args.write, sweep.name, table)}")
        return 0
    if args.write:
        raise ConfigError("--write", args.write, "needs --paper SPEC")
    with reading(args.store) as db:
        counts = db.sweeps()
        name = pick_sweep(db, args.sweep)
        rows = results(db, sweep=name, by=args.by, metrics=args.metric)
        bad = db.records(name, ("failed", "diverged"))
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts[name].items()))
    print(f"sweep {name}: {status}\n")
    print(format_table(rows))
    for r in bad:
        print(f"{r['status']}: {r['label']} seed {r['seed']}: {r['error']}", file=sys.stderr)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from lpfa.sweep.report import curves_plot, plot
    from lpfa.sweep.store import pick_sweep, reading

    epochs = args.x == "epoch"
    for flag, value, ok in (
        ("--y", " ".join(args.y), epochs or len(args.y) == 1),
        ("--hue", args.hue, not (epochs and args.hue)),
        ("--only", " ".join(args.only), epochs or not args.only),
        ("--by", args.by, epochs or args.by is None),
    ):
        if not ok:
            allowed = "one metric" if flag == "--y" else "only with --x epoch"
            raise ConfigError(flag, value, f"{allowed} (--x epoch: curves; --by for columns)")
    with reading(args.store) as db:
        name = pick_sweep(db, args.sweep)
        y = "_".join(args.y)
        out = args.out or Path("results") / f"{name}_{y}_vs_{args.x}.png"
        if epochs:
            path = curves_plot(db, out, y=args.y, sweep=name, only=args.only, by=args.by)
        else:
            path = plot(db, out, x=args.x, y=args.y[0], hue=args.hue, sweep=name)
    print(f"wrote {path}")
    return 0
