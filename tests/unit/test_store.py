"""The results store: round trips, transactions, concurrent writers, the reading API."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from lpfa.config import ConfigError
from lpfa.sweep.report import format_table, plot, results
from lpfa.sweep.store import Store, runs
from tests.conftest import run_concurrently

CONFIG = {"model": {"sizes": [3, 2]}, "channel": {"rule": "bp"}, "seeds": [0]}


def history(seed, acc, epochs=2):
    return [
        {"epoch": e, "member": 0, "seed": seed, "step": 10 * e, "lr": 0.1, "test_acc": acc * e,
         "test_loss": 1.0 / (e + 1), "train_acc": None, "time_s": 0.1}
        for e in range(epochs + 1)
    ]  # fmt: skip


def add(db, sweep, label, seed, acc, *, rule="bp", config_hash=None):
    cfg = {**CONFIG, "channel": {"rule": rule}, "seeds": [seed]}
    run_id = db.start(sweep, label, config_hash or f"h-{label}", seed, cfg, {"x": label}, [seed])
    db.finish(run_id, "done", history(seed, acc), seconds=1.5,
              versions={"host": "box", "git": "abc123", "numpy": "2"})  # fmt: skip
    return run_id


def test_store_uses_wal_and_creates_its_tables(tmp_path):
    with Store(tmp_path / "s.sqlite") as db:
        mode = db._db.execute("PRAGMA journal_mode").fetchone()[0]
        tables = {r[0] for r in db._db.execute("SELECT name FROM sqlite_master")}
    assert mode == "wal"
    assert {"runs", "epochs", "finals", "meta"} <= tables


def test_a_finished_run_keeps_config_epochs_finals_and_provenance(tmp_path):
    with Store(tmp_path / "s.sqlite") as db:
        run_id = add(db, "sw", "a", 3, 0.4)
        (row,) = db.records("sw")
        epochs = db.epochs(run_id)
    assert row["status"] == "done"
    assert row["seed"] == 3
    assert row["config"]["seeds"] == [3]
    assert row["axes"] == {"x": "a"}
    assert (row["host"], row["git"], row["versions"]["numpy"]) == ("box", "abc123", "2")
    assert row["seconds"] == 1.5
    assert row["started"] <= row["finished"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert row["finals"]["test_acc"] == pytest.approx(0.8)
    assert row["finals"]["epochs"] == 2
    assert "train_acc" not in row["finals"]  # None is not a final metric


def test_a_restarted_run_keeps_its_id_and_drops_its_old_epochs(tmp_path):
    with Store(tmp_path / "s.sqlite") as db:
        first = add(db, "sw", "a", 0, 0.4)
        again = db.start("sw", "a", "h-a", 0, CONFIG, {}, [0])
        assert again == first
        (row,) = db.records("sw")
        assert (row["status"], row["attempts"], row["finals"]) == ("running", 2, {})
        assert db.epochs(first) == []


def test_a_transaction_that_fails_leaves_nothing(tmp_path):
    with Store(tmp_path / "s.sqlite") as db:
        run_id = add(db, "sw", "a", 0, 0.4)

        def interrupted_write():
            with db.transaction() as tx:
                tx.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
                raise RuntimeError("killed mid-write")

        with pytest.raises(RuntimeError):
            interrupted_write()
        assert len(db.epochs(run_id)) == 3


def test_a_transaction_cut_between_statements_is_rolled_back_by_the_next_write(tmp_path):
    """A KeyboardInterrupt (Ctrl-C, SIGTERM) raised right after ``BEGIN`` or before ``COMMIT``
    left the connection inside a transaction, and every later write refused to start."""
    with Store(tmp_path / "s.sqlite") as db:
        run_id = add(db, "sw", "a", 0, 0.4)
        db._db.execute("BEGIN IMMEDIATE")  # what the signal left behind
        db._db.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
        other = add(db, "sw", "b", 1, 0.5)  # the next write starts, and lands
        assert len(db.epochs(run_id)) == 3  # the half-done one did not
    with Store(tmp_path / "s.sqlite") as db:
        assert len(db.epochs(other)) == 3


def test_finish_refuses_an_unknown_status(tmp_path):
    with Store(tmp_path / "s.sqlite") as db, pytest.raises(ValueError, match="status='ok'"):
        db.finish(1, "ok")


def _writer(path, sweep, n):
    with Store(path) as db:
        for i in range(n):
            add(db, sweep, f"r{i}", i, 0.1 * (i % 7), config_hash=f"h{i}")


def test_two_processes_writing_one_store_at_once_lose_nothing(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    run_concurrently(_writer, [(path, f"sweep{k}", 40) for k in range(2)])
    with Store(path) as db:
        assert db.sweeps() == {"sweep0": {"done": 40}, "sweep1": {"done": 40}}
        assert all(len(db.epochs(r["id"])) == 3 for r in db.records())
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


@pytest.fixture
def filled(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as db:
        for seed, acc in enumerate([0.40, 0.44, 0.42]):
            add(db, "sw", "a", seed, acc, rule="bp")
        for seed, acc in enumerate([0.30, 0.36]):
            add(db, "sw", "b", seed, acc, rule="rbp")
    return path


def test_results_are_mean_and_sample_std_over_seeds(filled):
    rows = results(filled, by=["rule"], metrics=["test_accuracy"])
    assert [r["channel.rule"] for r in rows] == ["bp", "rbp"]
    assert [r["n"] for r in rows] == [3, 2]
    assert rows[0]["test_acc_mean"] == pytest.approx(0.84)
    assert rows[0]["test_acc_std"] == pytest.approx(0.04)
    assert rows[1]["test_acc_mean"] == pytest.approx(0.66)
    assert "0.8400 ± 0.0400" in format_table(rows)


def test_runs_are_flat_rows_with_config_paths_and_finals(filled):
    rows = runs(filled)
    assert len(rows) == 5
    assert rows[0]["model.sizes"] == (3, 2)
    assert rows[0]["test_acc"] == pytest.approx(0.8)


def test_results_name_bad_fields_and_metrics(filled, tmp_path):
    with pytest.raises(ConfigError, match="field='bogus': no such field"):
        results(filled, by=["bogus"])
    with pytest.raises(ConfigError, match="metric='test_nse': not among the final metrics"):
        results(filled, metrics=["test_nse"])
    with Store(filled) as db:
        add(db, "other", "a", 0, 0.5)
    with pytest.raises(ConfigError, match="holds 2 sweeps"):
        results(filled)
    assert results(filled, sweep="other")[0]["n"] == 1
    with pytest.raises(ConfigError, match="file not found"):
        results(tmp_path / "missing.sqlite")


def test_results_as_a_dataframe(filled):
    pd = pytest.importorskip("pandas")
    df = results(filled, by=["label"], frame=True)
    assert isinstance(df, pd.DataFrame)
    assert list(df["n"]) == [3, 2]


def test_plot_writes_a_figure(filled, tmp_path):
    path = plot(filled, tmp_path / "fig.png", x="label", y="test_accuracy", hue="rule")
    assert path.stat().st_size > 1000


def test_curves_plot_draws_each_chosen_labels_seeds_per_epoch(filled, tmp_path, monkeypatch):
    from lpfa import plots
    from lpfa.sweep.report import curves_plot

    seen = {}
    real = plots.curves

    def spy(runs, panels, path, **kw):
        seen.update(runs=runs, panels=panels, by=kw["by"])
        return real(runs, panels, path, **kw)

    monkeypatch.setattr(plots, "curves", spy)
    path = curves_plot(filled, tmp_path / "c.png", y=["test_accuracy"], only=["a*"], by="rule")
    assert path.stat().st_size > 1000
    assert list(seen["runs"]) == ["a"]
    assert sorted({r["seed"] for r in seen["runs"]["a"]}) == [0, 1, 2]
    assert [r["test_acc"] for r in seen["runs"]["a"] if r["seed"] == 1] == pytest.approx(
        [0.0, 0.44, 0.88]
    )
    assert seen["panels"] == [("test_acc", "test accuracy")]
    assert seen["by"]("a") == "channel.rule = bp"
    curves_plot(filled, tmp_path / "all.png", y=["test_acc", "test_loss"])
    assert list(seen["runs"]) == ["a", "b"]
    assert seen["by"] is None


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--x", "epoch", "--y", "nosuch"], "a per-epoch metric of the histories: epoch"),
        (["--x", "epoch", "--y", "test_acc", "--only", "z*"], "no finished run of sweep sw"),
        (["--x", "epoch", "--y", "test_acc", "--by", "nosuch"], "no such field"),
        (["--x", "label", "--y", "test_acc", "test_loss"], "one metric"),
        (["--x", "label", "--y", "test_acc", "--only", "a"], "only with --x epoch"),
    ],
)
def test_plot_cli_refuses_bad_curves_in_one_line(filled, tmp_path, capsys, args, words):
    from lpfa.cli import main

    out = tmp_path / "c.png"
    assert main(["plot", str(filled), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert words in err
    assert not out.exists()


# --- readers only read; files that are no lpfa store ------------------------------------------


def _snapshot(path):
    return path.read_bytes(), path.stat().st_mtime_ns


def test_readers_open_read_only_and_never_write_into_the_file(filled):
    before = _snapshot(filled)
    with Store(filled, readonly=True) as db:
        assert db.mode == "ro"
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db._db.execute("CREATE TABLE intruder (x)")
        assert len(db.records("sw")) == 5
    results(filled, by=["rule"])
    runs(filled)
    plot(filled, filled.parent / "fig.png", x="label", y="test_accuracy")
    assert _snapshot(filled) == before


def test_readers_never_create_tables_in_a_foreign_database(tmp_path):
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (name TEXT)")
    con.commit()
    con.close()
    before = _snapshot(path)
    for read in (lambda: results(path), lambda: runs(path), lambda: Store(path)):
        with pytest.raises(ConfigError) as info:
            read()
        assert str(info.value).startswith(f"store={str(path)!r}: is not an lpfa results store")
        assert "customers" in str(info.value)
    assert _snapshot(path) == before
    con = sqlite3.connect(path)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["customers"]
    con.close()


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (lambda p: p.write_bytes(b"this is no database, just text\n" * 200),
         "is not a readable SQLite file"),
        (_truncated, "is "),
        (lambda p: p.write_bytes(b""), "is not an lpfa results store (an empty SQLite file)"),
    ],
)  # fmt: skip
def test_a_garbage_truncated_or_empty_file_is_one_error_naming_it(filled, damage, what):
    with Store(filled) as db:  # checkpoint the WAL into the main file before cutting it
        db._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage(filled)
    before = _snapshot(filled)
    with pytest.raises(ConfigError) as info:
        results(filled)
    message = str(info.value)
    assert message.startswith(f"store={str(filled)!r}: {what}")
    assert "\n" not in message
    assert _snapshot(filled) == before


def test_a_store_of_a_newer_schema_is_refused_by_readers_and_writers(filled):
    con = sqlite3.connect(filled)
    con.execute("PRAGMA user_version = 7")
    con.close()
    for read in (lambda: results(filled), lambda: Store(filled)):
        with pytest.raises(ConfigError, match="newer lpfa \\(store schema 7; this lpfa reads"):
            read()


def test_the_schema_version_is_stored_and_old_stores_still_read(tmp_path, filled):
    con = sqlite3.connect(filled)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    con.execute("PRAGMA user_version = 0")  # a store written before user_version was set
    con.close()
    assert results(filled, by=["rule"])[0]["n"] == 3


def _as_schema_1(path: Path) -> None:
    """Rewrite a store as schema 1 wrote it: the runs table had no status ``interrupted``."""
    con = sqlite3.connect(path, isolation_level=None)
    (sql,) = con.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()
    old = sql.replace("runs", "runs_1", 1).replace(",\n" + " " * 43 + "'interrupted'", "")
    assert "interrupted" not in old
    con.executescript(
        f"BEGIN; {old}; INSERT INTO runs_1 SELECT * FROM runs; DROP TABLE runs; "
        "ALTER TABLE runs_1 RENAME TO runs; UPDATE meta SET value = '1' "
        "WHERE key = 'schema_version'; PRAGMA user_version = 1; COMMIT;"
    )
    con.close()


def test_a_schema_1_store_is_upgraded_by_its_first_writer_and_keeps_every_run(filled):
    def query(sql: str) -> list:
        with closing(sqlite3.connect(filled)) as con:
            return con.execute(sql).fetchall()

    before = runs(filled)
    first = before[0]["id"]
    others = f"SELECT * FROM epochs WHERE run_id != {first} ORDER BY 1, 2"
    epochs = query(others)
    _as_schema_1(filled)
    with pytest.raises(sqlite3.IntegrityError):  # schema 1 refuses the new status
        query("UPDATE runs SET status = 'interrupted'")
    assert runs(filled) == before  # readers read schema 1 as it is
    with Store(filled) as db:
        db.finish(first, "interrupted", error="stopped by Ctrl-C")
        assert db.statuses("sw")[(before[0]["config_hash"], 0)] == "interrupted"
    assert query("PRAGMA user_version") == [(2,)]
    assert query(others) == epochs
    assert runs(filled) == before[1:]  # the interrupted run is no longer among the done ones


def test_a_read_only_store_on_a_read_only_mount_is_readable(filled, tmp_path):
    """As root, chmod does not stop writes: the reader then runs under a read-only bind mount
    of the folder (in a mount namespace of its own)."""
    with Store(filled) as db:
        expected = results(db, by=["rule"])
    folder = tmp_path / "ro"
    folder.mkdir()
    copy = folder / "s.sqlite"
    shutil.copy(filled, copy)
    code = (
        "import json, sys; from lpfa.sweep.report import results; "
        "print(json.dumps(results(sys.argv[1], by=['rule'])))"
    )
    cmd = [sys.executable, "-c", code, str(copy)]
    if os.geteuid() == 0:
        mount = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
        probe = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, "sh", str(folder)]
        if shutil.which("unshare") is None or subprocess.run([*probe, "true"]).returncode:
            pytest.skip("root without a mount namespace: no way to make the folder read-only")
        cmd = [*probe, *cmd]
    copy.chmod(0o444)
    folder.chmod(0o555)
    before = _snapshot(copy)
    try:
        src = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": src}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=src, timeout=60)
    finally:
        folder.chmod(0o755)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == expected
    assert sorted(p.name for p in folder.iterdir()) == ["s.sqlite"]
    assert _snapshot(copy) == before


def test_non_finite_values_are_stored_as_null_and_a_nan_loss_as_diverged(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as db:
        rows = history(0, 0.4)
        rows[-1] = {**rows[-1], "angle_1": float("nan"), "test_nse": float("inf")}
        ok = db.start("sw", "a", "h-a", 0, CONFIG, {"x": float("nan")}, [0])
        db.finish(ok, "done", rows)
        bad_rows = history(1, 0.4)
        bad_rows[-1] = {**bad_rows[-1], "test_loss": float("nan")}
        bad = db.start("sw", "a", "h-a", 1, CONFIG, {}, [1])
        db.finish(bad, "done", bad_rows)
    con = sqlite3.connect(path)
    texts = [r[0] for r in con.execute("SELECT metrics_json FROM epochs")]
    texts += [r[0] for r in con.execute("SELECT axes_json FROM runs")]
    finals = dict(con.execute("SELECT key, value FROM finals WHERE run_id = ?", (ok,)).fetchall())
    status = dict(con.execute("SELECT seed, status FROM runs").fetchall())
    error = con.execute("SELECT error FROM runs WHERE id = ?", (bad,)).fetchone()[0]
    con.close()
    strict = lambda c: pytest.fail(f"bare {c} in the store")  # noqa: E731
    decoded = [json.loads(t, parse_constant=strict) for t in texts]
    assert decoded[2]["angle_1"] is None
    assert decoded[-2] == {"x": None}
    assert finals["angle_1"] is None
    assert finals["test_nse"] is None
    assert finals["test_acc"] == pytest.approx(0.8)
    assert status == {0: "done", 1: "diverged"}
    assert error == "test_loss=nan at epoch 2"


@pytest.fixture
def connections(monkeypatch):
    """Every SQLite connection opened while the test runs."""
    opened = []
    real = sqlite3.connect

    def tracking(*args, **kwargs):
        con = real(*args, **kwargs)
        opened.append(con)
        return con

    monkeypatch.setattr(sqlite3, "connect", tracking)
    return opened


def _assert_all_closed(opened):
    assert opened
    for con in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            con.execute("SELECT 1")


def test_readers_close_their_connections(filled, connections):
    results(filled, by=["rule"])
    runs(filled)
    _assert_all_closed(connections)


def test_every_connection_is_closed_on_success_and_on_every_refusal(filled, connections):
    from lpfa.cli import main
    from lpfa.sweep import dry_run, parse_spec, run_sweep

    foreign = filled.parent / "other.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE customers (name TEXT)")
    con.close()
    garbage = filled.parent / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    newer = filled.parent / "newer.sqlite"
    with Store(newer) as db:
        db._db.execute("PRAGMA user_version = 99")
    for path in (foreign, garbage, newer):
        for open_it in (lambda p: Store(p), lambda p: Store(p, readonly=True), results, runs):
            with pytest.raises(ConfigError):
                open_it(path)
    spec = {
        "name": "sw2",
        "set": {"data": {"name": "linear-teacher", "n_train": 20, "n_test": 10},
                "model": {"sizes": [4, 3], "output": "linear", "loss": "squared"},
                "train": {"epochs": 1, "batch_size": 10}},
        "axes": {"train.lr": [0.01, 0.02]},
    }  # fmt: skip
    assert run_sweep(parse_spec(spec), filled, progress=False).done == 2
    dry_run(parse_spec(spec), filled)
    assert main(["results", str(filled), "--sweep", "sw2"]) == 0
    assert main(["results", str(garbage)]) == 2
    _assert_all_closed(connections)


# --- mean ± std over the seeds of one configuration -------------------------------------------


def test_results_refuse_to_pool_different_configurations(filled):
    with Store(filled) as db:  # a second bp configuration (another lr), under its own label
        cfg = {**CONFIG, "seeds": [0], "train": {"lr": 0.5}}
        run_id = db.start("sw", "c", "h-c", 0, cfg, {}, [0])
        db.finish(run_id, "done", history(0, 0.9))
    with pytest.raises(ConfigError) as info:
        results(filled, by=["rule"])
    message = str(info.value)
    assert message.startswith("--by='rule': the group channel.rule=bp holds 2 configurations")
    assert "differ in train.lr" in message
    assert [r["n"] for r in results(filled, by=["label"])] == [3, 2, 1]
    # sorted by the keys: (bp, lr 0.5), then (bp, the default lr), then rbp
    assert [r["n"] for r in results(filled, by=["rule", "train.lr"])] == [1, 3, 2]


def test_plot_refuses_the_seed_as_an_axis(filled, tmp_path):
    for kw in ({"x": "seed"}, {"x": "label", "hue": "seed"}):
        with pytest.raises(ConfigError, match="the seed cannot be an axis"):
            plot(filled, tmp_path / "fig.png", y="test_acc", **kw)
    assert not (tmp_path / "fig.png").exists()


# --- records: the stored rows, and only those asked for ---------------------------------------


def test_records_filter_by_sweep_status_and_configuration_in_sql(filled):
    with Store(filled) as db:
        add(db, "other", "a", 0, 0.5)
        assert {r["sweep"] for r in db.records("sw")} == {"sw"}
        picked = db.records("sw", "done", config_hashes={"h-b"})
        assert [(r["label"], r["seed"]) for r in picked] == [("b", 0), ("b", 1)]
        assert picked[1]["finals"]["test_acc"] == pytest.approx(0.72)
        assert db.records("sw", config_hashes=()) == []
        assert db.records("sw", "failed") == []
    assert [r["label"] for r in runs(filled, sweep="sw", config_hashes=["h-a"])] == ["a"] * 3


def _steps(db, read):
    """SQLite virtual-machine steps that ``read(db)`` takes."""
    steps = []
    db._db.set_progress_handler(lambda: steps.append(1), 1)
    read(db)
    db._db.set_progress_handler(None, 0)
    return len(steps)


def test_records_of_one_sweep_do_not_read_the_other_sweeps_rows(tmp_path):
    def read(db):
        return db.records("small", "done")

    with Store(tmp_path / "s.sqlite") as db:
        add(db, "small", "a", 0, 0.5)
        add(db, "big", "a", 0, 0.5)
        before = _steps(db, read)
        for seed in range(1, 400):
            add(db, "big", "a", seed, 0.5)
        after = _steps(db, read)
    assert after <= 2 * before  # a scan of every final row would take ~100 times the steps


def test_store_runs_is_renamed_records_and_warns(filled):
    with Store(filled) as db, pytest.warns(DeprecationWarning, match=r"Store\.records"):
        assert db.runs("sw") == db.records("sw")


def test_the_old_store_module_warns_and_gives_the_same_objects():
    import importlib

    import lpfa.sweep.report
    import lpfa.sweep.store

    with pytest.warns(DeprecationWarning, match=r"lpfa\.sweep\.store.*lpfa\.sweep\.report"):
        old = importlib.reload(importlib.import_module("lpfa.store"))
    assert old.Store is lpfa.sweep.store.Store
    assert old.results is lpfa.sweep.report.results
