"""Tables in docs/ rebuilt from stored runs equal what ``lpfa tables`` rebuilds them to, and the
command's edits and errors behave."""

from pathlib import Path

import pytest

from lpfa import doctables
from lpfa.cli import main
from lpfa.doctables import SWEEPS, blocks, rebuilt, table_of

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
MARKED = [(d, b) for d in DOCS for b in blocks(d.read_text(encoding="utf-8"))]


@pytest.mark.parametrize(("doc", "block"), MARKED, ids=[f"{d.name}:{b.label}" for d, b in MARKED])
def test_a_docs_table_is_what_its_stored_runs_give(doc, block):
    assert block.text.strip() == doctables._source(doc, block).strip()


def test_the_stored_sweeps_are_all_in_the_docs_and_results_has_copied_tables():
    names = {b.args[0] for _, b in MARKED if b.kind == "table"}
    assert names == set(SWEEPS)
    assert sum(b.kind == "copy" for d, b in MARKED if d.name == "results.md") >= 9
    (runtime,) = [b for d, b in MARKED if b.kind == "runtime"]
    for name, (store, _, _) in SWEEPS.items():  # every stored sweep has its cost in the docs
        assert f"| {store} | {name} |" in runtime.text


def doc_with(tmp_path, body: str) -> Path:
    (tmp_path / "docs" / "data").mkdir(parents=True)
    (tmp_path / "docs" / "data" / "t.md").write_text(
        "# two tables\n\n| a |\n|---|\n| 1 |\n\ntext\n\n| b |\n|---|\n| 2 |\n"
    )
    doc = tmp_path / "docs" / "r.md"
    doc.write_text(body)
    return doc


def test_copy_blocks_take_the_kth_table_and_check_reports_what_is_stale(tmp_path, capsys):
    body = "intro\n<!-- lpfa:copy t.md 2 -->\n| b |\n|---|\n| old |\n<!-- lpfa:end -->\nafter\n"
    doc = doc_with(tmp_path, body)
    text, changed = rebuilt(doc)
    assert changed == ["lpfa:copy t.md 2"]
    assert (
        text == "intro\n<!-- lpfa:copy t.md 2 -->\n| b |\n|---|\n| 2 |\n<!-- lpfa:end -->\nafter\n"
    )
    assert main(["tables", str(doc), "--check"]) == 1
    assert doc.read_text() == body  # --check writes nothing
    assert "differs" in capsys.readouterr().out
    assert main(["tables", str(doc)]) == 0
    assert doc.read_text() == text
    assert main(["tables", str(doc), "--check"]) == 0
    assert table_of("no table") is None


@pytest.mark.parametrize(
    ("marker", "words"),
    [
        ("<!-- lpfa:copy missing.md -->", "no file"),
        ("<!-- lpfa:copy t.md 3 -->", "fewer than 3 tables"),
        ("<!-- lpfa:copy t.md x -->", "need PATH [K ≥ 1]"),
        ("<!-- lpfa:table nosuch -->", "a sweep of baldi2018_table1"),
        ("<!-- lpfa:runtime none*.sqlite -->", "no store matches"),
    ],
)
def test_a_bad_block_is_one_line_exit_2_and_no_file_changes(tmp_path, capsys, marker, words):
    good = doc_with(tmp_path, "<!-- lpfa:copy t.md -->\nstale\n<!-- lpfa:end -->\n")
    bad = tmp_path / "docs" / "bad.md"
    bad.write_text(f"{marker}\nx\n<!-- lpfa:end -->\n")
    before = good.read_text()
    assert main(["tables", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert words in err
    assert "lpfa:" in err
    assert good.read_text() == before  # the good document was not rewritten either


def test_a_missing_document_is_named(tmp_path, capsys):
    assert main(["tables", str(tmp_path / "none.md")]) == 2
    assert "DOC" in capsys.readouterr().err


def test_runtime_table_times_each_batched_run_once_and_skips_pending_runs(tmp_path):
    from lpfa.sweep.report import runtime_table
    from lpfa.sweep.store import Store

    versions = {"blas_architecture": "SkylakeX", "threads": 1, "openblas_coretype": None}
    with Store(tmp_path / "s.sqlite") as db:
        for seed in (0, 1):  # one batched run of two seeds, 60 s
            run = db.start("sw", "a", "ha", seed, {}, {}, [0, 1])
            db.finish(run, "done", [{"epoch": 0, "seed": seed}], seconds=60.0, versions=versions)
        run = db.start("sw", "b", "hb", 0, {}, {}, [0])
        forced = {**versions, "blas_architecture": "Haswell", "openblas_coretype": "Haswell"}
        db.finish(run, "diverged", [{"epoch": 0, "seed": 0}], seconds=180.0, versions=forced)
        db.start("sw", "c", "hc", 0, {}, {}, [0])  # still running: counted, not timed
    (row,) = runtime_table([tmp_path / "s.sqlite"]).splitlines()[2:]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[:6] == ["s.sqlite", "sw", "3 (4)", "2", "0.07", "2.0 (1.0–3.0)"]
    assert cells[6] == "Haswell (forced), 1; SkylakeX, 1"


def test_runtime_table_times_every_run_folder_of_an_experiment(tmp_path):
    import json

    from lpfa.sweep.report import runtime_table

    versions = {"blas_architecture": "SkylakeX", "threads": 2}
    for label, status, seeds, seconds in (
        ("a", "done", [0, 1], 90.0),
        ("b", "interrupted", [0], 30.0),
    ):
        run = tmp_path / "exp" / label
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"seeds": seeds, "versions": versions}))
        (run / "summary.json").write_text(json.dumps({"status": status}))
        (run / "history.csv").write_text(f"epoch,time_s\n0,0.1\n1,{seconds}\n")
    (tmp_path / "exp" / "notes").mkdir()  # not a run folder
    (row,) = runtime_table([], [tmp_path / "exp"]).splitlines()[2:]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells == [
        "exp/",
        "(run folders)",
        "2 (3)",
        "2",
        "0.03",
        "1.0 (0.5–1.5)",
        "SkylakeX, 2",
        "—",
    ]
