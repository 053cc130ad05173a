"""The results store: one SQLite file of runs, their configs, per-epoch and final metrics.

Schema (``SCHEMA_VERSION`` 2, kept in ``PRAGMA user_version`` and in ``meta``)::

    runs(id, sweep, label, config_hash, seed, config_json, axes_json, status, attempts,
         packed_with, error, traceback, started, finished, seconds, versions_json, host, git)
        UNIQUE (sweep, config_hash, seed); status is running, done, failed, diverged or
        interrupted (stopped by Ctrl-C before it finished; schema 1 had no such status and is
        upgraded in place by the first writer)
    epochs(run_id, epoch, metrics_json)       one row per epoch (0 = before training)
    finals(run_id, key, value)                 the last epoch's numeric metrics
    meta(key, value)                           schema_version

Values that are not finite (NaN, ±inf) are stored as NULL, in ``finals`` and in the JSON of
``epochs`` alike (strict JSON has no NaN); the run's status says why (``diverged``, or a
metric that is undefined for its rule, such as an angle without random feedback).

A run is one member (one seed) of one configuration. ``config_json`` is its full config with
``seeds = [seed]``; ``axes_json`` its coordinates in the sweep (dotted path -> value);
``packed_with`` the seeds that trained in the same batched call. Times are ISO 8601 UTC.

Writes: a ``running`` row when a run starts, then one transaction per finished run (its epochs,
finals and status), so a killed sweep leaves every finished run whole. A run that a Ctrl-C
stopped is written ``interrupted``; one still ``running`` after its sweep has ended was killed
(kill -9, a power cut). A rerun trains both again. The file runs in WAL
mode with a busy timeout and every write transaction is ``BEGIN IMMEDIATE``, so several
processes may write to one store at once (on a local disk; WAL does not work over NFS).

Reading: :func:`runs` (one row per run) and :func:`results` (grouped, mean ± std over the seeds
of one configuration) return lists of dicts, or pandas DataFrames with ``frame=True``;
:func:`plot` draws a figure. Readers open the file read-only (``mode=ro``; ``immutable=1``
where the folder is read-only too), so they work on a read-only mount and never write into a
file they are given. A file that is not an lpfa store (another program's SQLite database, a
truncated or garbage file, a store of a newer schema) is a :class:`~lpfa.config.ConfigError`
naming the file and what is wrong.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sqlite3
import statistics
import urllib.parse
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lpfa.config import ConfigError

__all__ = ["METRIC_ALIASES", "Store", "format_table", "pick_sweep", "plot", "results", "runs"]

SCHEMA_VERSION = 2
_TABLES = ("meta", "runs", "epochs", "finals")
STATUSES = ("running", "done", "failed", "diverged", "interrupted")
# history columns that are bookkeeping, not metrics
_NOT_METRICS = ("epoch", "member", "seed", "step", "lr", "time_s")
_LOSSES = ("train_loss", "test_loss")
METRIC_ALIASES = {
    "test_accuracy": "test_acc",
    "train_accuracy": "train_acc",
    "accuracy": "test_acc",
    "nse": "test_nse",
    "loss": "test_loss",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    sweep TEXT NOT NULL,
    label TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config_json TEXT NOT NULL,
    axes_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'diverged',
                                           'interrupted')),
    attempts INTEGER NOT NULL DEFAULT 0,
    packed_with TEXT,
    error TEXT,
    traceback TEXT,
    started TEXT,
    finished TEXT,
    seconds REAL,
    versions_json TEXT,
    host TEXT,
    git TEXT,
    UNIQUE (sweep, config_hash, seed)
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    metrics_json TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS finals (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs (sweep, status);
"""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``). A WAL file in a folder where its ``-shm`` index
    cannot be created (a read-only mount) is opened ``immutable``: nobody can be writing it."""
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        db.close()
        db = sqlite3.connect(uri + "&immutable=1", uri=True)
    except sqlite3.DatabaseError:
        pass  # not a database at all: Store._check names the problem
    return db


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json(value: Any) -> str:
    """Strict JSON (sorted keys; NaN and ±inf as null)."""
    return json.dumps(_finite(value), sort_keys=True, allow_nan=False)


class Store:
    """A results store on disk.

    Parameters
    ----------
    path : path
        The SQLite file; a writer creates it (and its tables) if missing.
    timeout : float
        Seconds a writer waits for another writer's transaction before giving up.
    readonly : bool
        Open for reading only (``mode=ro``): nothing is created or written, and the file may
        sit on a read-only mount.

    Raises
    ------
    ConfigError
        ``store=PATH``: the file is missing (read-only), is not an SQLite file (truncated,
        garbage), is another program's SQLite database, or holds a newer store schema.
    """

    def __init__(self, path: str | Path, *, timeout: float = 120.0, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.is_file():
                raise ConfigError("store", str(path), "file not found")
            self._db = _connect_readonly(self.path)
        else:
            if self.path.parent != Path():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            self._db.row_factory = sqlite3.Row
            self._check()
            if not readonly:
                self._create(timeout)
        except BaseException:
            self._db.close()
            raise

    def _fail(self, what: str) -> ConfigError:
        return ConfigError("store", str(self.path), what)

    def _check(self) -> None:
        """Refuse a file that is not an lpfa store this version of lpfa can read."""
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                r[0]
                for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if version == 0 and "meta" in tables:  # written before user_version was set
                row = self._db.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'"
                ).fetchone()
                version = int(row[0]) if row else 0
        except (sqlite3.DatabaseError, ValueError) as err:
            raise self._fail(f"is not a readable SQLite file ({err})") from None
        if check != "ok":
            raise self._fail(f"is damaged (SQLite integrity check: {check})")
        if not tables:
            if self.readonly:
                raise self._fail("is not an lpfa results store (an empty SQLite file)")
            self._version = None
            return
        if not set(_TABLES) <= tables or version == 0:
            raise self._fail(
                "is not an lpfa results store (an SQLite database with tables "
                f"{', '.join(sorted(tables))}); name another file"
            )
        self._version = version
        if version > SCHEMA_VERSION:
            raise self._fail(
                f"was written by a newer lpfa (store schema {version}; this lpfa reads "
                f"schema {SCHEMA_VERSION} and older): upgrade lpfa to read it"
            )

    def _create(self, timeout: float) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        if self._version == 1:  # foreign keys off: dropping the old runs table keeps epochs
            self._upgrade_from_1()
        self._db.execute("PRAGMA foreign_keys = ON")
        with self.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _upgrade_from_1(self) -> None:
        """Schema 1 -> 2: the runs table gains the status ``interrupted`` (SQLite cannot change a
        CHECK in place: the table is rebuilt with the same columns, in one transaction)."""
        runs = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS runs") :]
        runs = runs[: runs.index(";")].replace("IF NOT EXISTS runs", "runs_2")
        with self.transaction() as db:
            db.execute(runs)
            db.execute("INSERT INTO runs_2 SELECT * FROM runs")
            db.execute("DROP TABLE runs")
            db.execute("ALTER TABLE runs_2 RENAME TO runs")
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", ("2",))
            db.execute("PRAGMA user_version = 2")
        self._version = 2

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @property
    def mode(self) -> str:
        """How the file is open: ``rw``, or ``ro`` (read-only)."""
        return "ro" if self.readonly else "rw"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on error."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # --- writing ----------------------------------------------------------------------------

    def start(
        self,
        sweep: str,
        label: str,
        config_hash: str,
        seed: int,
        config: dict[str, Any],
        axes: dict[str, Any],
        packed_with: Sequence[int],
    ) -> int:
        """Record that a run has started (status ``running``); returns its id.

        A run started before (failed, killed) keeps its id; its old epochs are dropped.
        """
        with self.transaction() as db:
            row = db.execute(
                "SELECT id FROM runs WHERE sweep = ? AND config_hash = ? AND seed = ?",
                (sweep, config_hash, seed),
            ).fetchone()
            values = (
                label,
                _json(config),
                _json(axes),
                json.dumps(list(packed_with)),
                _now(),
            )
            if row is None:
                cur = db.execute(
                    "INSERT INTO runs (label, config_json, axes_json, packed_with, started, "
                    "sweep, config_hash, seed, status, attempts) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', 1)",
                    (*values, sweep, config_hash, seed),
                )
                return int(cur.lastrowid)
            run_id = int(row["id"])
            db.execute(
                "UPDATE runs SET label = ?, config_json = ?, axes_json = ?, packed_with = ?, "
                "started = ?, status = 'running', attempts = attempts + 1, error = NULL, "
                "traceback = NULL, finished = NULL, seconds = NULL WHERE id = ?",
                (*values, run_id),
            )
            db.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM finals WHERE run_id = ?", (run_id,))
            return run_id

    def finish(
        self,
        run_id: int,
        status: str,
        history: Sequence[dict[str, Any]] = (),
        *,
        error: str | None = None,
        traceback: str | None = None,
        seconds: float | None = None,
        versions: dict[str, str] | None = None,
    ) -> None:
        """Write a finished run in one transaction: its epochs, final metrics and status.

        ``history`` holds this run's rows only (one per epoch, as :func:`lpfa.train.train`
        makes them); the last row's numeric metrics become its finals. Non-finite values are
        stored as NULL; a ``done`` run whose final loss is not finite is stored as
        ``diverged``, with the loss named in ``error``.
        """
        if status not in STATUSES[1:]:
            raise ValueError(f"status={status!r}: must be one of {', '.join(STATUSES[1:])}")
        versions = versions or {}
        epochs = [
            (run_id, int(r["epoch"]), _json({k: v for k, v in r.items() if k != "member"}))
            for r in history
        ]
        finals = []
        if history:
            last = max(history, key=lambda r: r["epoch"])
            for k, v in last.items():
                if k in _NOT_METRICS or not isinstance(v, int | float) or isinstance(v, bool):
                    continue
                finals.append((run_id, k, float(v) if math.isfinite(v) else None))
                if status == "done" and k in _LOSSES and not math.isfinite(v):
                    status = "diverged"
                    error = error or f"{k}={v} at epoch {last['epoch']}"
            finals.append((run_id, "epochs", float(last["epoch"])))
        with self.transaction() as db:
            db.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM finals WHERE run_id = ?", (run_id,))
            db.executemany("INSERT INTO epochs VALUES (?, ?, ?)", epochs)
            db.executemany("INSERT INTO finals VALUES (?, ?, ?)", finals)
            db.execute(
                "UPDATE runs SET status = ?, error = ?, traceback = ?, finished = ?, "
                "seconds = ?, versions_json = ?, host = ?, git = ? WHERE id = ?",
                (
                    status,
                    error,
                    traceback,
                    _now(),
                    seconds,
                    _json(versions),
                    versions.get("host"),
                    versions.get("git"),
                    run_id,
                ),
            )

    # --- reading ----------------------------------------------------------------------------

    def statuses(self, sweep: str) -> dict[tuple[str, int], str]:
        """(config_hash, seed) -> status of every run of a sweep in the store."""
        rows = self._db.execute(
            "SELECT config_hash, seed, status FROM runs WHERE sweep = ?", (sweep,)
        ).fetchall()
        return {(r["config_hash"], r["seed"]): r["status"] for r in rows}

    def sweeps(self) -> dict[str, dict[str, int]]:
        """Sweep name -> {status: number of runs}."""
        out: dict[str, dict[str, int]] = {}
        for r in self._db.execute(
            "SELECT sweep, status, COUNT(*) AS n FROM runs GROUP BY sweep, status ORDER BY sweep"
        ):
            out.setdefault(r["sweep"], {})[r["status"]] = r["n"]
        return out

    def runs(
        self, sweep: str | None = None, status: str | Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """One dict per run: the ``runs`` columns (JSON decoded) and ``finals`` (key -> value)."""
        where, args = [], []
        if sweep is not None:
            where.append("sweep = ?")
            args.append(sweep)
        if status is not None:
            status = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' * len(status))})")
            args += status
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
        out = []
        for r in self._db.execute(sql + " ORDER BY id", args).fetchall():
            d = dict(r)
            for key in ("config_json", "axes_json", "packed_with", "versions_json"):
                d[key.removesuffix("_json")] = json.loads(d.pop(key)) if d[key] else None
            d["finals"] = {}
            out.append(d)
        by_id = {d["id"]: d for d in out}
        for r in self._db.execute("SELECT run_id, key, value FROM finals"):
            if r["run_id"] in by_id:
                by_id[r["run_id"]]["finals"][r["key"]] = r["value"]
        return out

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        """The per-epoch rows of one run, in epoch order."""
        rows = self._db.execute(
            "SELECT metrics_json FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
        )
        return [json.loads(r["metrics_json"]) for r in rows]


# --- the reading API --------------------------------------------------------------------------


@contextmanager
def _reading(store: str | Path | Store) -> Iterator[Store]:
    """The given Store, or the file opened read-only and closed afterwards."""
    if isinstance(store, Store):
        yield store
        return
    with Store(store, readonly=True) as db:
        yield db


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_leaves(v, path + "."))
        else:
            out[path] = v
    return out


def pick_sweep(db: Store, sweep: str | None) -> str:
    """The named sweep, or the only one in the store."""
    names = list(db.sweeps())
    if sweep is not None:
        if sweep not in names:
            raise ConfigError("--sweep", sweep, f"not in the store; it holds {names or 'none'}")
        return sweep
    if len(names) != 1:
        raise ConfigError(
            "--sweep", None, f"the store holds {len(names)} sweeps ({', '.join(names)}); name one"
        )
    return names[0]


def _resolve_field(name: str, fields: Sequence[str]) -> str:
    """A config field named by its dotted path or by a unique ending (``rule``)."""
    if name in fields:
        return name
    hits = [f for f in fields if f.endswith("." + name)]
    if len(hits) == 1:
        return hits[0]
    allowed = "ambiguous: " + ", ".join(hits) if hits else "no such field in the configs"
    raise ConfigError("field", name, allowed)


def _frame(rows: list[dict[str, Any]]):
    try:
        import pandas as pd
    except ModuleNotFoundError:
        raise ModuleNotFoundError("frame=True needs pandas: pip install pandas") from None
    return pd.DataFrame(rows)


def runs(
    store: str | Path | Store,
    *,
    sweep: str | None = None,
    status: str | Sequence[str] | None = "done",
    config_hashes: Collection[str] | None = None,
    frame: bool = False,
) -> list[dict[str, Any]]:
    """One flat row per run: sweep, label, config_hash, seed, status, seconds, every config
    field by dotted path (``channel.rule``) and every final metric (``test_acc``, …).

    ``config_hashes`` keeps only the runs of these configurations (e.g. those of the current
    spec, when an older version of the sweep left other runs in the store). Returns a list of
    dicts, or a pandas DataFrame with ``frame=True``.
    """
    rows = []
    with _reading(store) as db:
        found = db.runs(sweep, status)
    for r in found:
        if config_hashes is not None and r["config_hash"] not in config_hashes:
            continue
        cfg = _leaves(r["config"])
        cfg.pop("seeds", None)
        rows.append(
            {
                "id": r["id"],
                "sweep": r["sweep"],
                "label": r["label"],
                "config_hash": r["config_hash"],
                "seed": r["seed"],
                "status": r["status"],
                "seconds": r["seconds"],
                **{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()},
                **r["finals"],
            }
        )
    return _frame(rows) if frame else rows


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
    with _reading(store) as db:
        name = pick_sweep(db, sweep)
        finals = {k for r in db.runs(name, "done") for k in r["finals"]}
        rows = runs(db, sweep=name, config_hashes=config_hashes)
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
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    fmt = lambda c: "  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([fmt(cells[0]), fmt(["-" * w for w in widths]), *map(fmt, cells[1:])])


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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    xs_all = sorted({r[xkey] for r in table}, key=_sort_key)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs_all)
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
            capsize=3,
            label=None if h is None else str(h),
        )
    if not numeric:
        ax.set_xticks(range(len(xs_all)), [str(v) for v in xs_all], rotation=30, ha="right")
    ax.set_xlabel(xkey)
    counts = sorted({r["n"] for r in table})
    seeds = f"{counts[0]} seeds" if len(counts) == 1 else f"{counts[0]}–{counts[-1]} seeds"
    ax.set_ylabel(f"{ykey} (mean ± std over {seeds})")
    if hkey:
        ax.legend(title=hkey)
    return save(fig, path)


def _sort_key(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, int | float) else (1, 0, str(v))
