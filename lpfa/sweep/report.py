"""Reading a sweep back: grouped results, the text tables, the paper comparison, the figure.

:func:`results` groups the finished runs of a store (mean ± std over the seeds of one
configuration); :func:`format_table` prints them, :func:`paper_table` sets them next to the
spec's ``[paper]`` numbers, :func:`plot` draws final metric against a config field,
:func:`curves_plot` the per-epoch metrics of chosen labels, :func:`dry_run` lists a spec's
runs, their packing, status and cost before anything runs, and :func:`runtime_table` says what
each stored sweep and experiment cost to train.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from lpfa.config import ConfigError
from lpfa.data import split_sizes
from lpfa.report import read_history, text_table
from lpfa.runfiles import read_status
from lpfa.sweep.spec import Sweep
from lpfa.sweep.store import Store, _flat, _frame, pick_sweep, reading

__all__ = [
    "METRIC_ALIASES",
    "curves_plot",
    "dry_run",
    "format_table",
    "paper_table",
    "plot",
    "results",
    "runtime_table",
]

METRIC_ALIASES = {
    "test_accuracy": "test_acc",
    "train_accuracy": "train_acc",
    "accuracy": "test_acc",
    "nse": "test_nse",
    "loss": "test_loss",
}


def _resolve_field(name: str, fields: Sequence[str]) -> str:
    """A config field named by its dotted path or by a unique ending (``rule``)."""
    if name in fields:
        return name
    hits = [f for f in fields if f.endswith("." + name)]
    if len(hits) == 1:
        return hits[0]
    allowed = "ambiguous: " + ", ".join(hits) if hits else "no such field in the configs"
    raise ConfigError("field", name, allowed)


def results(
    store: str | Path | Store,
    *,
    sweep: str | None = None,
    by: Sequence[str] = ("label",),
    metrics: Sequence[str] | None = None,
    config_hashes: Collection[str] | None = None,
    frame: bool = False,
) -> list[dict[str, Any]]:
    """Final metrics of the finished runs of one sweep, grouped, with mean and std over the
    seeds of one configuration.

    Parameters
    ----------
    store : path or Store
    sweep : str, optional
        Needed when the store holds more than one sweep.
    by : sequence of str
        Grouping keys: ``label``, or config fields by dotted path or unique ending
        (``channel.rule`` or ``rule``).
    metrics : sequence of str, optional
        Final metrics (``test_acc``, ``test_accuracy``, ``test_nse``, …); default: test
        accuracy if the runs have it, else test NSE, and test loss.
    config_hashes : collection of str, optional
        Only the runs of these configurations.
    frame : bool
        Return a pandas DataFrame instead of a list of dicts.

    Returns
    -------
    One row per group, sorted by the ``by`` keys (numbers by value, then text), so that the
    table does not depend on the order in which the runs happened to start: the ``by`` keys,
    ``n`` (seeds), and
    ``<metric>_mean``, ``<metric>_std`` (sample std, 0 for one seed) per metric; a NULL
    (non-finite) value is left out of its mean.

    Raises
    ------
    ConfigError
        ``--by``: a group would pool runs of different configurations (configs that differ
        in more than the seed); the message names the fields that differ.
    """
    with reading(store) as db:
        name = pick_sweep(db, sweep)
        records = db.records(name, "done", config_hashes=config_hashes)
    finals = {k for r in records for k in r["finals"]}
    rows = [_flat(r) for r in records]
    if not rows:
        return _frame([]) if frame else []
    every = dict.fromkeys(k for r in rows for k in r)
    fields = [k for k in every if k not in finals and k not in ("id", "status", "config_hash")]
    keys = [_resolve_field(b, fields) for b in by]
    if metrics is None:
        metrics = ["test_acc" if "test_acc" in finals else "test_nse", "test_loss"]
    metrics = [METRIC_ALIASES.get(m, m) for m in metrics]
    for m in metrics:
        if m not in finals:
            allowed = f"not among the final metrics: {', '.join(sorted(finals))}"
            raise ConfigError("metric", m, allowed)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    out = []
    for group, members in sorted(groups.items(), key=lambda g: tuple(map(_sort_key, g[0]))):
        row: dict[str, Any] = dict(zip(keys, group, strict=True))
        _one_configuration(row, members, fields, by)
        row["n"] = len(members)
        for m in metrics:
            vals = [r[m] for r in members if r.get(m) is not None]
            row[f"{m}_mean"] = statistics.fmean(vals) if vals else None
            row[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0 if vals else None
        out.append(row)
    return _frame(out) if frame else out


# fields of a run row that are not its configuration (the seed is the ensemble axis)
_NOT_CONFIG = ("sweep", "label", "name", "seed", "seconds")


def _one_configuration(
    group: dict[str, Any], members: list[dict[str, Any]], fields: Sequence[str], by: Sequence[str]
) -> None:
    """Refuse a group whose runs are not the seeds of one configuration."""
    if len({r["config_hash"] for r in members}) == 1:
        return
    differ = [
        f
        for f in fields
        if f not in _NOT_CONFIG and len({json.dumps(r.get(f), default=str) for r in members}) > 1
    ]
    at = ", ".join(f"{k}={v}" for k, v in group.items())
    n = len({r["config_hash"] for r in members})
    raise ConfigError(
        "--by",
        " ".join(by),
        f"the group {at} holds {n} configurations (they differ in "
        f"{', '.join(differ[:5]) or 'their label only'}): a mean ± std over seeds must be over "
        "one configuration; add those fields to --by, or group by label",
    )


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`results` rows, metrics shown as mean ± std."""
    if not rows:
        return "(no finished runs)"
    keys = list(rows[0])
    metrics = [k.removesuffix("_mean") for k in keys if k.endswith("_mean")]
    head = [k for k in keys if not k.endswith(("_mean", "_std"))]
    cells = [[*head, *metrics]]
    for r in rows:
        line = [str(r[k]) for k in head]
        for m in metrics:
            mean, std = r[f"{m}_mean"], r[f"{m}_std"]
            line.append("—" if mean is None else f"{mean:.4f} ± {std:.4f}")
        cells.append(line)
    return text_table(cells[0], cells[1:], right=False)


