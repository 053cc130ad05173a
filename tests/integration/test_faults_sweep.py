"""Faults during a process-pool sweep: Ctrl-C and kill -9, then resume.

Each test starts ``lpfa sweep --executor process`` on a small spec (10 runs of a 6-5-3 net on
the linear teacher) in a process group of its own, interrupts it once at least one run is
done, and checks what a user relies on: the parent and its workers are gone within seconds,
Ctrl-C says so in one line with exit status 130, every finished run is ``done`` and whole, a
run is ``running`` only if a worker began it, and rerunning the same command trains only what
did not finish and gives the table of an uninterrupted sweep.
"""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lpfa.sweep import load_spec, run_sweep
from lpfa.sweep.report import results

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
SPEC = """
name = "faults"
seeds = [0, 1]
pack = false
[set]
data.name = "linear-teacher"
data.n_train = 200
data.n_test = 50
model.sizes = [6, 5, 3]
model.output = "linear"
model.loss = "squared"
train.epochs = 150
train.batch_size = 10
train.lr = 0.01
[axes]
channel.rule = ["bp", "rbp", "srbp", "top", "sbp"]
"""
N_RUNS = 10


@pytest.fixture(autouse=True)
def _no_orphans():
    """Whatever a test leaves running in the groups it started is killed afterwards."""
    started: list[int] = []
    _STARTED.append(started)
    yield
    _STARTED.remove(started)
    for pgid in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


_STARTED: list[list[int]] = []


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "faults.toml"
    path.write_text(SPEC)
    return path


# ``lpfa ARGS`` whose workers log "begin"/"end" of each run (label, seed) to $FAULTS_LOG
LOGGED = """
import json, os, sys
import lpfa.cli, lpfa.sweep.execute

real = lpfa.sweep.execute.execute_pack


def log(what, config):
    line = json.dumps([what, "channel.rule=" + config["channel"]["rule"], config["seeds"][0]])
    with open(os.environ["FAULTS_LOG"], "a") as f:
        f.write(line + "\\n")


def logged(config, **kwargs):
    log("begin", config)
    out = real(config, **kwargs)
    log("end", config)
    return out


lpfa.sweep.execute.execute_pack = logged  # the pool's workers are forks: they run this one
sys.exit(lpfa.cli.main(sys.argv[1:]))
"""


def _lpfa(*args: str, log: Path | None = None) -> subprocess.Popen:
    """``lpfa ARGS`` in a new process group (its own session), as a shell would start it;
    with ``log``, its workers log each run they begin and end."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "lpfa.cli", *args]
    if log is not None:
        env["FAULTS_LOG"] = str(log)
        cmd = [sys.executable, "-c", LOGGED, *args]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for started in _STARTED:
        started.append(proc.pid)
    return proc


def _rows(store: Path) -> dict[tuple[str, int], dict]:
    """Every run of the store by (label, seed), read without writing (mode=ro)."""
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        rows = con.execute("SELECT * FROM runs").fetchall()
        epochs = dict(con.execute("SELECT run_id, COUNT(*) FROM epochs GROUP BY run_id"))
    finally:
        con.close()
    return {(r["label"], r["seed"]): {**dict(r), "n_epochs": epochs.get(r["id"], 0)} for r in rows}


def _done(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        return sum(r["status"] == "done" for r in _rows(store).values())
    except sqlite3.OperationalError:  # tables not made yet
        return 0


def _wait_for_a_done_run(proc: subprocess.Popen, store: Path) -> None:
    deadline = time.monotonic() + 30
    while _done(store) < 1:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no run finished within 30 s"
        time.sleep(0.05)


def _group_gone(pgid: int, within: float) -> bool:
    """Whether every process of the group has exited within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _check_store_after_the_fault(
    store: Path, log: Path, stopped: str
) -> dict[tuple[str, int], dict]:
    """``stopped``: the status of runs a worker began and did not end (``interrupted`` after
    Ctrl-C; ``running`` after kill -9, which nothing can catch)."""
    before = _rows(store)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    begun = {(label, seed) for what, label, seed in events if what == "begin"}
    ended = {(label, seed) for what, label, seed in events if what == "end"}
    done = {k: r for k, r in before.items() if r["status"] == "done"}
    running = {k for k, r in before.items() if r["status"] == stopped}
    assert done, "the interrupt came after a run had finished"
    assert all(r["n_epochs"] == 151 and r["finished"] for r in done.values())
    assert set(done) <= ended
    # "running" means a worker began it, never that it is queued
    assert running <= begun
    assert len(running - ended) <= WORKERS  # one at a time per worker
    assert all(r["status"] in ("done", stopped) for r in before.values())
    assert len(begun) < N_RUNS, "every run had started before the interrupt"
    return before


