"""The command line: files written, overrides applied, bad input refused in one line."""

import json
import subprocess
import sys

from lpfa.cli import main
from lpfa.report import read_history

CONFIG = """
name = "tiny"
seeds = [0, 1]
[data]
name = "linear-teacher"
n_train = 100
n_test = 40
[model]
sizes = [30, 8, 10]
hidden = "tanh"
output = "linear"
loss = "squared"
[channel]
rule = "rbp"
[train]
epochs = 2
batch_size = 10
lr = 0.01
"""


def write_config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG)
    return path


def test_train_writes_config_history_and_summary(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "train",
            str(write_config(tmp_path)),
            "--set",
            "train.epochs=3",
            "--set",
            "channel.rule=dfa",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["train"]["epochs"] == 3
    assert saved["config"]["channel"]["rule"] == "srbp"
    assert saved["seeds"] == [0, 1]
    assert "numpy" in saved["versions"]
    rows = read_history(out / "history.csv")
    assert len(rows) == 2 * 4
    assert rows[-1]["epoch"] == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "done"
    assert len(summary["members"]) == 2
    assert "test_nse_mean" in summary
    printed = capsys.readouterr().out
    assert "mean±std" in printed
    assert "summary.json" in printed


def test_bad_value_is_one_line_without_traceback(tmp_path):
    cfg = write_config(tmp_path)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "lpfa.cli",
            "train",
            str(cfg),
            "--set",
            "train.lr=-2",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == "error: train.lr=-2.0: must be finite and > 0"
    assert "Traceback" not in res.stderr


def test_divergence_is_reported_and_history_kept(tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(
        [
            "train",
            str(write_config(tmp_path)),
            "--set",
            "train.lr=1e4",
            "--set",
            "model.hidden='relu'",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 3
    err = capsys.readouterr().err
    assert "diverged in epoch" in err
    assert "history so far" in err
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"
    assert read_history(out / "history.csv")[0]["epoch"] == 0


def test_check_quantizer_passes_ours_and_names_the_broken_contract(tmp_path, monkeypatch, capsys):
    (tmp_path / "userq.py").write_text(
        "import numpy as np\n"
        "def good(x):\n    return np.asarray(np.round(np.clip(x, -1, 1) * 4) / 4)\n"
        "def skewed(x):  # floor: not odd-symmetric, error up to a whole step\n"
        "    return np.asarray(np.floor(np.clip(x, -1, 1) * 4) / 4)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = "--grid=" + ",".join(str(k / 4) for k in range(-4, 5))
    assert main(["check-quantizer", "userq:good", grid, "--max-examples", "30"]) == 0
    assert main(["check-quantizer", "userq:skewed", grid, "--max-examples", "30"]) == 1
    out = capsys.readouterr().out
    assert "FAILS" in out
    assert "odd_symmetric" in out
