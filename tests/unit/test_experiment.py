"""The experiments' shared helpers: output folders, resume, merging, diverged rows, aggregation."""

import argparse
import csv
import dataclasses
import json
from pathlib import Path

import pytest

from lpfa import config as C
from lpfa import plots
from lpfa.experiment import (
    Results,
    accuracy_rows,
    finished,
    obtain,
    out_folder,
    parser,
    variants,
    write_results,
)
from lpfa.report import comparison_table
from lpfa.runfiles import RunWriter

ROOT = Path(__file__).resolve().parents[2]


def tiny(lr: float = 0.01) -> dict[str, C.RunConfig]:
    """Two labels of the Lillicrap linear task, a few milliseconds each."""
    base = C.load(
        ROOT / "configs" / "lillicrap2016_linear.toml",
        [
            "seeds=[0, 1]",
            "data.n_train=40",
            "data.n_test=40",
            "train.epochs=2",
            f"train.lr={lr}",
            "train.angle_every=1",
            "train.angle_examples=20",
        ],
    )
    return variants(base, {"bp": {"rule": "bp"}, "rbp": {"rule": "rbp"}})


def args(out: Path, *extra: str) -> argparse.Namespace:
    return parser("doc", "unused").parse_args(["--quiet", "--out", str(out), *extra])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def untimed(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def test_quick_runs_get_their_own_default_folder_and_out_is_respected():
    p = parser("doc", "results/paper_fig1")
    assert out_folder(p.parse_args([])) == Path("results/paper_fig1")
    assert out_folder(p.parse_args(["--quick"])) == Path("results/paper_fig1-quick")
    assert out_folder(p.parse_args(["--quick", "--out", "x/y"])) == Path("x/y")
    assert out_folder(p.parse_args(["--out", "x/y"])) == Path("x/y")


def test_finished_means_done_or_diverged_with_the_identical_config(tmp_path):
    cfg = tiny()["bp"]
    writer = RunWriter(tmp_path / "bp", cfg)
    assert not finished(tmp_path / "bp", cfg)  # "running"
    writer.summary({}, status="interrupted", epoch=1)
    assert not finished(tmp_path / "bp", cfg)
    writer.summary({}, status="done")
    assert finished(tmp_path / "bp", cfg)
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=0.02))
    assert not finished(tmp_path / "bp", other)
    fewer = dataclasses.replace(cfg, seeds=(0,))
    assert not finished(tmp_path / "bp", fewer)
    writer.summary({}, status="diverged", epoch=1)
    assert finished(tmp_path / "bp", cfg)  # a diverged run diverges again: it is an outcome


def test_a_run_stays_finished_when_lpfa_gains_a_field_with_a_default(tmp_path):
    # config.json written before channel.update_top existed: the same run, not a stale one
    cfg = tiny()["bp"]
    RunWriter(tmp_path / "bp", cfg).summary({}, status="done")
    path = tmp_path / "bp" / "config.json"
    saved = json.loads(path.read_text())
    del saved["config"]["channel"]["update_top"]
    path.write_text(json.dumps(saved))
    assert finished(tmp_path / "bp", cfg)
    # but a field that held another value then (an old default) is a different configuration
    saved["config"]["channel"]["fprime"] = False
    path.write_text(json.dumps(saved))
    assert not finished(tmp_path / "bp", cfg)


def test_rerun_keeps_finished_labels_and_retrains_changed_ones(tmp_path, capsys):
    out = tmp_path / "out"
    assert sorted(obtain(args(out), tiny()).runs) == ["bp", "rbp"]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*") if p.is_file()}
    table = (out / "results.csv").read_text()
    capsys.readouterr()
    obtain(args(out), tiny())
    assert "[bp] done earlier with this config: kept" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*") if p.is_file()} == stamps
    assert (out / "results.csv").read_text() == table
    # a changed config is trained again, never reported from the old folder
    obtain(args(out, "--set", "train.epochs=3"), tiny())
    assert (out / "bp" / "history.csv").stat().st_mtime_ns != stamps[out / "bp" / "history.csv"]
    assert {r["epoch"] for r in read_csv(out / "results.csv")} == {"3"}