BY = ["label", "seed"]
METRICS = ["test_nse", "test_loss", "train_loss"]


def _table(store: Path) -> list[str]:
    """What ``lpfa results STORE`` prints below its status line."""
    proc = _lpfa("results", str(store))
    text, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return text.splitlines()[2:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Per-run results and the ``lpfa results`` table of an uninterrupted sweep."""
    folder = tmp_path_factory.mktemp("reference")
    spec = folder / "faults.toml"
    spec.write_text(SPEC)
    store = folder / "s.sqlite"
    run_sweep(load_spec(spec), store, progress=False)
    table = _table(store)
    assert len(table) == 2 + N_RUNS // 2  # header, rule, one row per label
    return results(store, by=BY, metrics=METRICS), table


def _resume_and_compare(spec: Path, store: Path, before: dict, reference) -> None:
    proc = _lpfa("sweep", str(spec), "--store", str(store), "--executor", "process",
                 "--workers", str(WORKERS), "--quiet")  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    n_done = sum(r["status"] == "done" for r in before.values())
    assert f"{N_RUNS - n_done} done, 0 failed, 0 diverged, {n_done} already done" in out
    after = _rows(store)
    assert set(before) <= set(after)
    assert len(after) == N_RUNS
    assert all(r["status"] == "done" for r in after.values())
    for k, r in before.items():
        if r["status"] == "done":  # never rerun: same row, same times, one attempt
            assert after[k]["id"] == r["id"]
            assert (after[k]["started"], after[k]["finished"]) == (r["started"], r["finished"])
            assert after[k]["attempts"] == 1
        else:  # rerun once, under the same id
            assert after[k]["id"] == r["id"]
            assert after[k]["attempts"] == r["attempts"] + 1
    # the table of the resumed store is the table of an uninterrupted sweep
    rows, table = reference
    assert results(store, by=BY, metrics=METRICS) == rows
    assert _table(store) == table


@pytest.mark.parametrize("to", ["group", "parent", "sigterm"])
def test_ctrl_c_stops_the_workers_keeps_finished_runs_and_resumes(spec, tmp_path, reference, to):
    store = tmp_path / "s.sqlite"
    log = tmp_path / "workers.log"
    proc = _lpfa("sweep", str(spec), "--store", str(store), "--executor", "process",
                 "--workers", str(WORKERS), "--quiet", log=log)  # fmt: skip
    _wait_for_a_done_run(proc, store)
    sent = time.monotonic()
    if to == "group":  # what a terminal sends on Ctrl-C
        os.killpg(proc.pid, signal.SIGINT)
    elif to == "sigterm":  # kill, or a batch system's time limit: handled as Ctrl-C
        os.kill(proc.pid, signal.SIGTERM)
    else:
        os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    took = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert took < 5, f"took {took:.1f} s to stop"
    assert _group_gone(proc.pid, 3), "a worker outlived the sweep"
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    before = _check_store_after_the_fault(store, log, "interrupted")
    n_done = sum(r["status"] == "done" for r in before.values())
    n_running = sum(r["status"] == "interrupted" for r in before.values())
    assert line == (
        f"interrupted: {n_done} done, {n_running} stopped while running, "
        f"{N_RUNS - n_done - n_running} not started; rerun the same command to resume"
    )
    _resume_and_compare(spec, store, before, reference)


def test_kill_9_of_the_parent_stops_its_workers_and_the_rerun_resumes(spec, tmp_path, reference):
    store = tmp_path / "s.sqlite"
    log = tmp_path / "workers.log"
    proc = _lpfa("sweep", str(spec), "--store", str(store), "--executor", "process",
                 "--workers", str(WORKERS), "--quiet", log=log)  # fmt: skip
    _wait_for_a_done_run(proc, store)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=20) == -signal.SIGKILL
    assert _group_gone(proc.pid, 5), "orphaned workers went on training"
    proc.communicate(timeout=20)  # the workers held its pipes; they are closed now
    before = _check_store_after_the_fault(store, log, "running")
    _resume_and_compare(spec, store, before, reference)
