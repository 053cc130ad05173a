"""experiments/lillicrap2016_bp_overfit.py: each run's best epoch comes from its history."""

from pathlib import Path

from tests.conftest import experiment_script

ROOT = Path(__file__).resolve().parents[2]


def load():
    return experiment_script("lillicrap2016_bp_overfit")


def write_history(folder: Path, accs, losses):
    folder.mkdir(parents=True)
    lines = ["epoch,member,seed,test_loss,test_acc"]
    lines += [
        f"{e},0,0,{loss},{acc}" for e, (acc, loss) in enumerate(zip(accs, losses, strict=True))
    ]
    (folder / "history.csv").write_text("\n".join(lines) + "\n")


def test_best_epochs_and_rows_come_from_the_histories(tmp_path):
    mod = load()
    accs = [0.1] + [0.9 + 0.001 * e for e in range(1, 41)]
    accs[30] = 0.999  # best error at epoch 30
    losses = [1.0] + [0.5 - 0.01 * e for e in range(1, 41)]  # best loss at the last epoch
    write_history(tmp_path / "decay_times_eta", accs, losses)
    write_history(tmp_path / "decay_per_example", accs[:25], losses[:25])
    runs = {k: mod.history(tmp_path / k) for k in mod.READINGS}
    text = mod.table(runs)
    assert "lowest test error 0.10 % at epoch 30" in text
    assert "lowest test loss 0.1000 at epoch 40" in text
    assert "trained to epoch 24" in text  # the shorter run
    row40 = next(line for line in text.splitlines() if line.startswith("| 40 |"))
    assert row40.endswith("| — |")  # the shorter run has no epoch 40


def test_missing_runs_exit_2_with_one_line(tmp_path, capsys):
    mod = load()
    assert mod.main(["--out", str(tmp_path)]) == 2
    out = capsys.readouterr().err.strip().splitlines()
    assert len(out) == 1
    assert "--out=" in out[0]
