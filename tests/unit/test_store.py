"""The results store: round trips, transactions, concurrent writers, the reading API."""

import sqlite3

import pytest

from lpfa.config import ConfigError
from lpfa.store import Store, format_table, plot, results, runs
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
        (row,) = db.runs("sw")
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
        (row,) = db.runs("sw")
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
        assert all(len(db.epochs(r["id"])) == 3 for r in db.runs())
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
