"""experiments/lillicrap2016_fig2_mnist.py --store: the paper-protocol table from a sweep store."""

from pathlib import Path

from lpfa.sweep.store import Store
from tests.conftest import experiment_script

ROOT = Path(__file__).resolve().parents[2]


def load():
    return experiment_script("lillicrap2016_fig2_mnist")


def add(db, sweep, label, seed, errors):
    run_id = db.start(sweep, label, f"h-{label}", seed, {"seeds": [seed]}, {}, [seed])
    rows = [
        {"epoch": e, "seed": seed, "step": e, "test_acc": 1 - err / 100, "angle_1": 45.0}
        for e, err in enumerate(errors)
    ]
    db.finish(run_id, "done", rows)


def test_store_table_stops_every_rule_where_bps_mean_error_is_lowest(tmp_path, capsys):
    mod = load()
    with Store(tmp_path / "s.sqlite") as db:
        add(db, mod.SWEEP, "bp", 0, [90, 3.0, 2.0, 2.5])
        add(db, mod.SWEEP, "bp", 1, [90, 3.0, 2.2, 1.9])  # mean lowest at epoch 2 (2.1)
        add(db, mod.SWEEP, "fa", 0, [90, 4.0, 2.6, 1.0])
        add(db, "another_sweep", "fa", 1, [90, 0.0, 0.0, 0.0])  # not read
    out = tmp_path / "out"
    assert mod.main(["--store", str(tmp_path / "s.sqlite"), "--out", str(out), "--quiet"]) == 0
    text = (out / "table.md").read_text()
    assert "Stopped at epoch 2, where backprop's mean test error is lowest (of epochs 1-3)" in text
    assert "| backprop | 2.10 (2.00–2.20) | 2 | 2.4 | -0.30 | ≤ 2.6 | yes |" in text
    assert "| feedback alignment | 2.60 (2.60–2.60) | 1 | 2.1 | +0.50 | ≤ 2.4 | **no** |" in text
    assert "| FA, 50 % of W and B removed |" not in text  # not run yet: no row, but a line
    assert "Not finished yet: FA, 50 % of W and B removed, shallow (output layer only)." in text
    assert (out / "test_error.png").is_file()
    assert mod.main(["--store", str(tmp_path / "s.sqlite"), "--seeds", "2"]) == 2
    assert "--seeds=2: has no effect with --store" in capsys.readouterr().err
