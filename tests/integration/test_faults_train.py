"""Faults during ``lpfa train --out DIR`` over an earlier finished run: Ctrl-C and kill -9.

The folder must never show the earlier run's "done" as this run's result: it says "running"
from the start, "interrupted at epoch k" after Ctrl-C, and a rerun finishes it with the same
history as a run that was never interrupted.
"""

import json
import signal
import subprocess
import sys

import pytest

from lpfa.report import read_history
from lpfa.runfiles import read_status
from tests.unit.test_cli import CONFIG

pytestmark = pytest.mark.slow

EPOCHS = 600  # a few seconds: long enough to be interrupted after epoch 1


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG.replace("epochs = 2", f"epochs = {EPOCHS}"))
    return path


def train(config, out, **kw):
    cmd = [sys.executable, "-m", "lpfa.cli", "train", str(config), "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(config, out):
    proc = train(config, out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert read_status(out) == "done"


def start_and_wait_for_epoch_1(config, out):
    """A run over ``out``, stopped at nothing yet: returned once its epoch-1 line is printed."""
    proc = train(config, out)
    for line in proc.stdout:
        if line.strip().startswith("epoch    1"):
            return proc
    pytest.fail(f"no epoch-1 line; stderr: {proc.stderr.read()}")


def history(out):
    """The history without the wall-clock column."""
    return [
        {k: v for k, v in r.items() if k != "time_s"} for r in read_history(out / "history.csv")
    ]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_sigint_then_rerun(tmp_path, config, sig):
    """Ctrl-C, and kill's SIGTERM handled the same way: one line, exit 130, folder interrupted."""
    out = tmp_path / "run"
    finish(config, out)  # the earlier run the new one replaces
    proc = start_and_wait_for_epoch_1(config, out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    summary = json.loads((out / "summary.json").read_text())
    k = summary["epoch"]
    assert 2 <= k < EPOCHS
    assert summary["status"] == "interrupted"
    assert summary["message"].startswith(f"interrupted at epoch {k}")
    assert lines[0] == f"interrupted at epoch {k}: {out} keeps epochs 0..{k - 1}"
    kept = history(out)
    assert sorted({r["epoch"] for r in kept}) == list(range(k))  # whole rows, no partial epoch

    finish(config, out)  # rerun
    reference = tmp_path / "reference"
    finish(config, reference)
    assert history(out) == history(reference)
    assert len(history(out)) == 2 * (EPOCHS + 1)
    assert kept == history(reference)[: len(kept)]


def test_kill_9_leaves_running_never_done(tmp_path, config):
    out = tmp_path / "run"
    finish(config, out)
    proc = start_and_wait_for_epoch_1(config, out)
    proc.kill()  # SIGKILL: nothing can be written after it
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert read_status(out) == "running"
    assert json.loads((out / "config.json").read_text())["config"]["train"]["epochs"] == EPOCHS
    assert [p.name for p in out.iterdir() if p.suffix == ".tmp"] == []
    finish(config, out)
    assert sorted({r["epoch"] for r in history(out)}) == list(range(EPOCHS + 1))