def plot(
    store: str | Path | Store,
    path: str | Path,
    *,
    x: str,
    y: str,
    hue: str | None = None,
    sweep: str | None = None,
) -> Path:
    """A figure of final ``y`` (mean ± std over the seeds of one configuration) against config
    field ``x``, one line per value of ``hue``; written to ``path`` with matplotlib's Agg
    backend.

    Raises
    ------
    ConfigError
        ``x`` or ``hue`` is the seed (every point is an aggregate over seeds), or a point would
        pool different configurations (see :func:`results`).
    """
    from lpfa.plots import pyplot, save
    from lpfa.report import metric_name

    for flag, value in (("--x", x), ("--hue", hue)):
        if value == "seed":
            raise ConfigError(
                flag,
                value,
                "every point is a mean ± std over seeds, so the seed cannot be an axis; "
                "for one row per seed use lpfa results STORE --by label seed",
            )
    by = [x] if hue is None else [hue, x]
    table = results(store, sweep=sweep, by=by, metrics=[y])
    if not table:
        raise ConfigError("store", str(store), "holds no finished runs to plot")
    keys = list(table[0])
    xkey, hkey = keys[len(by) - 1], (keys[0] if hue else None)
    ykey = METRIC_ALIASES.get(y, y)
    xs_all = sorted({r[xkey] for r in table}, key=_sort_key)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs_all)
    plt = pyplot()
    # categories (labels) get 0.3 inch each and upright text, so no two of them overlap
    fig, ax = plt.subplots(figsize=(6 if numeric else max(6.0, 1.5 + 0.3 * len(xs_all)), 4))
    for h in dict.fromkeys(r[hkey] for r in table) if hkey else [None]:
        sub = sorted(
            (r for r in table if hkey is None or r[hkey] == h), key=lambda r: _sort_key(r[xkey])
        )
        xs = [r[xkey] if numeric else xs_all.index(r[xkey]) for r in sub]
        ax.errorbar(
            xs,
            [r[f"{ykey}_mean"] for r in sub],
            yerr=[r[f"{ykey}_std"] for r in sub],
            marker="o",
            linestyle="-" if numeric else "none",  # categories have no order to draw a line along
            capsize=3,
            label=None if h is None else str(h),
        )
    if not numeric:
        ax.set_xticks(range(len(xs_all)), [str(v) for v in xs_all], rotation=90, fontsize=8)
    ax.set_xlabel(xkey)
    counts = sorted({r["n"] for r in table})
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    seeds += " seed" if counts[-1] == 1 else " seeds"
    ax.set_ylabel(f"{metric_name(ykey)}\n(mean ± std over {seeds})")
    if hkey:
        ax.legend(title=hkey)
    return save(fig, path)


