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

Reading: :meth:`Store.records` gives the stored record of each run (its columns, the JSON
decoded, and ``finals`` as a dict); :func:`runs` one flat row per run (config fields by dotted
path and final metrics side by side), as a list of dicts or a pandas DataFrame. Grouped tables
(mean ± std over seeds) and figures are :mod:`lpfa.sweep.report`'s. Each query reads only the
rows it asks for. Readers open the file read-only (``mode=ro``; ``immutable=1``
where the folder is read-only too), so they work on a read-only mount and never write into a
file they are given. A file that is not an lpfa store (another program's SQLite database, a
truncated or garbage file, a store of a newer schema) is a :class:`~lpfa.config.ConfigError`
naming the file and what is wrong. Every connection is closed when its :class:`Store` is
(use it as a context manager); the reading functions open and close their own.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sqlite3
import time
import urllib.parse
import warnings
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lpfa.config import ConfigError
from lpfa.report import BOOKKEEPING, strict_json

__all__ = ["SCHEMA_VERSION", "STATUSES", "Store", "pick_sweep", "reading", "runs"]

SCHEMA_VERSION = 2
_TABLES = ("meta", "runs", "epochs", "finals")
STATUSES = ("running", "done", "failed", "diverged", "interrupted")
_LOSSES = ("train_loss", "test_loss")

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


def _json(value: Any) -> str:
    """Strict JSON (sorted keys; NaN and ±inf as null)."""
    return json.dumps(strict_json(value), sort_keys=True, allow_nan=False)


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
        # Two processes opening one new store at once can each hold a lock the other's switch
        # to WAL needs; SQLite answers "database is locked" at once there, without waiting the
        # busy timeout (it would be a deadlock), so the switch is retried until the timeout.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
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
        if db.in_transaction:  # one cut by a signal (KeyboardInterrupt) between two statements
            db.execute("ROLLBACK")
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

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

        ``history`` holds this run's rows only (one per epoch, as :func:`lpfa.training.train`
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
                if k in BOOKKEEPING or not isinstance(v, int | float) or isinstance(v, bool):
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

    def records(
        self,
        sweep: str | None = None,
        status: str | Sequence[str] | None = None,
        *,
        config_hashes: Collection[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The stored record of each run asked for, in the order the runs were first started.

        One dict per run: the ``runs`` columns (``config``, ``axes``, ``packed_with`` and
        ``versions`` JSON-decoded, without their ``_json`` suffix) and ``finals``, a dict of
        final metric -> value. For one flat row per run (config fields by dotted path next to
        the final metrics) use :func:`runs`.

        Parameters
        ----------
        sweep : str, optional
            Only the runs of this sweep.
        status : str or sequence of str, optional
            Only runs with this status (or one of these).
        config_hashes : collection of str, optional
            Only the runs of these configurations.

        Only the rows asked for are read, of ``runs`` and of ``finals`` alike.
        """
        where, args = self._where(sweep, status, config_hashes)
        out = []
        for r in self._db.execute(f"SELECT * FROM runs{where} ORDER BY id", args).fetchall():
            d = dict(r)
            for key in ("config_json", "axes_json", "packed_with", "versions_json"):
                d[key.removesuffix("_json")] = json.loads(d.pop(key)) if d[key] else None
            d["finals"] = {}
            out.append(d)
        by_id = {d["id"]: d for d in out}
        finals = self._db.execute(
            "SELECT run_id, key, value FROM finals "
            f"WHERE run_id IN (SELECT id FROM runs{where}) ORDER BY rowid",  # as written
            args,
        )
        for r in finals:
            by_id[r["run_id"]]["finals"][r["key"]] = r["value"]
        return out

    @staticmethod
    def _where(
        sweep: str | None,
        status: str | Sequence[str] | None,
        config_hashes: Collection[str] | None,
    ) -> tuple[str, list[Any]]:
        """The ``WHERE`` clause (empty, or with a leading space) and its arguments."""
        where, args = [], []
        if sweep is not None:
            where.append("sweep = ?")
            args.append(sweep)
        if status is not None:
            status = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' * len(status))})")
            args += status
        if config_hashes is not None:  # one JSON argument: no limit on the number of hashes
            where.append("config_hash IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(sorted(config_hashes)))
        return (f" WHERE {' AND '.join(where)}" if where else ""), args

    def runs(
        self, sweep: str | None = None, status: str | Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Deprecated: the stored records, now :meth:`records`.

        Its rows differ from those of :func:`lpfa.sweep.store.runs` (nested ``config`` and
        ``finals`` here, flat there); the new name says so.
        """
        warnings.warn(
            "Store.runs() is now Store.records() (the stored record of each run, nested); "
            "lpfa.sweep.store.runs(store) gives one flat row per run",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.records(sweep, status)

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        """The per-epoch rows of one run, in epoch order."""
        rows = self._db.execute(
            "SELECT metrics_json FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
        )
        return [json.loads(r["metrics_json"]) for r in rows]


# --- the reading API --------------------------------------------------------------------------


@contextmanager
def reading(store: str | Path | Store) -> Iterator[Store]:
    """The given Store as it is, or the file opened read-only and closed afterwards.

    Raises
    ------
    ConfigError
        ``store=PATH``: the file cannot be opened as a store (see :class:`Store`), or an SQLite
        error while the block reads it (a file damaged past its header).
    """
    if isinstance(store, Store):
        yield store
        return
    try:
        with Store(store, readonly=True) as db:
            yield db
    except sqlite3.DatabaseError as err:
        raise ConfigError("store", str(store), f"cannot be read: {err}") from None


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
    dicts, or a pandas DataFrame with ``frame=True``. (:meth:`Store.records` gives each run's
    stored record instead: its columns, nested config and ``finals``.)
    """
    with reading(store) as db:
        rows = [_flat(r) for r in db.records(sweep, status, config_hashes=config_hashes)]
    return _frame(rows) if frame else rows


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record (:meth:`Store.records`) as one flat row of :func:`runs`."""
    cfg = _leaves(record["config"])
    cfg.pop("seeds", None)
    return {
        **{k: record[k] for k in ("id", "sweep", "label", "config_hash", "seed", "status")},
        "seconds": record["seconds"],
        **{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()},
        **record["finals"],
    }
