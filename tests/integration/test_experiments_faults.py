"""Experiment scripts under faults: divergence, bad --set, Ctrl-C and kill -9, then resume.

Each runs ``experiments/lillicrap2016_fig1_linear.py --quick`` (labels bp, rbp, top and
node_perturbation, after its η search in OUT/search) as a user would, in a subprocess where a
signal is involved.
"""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import experiment_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "lillicrap2016_fig1_linear.py"
LABELS = ("bp", "rbp", "top")
# long enough that a signal sent once rbp has started lands inside it (about 1 s per label)
SLOW = ["--quick", "--quiet", "--set", "train.epochs=100"]
pytestmark = pytest.mark.slow


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def status(folder: Path) -> str | None:
    try:
        return json.loads((folder / "summary.json").read_text())["status"]
    except (OSError, ValueError):
        return None


def untimed_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def stamps(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The experiment run from start to end without a fault."""
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    done = run(*SLOW, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def interrupt_during_second_label(out: Path, sig: signal.Signals) -> subprocess.CompletedProcess:
    """Start the experiment, send ``sig`` once bp is done and rbp has written an epoch."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *SLOW, "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    history = out / "rbp" / "history.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (
            status(out / "bp") == "done"
            and history.is_file()
            and history.read_text().count("\n") > 1
        ):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the experiment ended before the signal"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def assert_resumes_without_rerunning_bp(out: Path, uninterrupted: Path) -> None:
    """Rerun the same command: bp is kept untouched, the rest runs, the tables equal a clean run."""
    before = stamps(out / "bp")
    again = run(*SLOW, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "[bp] done earlier with this config: kept" in again.stdout
    assert "[rbp] rbp" in again.stdout  # trained again
    assert stamps(out / "bp") == before
    assert [status(out / k) for k in LABELS] == ["done", "done", "done"]
    assert untimed_csv(out / "results.csv") == untimed_csv(uninterrupted / "results.csv")
    assert (out / "table.md").read_text() == (uninterrupted / "table.md").read_text()


def test_sigint_leaves_one_line_exit_130_and_resumes(tmp_path, uninterrupted):
    out = tmp_path / "out"
    stopped = interrupt_during_second_label(out, signal.SIGINT)
    assert stopped.returncode == 130
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 1, stopped.stderr
    assert lines[0].startswith("interrupted: rbp at epoch ")
    assert "Traceback" not in stopped.stderr
    assert status(out / "bp") == "done"
    summary = json.loads((out / "rbp" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    written = {r["epoch"] for r in untimed_csv(out / "rbp" / "history.csv")}
    assert summary["epoch"] == len(written)  # the first epoch not in its history
    assert status(out / "top") is None
    assert_resumes_without_rerunning_bp(out, uninterrupted)


def test_kill_9_leaves_running_and_resumes(tmp_path, uninterrupted):
    out = tmp_path / "out"
    killed = interrupt_during_second_label(out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert status(out / "bp") == "done"
    assert status(out / "rbp") == "running"  # never an earlier run's "done"
    assert_resumes_without_rerunning_bp(out, uninterrupted)


def test_a_diverged_configuration_is_marked_and_exits_3(tmp_path):
    out = tmp_path / "out"
    done = run("--quick", "--quiet", "--set", "train.lr=0.5", "--out", str(out))
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    rows = untimed_csv(out / "results.csv")
    assert {(r["label"], r["status"], r["epoch"]) for r in rows} == {
        ("bp", "diverged", "1"),
        ("rbp", "diverged", "1"),
        ("top", "done", "15"),
        ("node_perturbation", "diverged", "1"),
    }
    assert all(r["test_nse"] == "" for r in rows if r["status"] == "diverged")
    table = (out / "table.md").read_text()
    bp = next(line for line in table.splitlines() if line.startswith("| backprop "))
    assert "diverged in epoch 1" in bp
    assert "e+00" not in bp  # its epoch-0 NSE (1.00e+00) is not reported as its result
    assert bp.endswith("| **no** (diverged) |")
    # everything else is still written, and a rerun keeps the diverged labels (same outcome)
    assert {p.name for p in out.glob("*.png")} == {"nse.png", "angle.png"}
    again = run("--quick", "--quiet", "--set", "train.lr=0.5", "--out", str(out))
    assert again.returncode == 3
    assert "[bp] diverged earlier with this config: kept" in again.stdout


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("train.lr=fast", "train.lr"),
        ("train.nosuch=1", "train.nosuch"),
        ("train.batch_size=100000", "train.batch_size"),
        ("lr", "--set"),
    ],
)
def test_bad_set_is_one_line_exit_2_and_writes_nothing(tmp_path, setting, field):
    out = tmp_path / "out"
    done = run("--quick", "--quiet", "--set", setting, "--out", str(out))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {field}=")
    assert not out.exists()


def load_script(path: Path = SCRIPT):
    return experiment_script(path)


def test_quick_never_writes_into_the_full_runs_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main = load_script().main
    assert main(["--quick", "--quiet", "--set", "train.epochs=2"]) == 0
    assert (tmp_path / "results" / "lillicrap2016_fig1_linear-quick" / "table.md").is_file()
    assert not (tmp_path / "results" / "lillicrap2016_fig1_linear").exists()


def test_plot_only_rebuilds_results_table_and_plots_from_the_run_folders(tmp_path):
    main = load_script().main
    out = tmp_path / "out"
    assert main(["--quick", "--quiet", "--set", "train.epochs=2", "--out", str(out)]) == 0
    results, table = (out / "results.csv").read_text(), (out / "table.md").read_text()
    runs = {k: stamps(out / k) for k in LABELS}
    for name in ("results.csv", "table.md", "nse.png", "angle.png"):
        (out / name).unlink()
    assert (
        main(["--quick", "--quiet", "--set", "train.epochs=2", "--out", str(out), "--plot-only"])
        == 0
    )
    assert (out / "results.csv").read_text() == results
    assert (out / "table.md").read_text() == table
    assert {p.name for p in out.glob("*.png")} == {"nse.png", "angle.png"}
    assert {k: stamps(out / k) for k in LABELS} == runs  # nothing trained


def test_each_fig7_reading_has_its_own_default_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    module = load_script(ROOT / "experiments" / "baldi2018_fig7_quantized.py")
    assert module.main(["--quick", "--plot-only", "--underflow", "zero"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out='results/baldi2018_fig7_quantized-underflow_zero-quick'")
    assert module.main(["--plot-only", "--update-of", "gradient"]) == 2
    assert "'results/baldi2018_fig7_quantized-update_of_gradient'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