def curves_plot(
    store: str | Path | Store,
    path: str | Path,
    *,
    y: Sequence[str],
    sweep: str | None = None,
    only: Sequence[str] = (),
    by: str | None = None,
) -> Path:
    """Learning curves from a store: one panel per metric in ``y`` against the epoch, one line
    per label (the mean over its finished seeds, ± 1 std band), written to ``path``.

    ``only``: shell-style label patterns (as ``lpfa sweep --only``). ``by``: a config field
    (dotted path or unique ending) with one column of panels per value. A diverged label is
    drawn as diverged (:func:`lpfa.plots.curves`).

    Raises
    ------
    ConfigError
        No finished run (of the labels asked for), a metric the histories do not have, or an
        unknown ``by`` field.
    """
    from fnmatch import fnmatchcase

    from lpfa.experiment import FINISHED, collect_store
    from lpfa.plots import curves
    from lpfa.report import metric_name

    with reading(store) as db:
        sweep = pick_sweep(db, sweep)
        records = db.records(sweep, status=FINISHED)
        labels = [
            label
            for label in dict.fromkeys(r["label"] for r in records)
            if not only or any(fnmatchcase(label, pattern) for pattern in only)
        ]
        if not labels:
            what = f"--only {' '.join(only)}" if only else "the store"
            raise ConfigError("--only" if only else "store", " ".join(only) or str(store),
                              f"no finished run of sweep {sweep} matches {what}")  # fmt: skip
        got = collect_store(db, sweep, labels, Path(path).parent)
    keys = [METRIC_ALIASES.get(m, m) for m in y]
    have = sorted({k for h in got.runs.values() for row in h for k in row})
    for m, k in zip(y, keys, strict=True):
        if k not in have:
            raise ConfigError("--y", m, f"a per-epoch metric of the histories: {', '.join(have)}")
    group = None
    if by is not None:
        flat = {r["label"]: _flat(r) for r in records}
        field = _resolve_field(by, sorted({k for f in flat.values() for k in f}))
        group = lambda label: f"{field} = {flat[label].get(field)}"  # noqa: E731
    return curves(
        got.runs,
        [(k, metric_name(k)) for k in keys],
        path,
        title=sweep,
        diverged=got.diverged,
        by=group,
    )


def _sort_key(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, int | float) else (1, 0, str(v))


def dry_run(sweep: Sweep, store: str | Path | None = None, *, spread: int = 1) -> str:
    """The runs, how they are packed (for ``spread`` packs at once, :meth:`Sweep.packs`), their
    status in ``store`` and their cost, as text."""
    status: dict[tuple[str, int], str] = {}
    if store is not None and Path(store).is_file():
        with reading(store) as db:
            status = db.statuses(sweep.name)
    done = {k for k, s in status.items() if s == "done"}
    packs = sweep.packs(spread=spread)
    pending = sweep.packs(skip=done, spread=spread)
    n_cfg = len({r.config_hash for r in sweep.runs})
    how = (
        "all seeds of a configuration together"
        if sweep.pack is True and len(packs) == n_cfg
        else f"the seeds of a configuration split for {spread} workers"
        if sweep.pack is True
        else "one seed each"
        if sweep.pack is False
        else f"up to {sweep.pack} seeds each"
    )
    head = [
        f"sweep {sweep.name}: {n_cfg} configurations, {len(sweep.runs)} runs "
        f"(configuration × seed), packed into {len(packs)} batched runs "
        f"({how})",
    ]
    rows = [["#", "label", "seeds", "epochs", "member-epochs", "member-samples", "status"]]
    for i, p in enumerate(packs, 1):
        st = sorted({status.get(r.key, "new") for r in p.runs})
        n = split_sizes(p.runs[0].config.data)[0]
        rows.append(
            [
                str(i),
                p.runs[0].label,
                ",".join(map(str, p.seeds)),
                str(p.runs[0].config.train.epochs),
                str(p.member_epochs),
                f"{p.member_epochs * n:,}" if n else "?",
                "/".join(st),
            ]
        )
    table = text_table(rows[0], rows[1:], right=False, rule=False).splitlines()
    total = sum(p.member_epochs for p in packs)
    todo = sum(p.member_epochs for p in pending)
    samples = sum(p.member_epochs * (split_sizes(p.runs[0].config.data)[0] or 0) for p in pending)
    foot = (
        f"cost: {total} member-epochs in all; {todo} to run "
        f"({sum(len(p.runs) for p in pending)} runs in {len(pending)} batched runs, "
        f"{samples:,} member-samples); {len(done)} runs already done"
    )
    return "\n".join([*head, "", *table, "", foot])