def test_only_chunks_merge_into_one_results_csv(tmp_path):
    out = tmp_path / "out"
    obtain(args(out), tiny(), only=["bp"])
    assert {r["label"] for r in read_csv(out / "results.csv")} == {"bp"}
    obtain(args(out), tiny(), only=["rbp"])
    rows = read_csv(out / "results.csv")
    assert [r["label"] for r in rows] == ["bp", "bp", "rbp", "rbp"]
    assert {r["status"] for r in rows} == {"done"}


def test_plot_only_rebuilds_results_csv_from_the_run_folders(tmp_path):
    out = tmp_path / "out"
    obtain(args(out), tiny())
    before = (out / "results.csv").read_text()
    (out / "results.csv").write_text("stale\n")
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*")}
    obtain(args(out, "--plot-only"), tiny())
    assert (out / "results.csv").read_text() == before
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*")} == stamps  # nothing retrained


def test_plot_only_without_finished_runs_is_a_config_error(tmp_path):
    with pytest.raises(C.ConfigError, match="--out"):
        obtain(args(tmp_path / "empty", "--plot-only"), tiny())


def test_bad_set_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(C.ConfigError, match=r"train\.lr"):
        obtain(args(out, "--set", "train.lr=fast"), tiny())
    with pytest.raises(C.ConfigError, match=r"train\.batch_size"):
        obtain(args(out, "--set", "train.batch_size=1000"), tiny())
    assert not out.exists()


def test_a_diverged_label_has_no_numbers_in_results_and_tables(tmp_path):
    out = tmp_path / "out"
    results = obtain(args(out), tiny(lr=0.5))
    assert results.diverged == {"bp": 2, "rbp": 2}
    assert results.exit_code == 3
    rows = read_csv(out / "results.csv")
    assert [(r["label"], r["status"], r["epoch"], r["seed"]) for r in rows] == [
        ("bp", "diverged", "2", "0"),
        ("bp", "diverged", "2", "1"),
        ("rbp", "diverged", "2", "0"),
        ("rbp", "diverged", "2", "1"),
    ]
    metrics = {"test_loss", "test_nse", "train_loss", "angle_1"}
    assert all(r[k] == "" for r in rows for k in metrics)
    # the epochs before it diverged are in its history, never in results.csv
    assert {r["epoch"] for r in results.runs["bp"] if r["test_nse"] is not None} == {0, 1}
    table = comparison_table(
        [
            {"label": "ok", "mean": 90.0, "std": 1.0, "n": 2, "paper": 91.0, "target": 89.0},
            {"label": "bp", "diverged": 1, "n": 2, "paper": 97.0, "target": 96.0},
        ]
    )
    ok_row, bp_row = table.splitlines()[2:]
    assert "90.00 ± 1.00" in ok_row
    assert ok_row.endswith("| yes |")
    assert "diverged in epoch 1" in bp_row
    assert "±" not in bp_row
    assert not any(c.isdigit() for c in bp_row.split("|")[2].replace("epoch 1", ""))
    assert bp_row.endswith("| **no** (diverged) |")


def test_accuracy_rows_aggregate_over_one_labels_seeds_and_mark_diverged():
    hist = lambda accs: [  # noqa: E731
        {"epoch": 1, "member": m, "seed": m, "test_acc": a} for m, a in enumerate(accs)
    ]
    results = Results(
        out=Path("unused"),
        runs={"a": hist([0.90, 0.92]), "b": hist([0.50, 0.70, 0.60]), "c": hist([0.1])},
        diverged={"c": 2},
        seeds={"a": [0, 1], "b": [0, 1, 2], "c": [0]},
        missing=[],
    )
    rows = {r["label"].split(" ")[0]: r for r in accuracy_rows(results, {"a": 91.0})}
    assert rows["a"]["mean"] == pytest.approx(91.0)
    assert rows["a"]["n"] == 2
    assert rows["a"]["std"] == pytest.approx(2**0.5)
    assert rows["b"]["mean"] == pytest.approx(60.0)
    assert rows["b"]["n"] == 3
    assert rows["b"]["std"] == pytest.approx(10.0)
    assert rows["c"]["diverged"] == 2
    assert "mean" not in rows["c"]


