"""experiments/baldi2018_figures.py draws from the stored sweeps and fails cleanly without them."""

import shutil
from pathlib import Path

from tests.conftest import experiment_script

ROOT = Path(__file__).resolve().parents[2]


def figures():
    return experiment_script("baldi2018_figures")


def test_histories_are_the_specs_runs_one_row_per_seed_and_epoch():
    m = figures()
    runs = m.histories(ROOT / "docs" / "data", "baldi2018_table1", ["bp", "dropout50_rbp"])
    assert set(runs) == {"bp", "dropout50_rbp"}
    for rows in runs.values():
        keys = [(r["member"], r["epoch"]) for r in rows]
        assert len(keys) == len(set(keys)) == 5 * 100  # 5 seeds, epochs 1-100 (0 left out)
        assert all(0 <= r["test_acc"] <= 100 for r in rows)  # in %
    assert 97 < m.final(runs["bp"]).mean() < 99


def test_a_figure_is_drawn_from_the_stores(tmp_path):
    assert figures().main(["fig9", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "baldi2018_fig9.png").stat().st_size > 10_000


def test_a_missing_store_is_one_line_and_exit_2(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(ROOT / "docs" / "data" / "baldi2018_table1.sqlite", data)
    assert figures().main(["fig4", "--data", str(data), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "baldi2018_fig4_sparse.sqlite" in err[0]
    assert "lpfa sweep" in err[0]
    assert not (tmp_path / "baldi2018_fig4.png").exists()