def paper_table(sweep: Sweep, store: str | Path | Store, *, title: str | None = None) -> str:
    """A markdown table of the sweep's results next to its ``[paper]`` numbers (ours, paper,
    difference), one row per label of the spec that has finished runs in ``store``."""
    from lpfa.report import comparison_table

    if sweep.paper is None:
        raise ConfigError("paper", None, "the spec has no [paper] table to compare with")
    paper = sweep.paper
    metric = paper["metric"]
    hashes = {r.config_hash for r in sweep.runs}  # not runs an older spec left in the store
    rows = results(
        store, sweep=sweep.name, by=["label"], metrics=[metric, "epochs"], config_hashes=hashes
    )
    by_label = {r["label"]: r for r in rows}
    table_rows = []
    for label in dict.fromkeys(r.label for r in sweep.runs):
        r = by_label.get(label)
        if r is None or r[f"{metric}_mean"] is None:
            continue
        table_rows.append(
            {
                "label": f"{label} (epoch {r['epochs_mean']:g})",
                "mean": r[f"{metric}_mean"] * paper["scale"],
                "std": r[f"{metric}_std"] * paper["scale"],
                "n": r["n"],
                "paper": paper["values"].get(label),
            }
        )
    if not table_rows:
        raise ConfigError(
            "store",
            str(store.path if isinstance(store, Store) else store),
            f"holds no finished runs of this spec; run lpfa sweep {sweep.source}",
        )
    table = comparison_table(table_rows, unit=paper["unit"] or metric)
    # the target columns are the experiments' business; the sweep table has none
    lines = []
    for line in table.splitlines():
        cells = line.split("|")
        lines.append("|".join([*cells[:-3], ""]))
    head = f"{title or paper['title'] or sweep.name}\n\n" if (title or paper["title"]) else ""
    return head + "\n".join(lines) + "\n"


def runtime_table(stores: Sequence[str | Path], folders: Sequence[str | Path] = ()) -> str:
    """A markdown table of what each stored sweep, and each experiment's run folders, cost to
    train, from what the runs recorded.

    One row per sweep of ``stores``: its finished runs (done or diverged) of those stored, the
    batched runs they trained in (a pack of seeds is one batched run, timed once), the training
    time summed over the batched runs and per batched run (median, min–max), the BLAS kernel
    and threads the runs recorded, and the days they ran. Runs still pending (running, failed,
    interrupted) are counted but not timed. One row per experiment folder of ``folders``: every
    run folder under it (``config.json`` and ``history.csv``) is one batched run of its seeds,
    timed by the last ``time_s`` of its history, finished or not (a run folder keeps the
    epochs an interrupted run trained; folders do not record the day).
    """
    lines = [
        "| store or folder | sweep | finished runs (of stored) | batched runs "
        "| training time, sum (h) | per batched run, median (min–max) (min) "
        "| BLAS kernel, threads | dates |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def row(name, sweep, done, stored, secs, versions, days) -> str:
        machines = sorted(
            {
                f"{v.get('blas_architecture') or v.get('blas') or '?'}"
                f"{' (forced)' if v.get('openblas_coretype') else ''}, {v.get('threads', '?')}"
                for v in versions
            }
        )
        per = (
            f"{statistics.median(secs) / 60:.1f} ({min(secs) / 60:.1f}–{max(secs) / 60:.1f})"
            if secs
            else "—"
        )
        span = f"{days[0]} – {days[-1]}" if days else "—"
        return (
            f"| {name} | {sweep} | {done} ({stored}) | {len(secs)} | {sum(secs) / 3600:.2f} "
            f"| {per} | {'; '.join(machines) or '—'} | {span} |"
        )

    for path in stores:
        with reading(path) as db:
            for sweep in db.sweeps():
                recs = db.records(sweep)
                done = [r for r in recs if r["status"] in ("done", "diverged")]
                packs = {(r["config_hash"], json.dumps(r["packed_with"])): r for r in done}
                secs = [r["seconds"] for r in packs.values() if r["seconds"] is not None]
                days = sorted(d[:10] for r in done for d in (r["started"], r["finished"]) if d)
                versions = [r["versions"] or {} for r in done]
                lines.append(
                    row(Path(path).name, sweep, len(done), len(recs), secs, versions, days)
                )
    for folder in folders:
        secs, versions, done, stored = [], [], 0, 0
        for hist in sorted(Path(folder).rglob("history.csv")):
            try:
                saved = json.loads((hist.parent / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not a run folder
            seeds = len(saved.get("seeds") or [None])
            stored += seeds
            if read_status(hist.parent) in ("done", "diverged"):
                done += seeds
            times = [r["time_s"] for r in read_history(hist) if r.get("time_s") is not None]
            if times:
                secs.append(max(times))
            versions.append(saved.get("versions") or {})
        name = f"{Path(folder).name}/"
        lines.append(row(name, "(run folders)", done, stored, secs, versions, []))
    return "\n".join(lines) + "\n"