def test_write_results_rows_carry_their_status(tmp_path):
    results = Results(
        out=tmp_path,
        runs={
            "a": [
                {"epoch": 0, "member": 0, "seed": 3, "test_acc": 0.1},
                {"epoch": 1, "member": 0, "seed": 3, "test_acc": 0.8},
            ],
            "b": [{"epoch": 0, "member": 0, "seed": 3, "test_acc": 0.1}],
        },
        diverged={"b": 1},
        seeds={"a": [3], "b": [3]},
        missing=["c"],
    )
    rows = read_csv(write_results(results))
    head = {"member": "0", "seed": "3"}
    assert rows == [
        {"label": "a", "status": "done", "epoch": "1", **head, "test_acc": "0.8"},
        {"label": "b", "status": "diverged", "epoch": "1", **head, "test_acc": ""},
    ]


@pytest.fixture
def figures(monkeypatch):
    """The figures :func:`lpfa.plots.curves` draws, instead of files."""
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.append(fig) or Path(path))
    yield drawn
    for fig in drawn:
        plots.pyplot().close(fig)


def history(values: dict[int, list[float]]) -> list[dict]:
    return [
        {"epoch": e, "member": m, "seed": m, "test_acc": v}
        for e, vs in values.items()
        for m, v in enumerate(vs)
    ]


def test_curves_refuse_to_pool_several_runs_into_one_line(figures):
    pooled = history({0: [0.1, 0.2], 1: [0.5, 0.6]}) + history({0: [0.3, 0.4], 1: [0.7, 0.8]})
    with pytest.raises(ValueError, match="pooled"):
        plots.curves({"x": pooled}, [("test_acc", "acc")], "unused.png")


def test_curves_mark_a_diverged_run_without_a_mean_or_band(figures):
    runs = {
        "good": history({0: [0.1, 0.3], 1: [0.5, 0.7], 2: [0.6, 0.8]}),
        "bad": history({0: [0.1, 0.2]}),
    }
    plots.curves(runs, [("test_acc", "acc")], "unused.png", diverged={"bad": 1})
    (ax,) = figures[0].axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["good (2 seeds)", "bad: diverged in epoch 1"]
    assert len(ax.collections) == 1  # one min–max band: the good run's
    good = next(line for line in ax.lines if line.get_label() == "good (2 seeds)")
    assert list(good.get_ydata()) == pytest.approx([0.2, 0.6, 0.7])
    cross = next(line for line in ax.lines if "diverged" in line.get_label())
    assert cross.get_marker() == "x"
    assert list(cross.get_xdata()) == [0.0]


def stored_run(db, label, seed, status, errors):
    """One finished run of sweep ``sw`` in a store: test error ``errors[e]`` % at epoch e."""
    run_id = db.start("sw", label, f"h-{label}", seed, {"seeds": [seed]}, {}, [seed])
    rows = [
        {"epoch": e, "seed": seed, "step": e, "test_acc": 1 - err / 100}
        for e, err in enumerate(errors)
    ]
    db.finish(run_id, status, rows)


def test_collect_store_reads_a_sweeps_finished_seeds_as_one_ensemble_per_label(tmp_path):
    from lpfa.experiment import collect_store
    from lpfa.sweep.store import Store

    with Store(tmp_path / "s.sqlite") as db:
        stored_run(db, "b", 3, "done", [90, 5, 4])
        stored_run(db, "b", 1, "done", [90, 6, 2])
        stored_run(db, "c", 0, "diverged", [90, 50])
        stored_run(db, "c", 1, "done", [90, 8, 7])
        db.start("sw", "d", "h-d", 0, {"seeds": [0]}, {}, [0])  # still running: not finished
        db.start("other", "b", "h-b", 7, {"seeds": [7]}, {}, [7])  # another sweep
    got = collect_store(tmp_path / "s.sqlite", "sw", ["b", "c", "d", "e"], tmp_path / "out")
    assert got.seeds == {"b": [1, 3], "c": [0, 1]}
    assert [(r["member"], r["seed"], r["epoch"]) for r in got.runs["b"]] == [
        (0, 1, 0), (0, 1, 1), (0, 1, 2), (1, 3, 0), (1, 3, 1), (1, 3, 2)
    ]  # fmt: skip
    assert got.diverged == {"c": 2}  # after the last epoch stored of its diverged seed
    assert got.missing == ["d", "e"]
    assert list(got.done) == ["b"]
    with pytest.raises(C.ConfigError, match="holds no finished run of sweep 'other'"):
        collect_store(tmp_path / "s.sqlite", "other", ["b"], tmp_path / "out")
