"""The Dask executor: a small real sweep on a LocalCluster; a worker that dies is retried."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import lpfa.sweep.execute
import lpfa.sweep.executors
import lpfa.sweep.spec
from lpfa.sweep import parse_spec, run_sweep
from lpfa.sweep.report import results
from lpfa.sweep.store import Store

distributed = pytest.importorskip("distributed")

BASE = {
    "data.name": "linear-teacher", "data.n_train": 100, "data.n_test": 40,
    "model.sizes": [30, 8, 10], "model.hidden": "tanh", "model.output": "linear",
    "model.loss": "squared", "train.epochs": 2, "train.batch_size": 10, "train.lr": 0.01,
}  # fmt: skip


def tiny(**extra):
    return parse_spec({"name": "tiny", "seeds": [0, 1], "set": dict(BASE), **extra})


def test_a_sweep_on_a_local_cluster_matches_the_inline_sweep(tmp_path):
    sw = tiny(axes={"channel.rule": ["bp", "rbp", "srbp"]})
    out = run_sweep(sw, tmp_path / "dask.sqlite", executor="dask", workers=2, processes=False,
                    progress=False)  # fmt: skip
    assert (out.done, out.failed) == (6, 0)
    run_sweep(sw, tmp_path / "inline.sqlite", progress=False)
    a = results(tmp_path / "dask.sqlite", by=["label", "seed"], metrics=["test_nse"])
    b = results(tmp_path / "inline.sqlite", by=["label", "seed"], metrics=["test_nse"])
    assert [r["label"] for r in a] == [r["label"] for r in b]
    np.testing.assert_allclose([r["test_nse_mean"] for r in a], [r["test_nse_mean"] for r in b])


def test_a_failing_run_on_dask_is_recorded_and_the_sweep_goes_on(tmp_path):
    sw = tiny(seeds=[0], axes={"train.batch_size": [10, 1000]})
    out = run_sweep(sw, tmp_path / "s.sqlite", executor="dask", workers=1, processes=False,
                    progress=False)  # fmt: skip
    assert (out.done, out.failed) == (1, 1)
    with Store(tmp_path / "s.sqlite") as db:
        (bad,) = db.records("tiny", "failed")
    assert "Traceback" in bad["traceback"]


_EXECUTE = lpfa.sweep.execute.execute_pack  # the real one, before a test replaces it


def _dies_once(config, **kwargs):
    marker = Path(os.environ["LPFA_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("died")
        os._exit(3)  # the worker process dies mid-run
    return _EXECUTE(config, **kwargs)


@pytest.mark.slow
def test_dask_reruns_the_run_of_a_worker_that_died(tmp_path, monkeypatch):
    import cloudpickle

    monkeypatch.setenv("LPFA_TEST_MARKER", str(tmp_path / "marker"))
    # the worker processes cannot import this test module: send the function itself
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(lpfa.sweep.execute, "execute_pack", _dies_once)
    sw = tiny(seeds=[0], axes={"channel.rule": ["bp"]})
    try:
        out = run_sweep(sw, tmp_path / "s.sqlite", executor="dask", workers=1, processes=True,
                        progress=False)  # fmt: skip
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert (out.done, out.failed) == (1, 0)
    assert (tmp_path / "marker").read_text() == "died"


def test_an_unreachable_scheduler_is_one_line_after_the_timeout(tmp_path, capsys):
    import socket
    import time

    import lpfa.cli

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tmp_path / "tiny.toml"
    spec.write_text(
        'name = "tiny"\nseeds = [0]\n[set]\n'
        + "\n".join(f"{k} = {lpfa.sweep.spec._toml(v)}" for k, v in BASE.items())
    )
    address = f"tcp://127.0.0.1:{port}"
    t0 = time.monotonic()
    argv = ["sweep", str(spec), "--store", str(tmp_path / "s.sqlite"), "--scheduler", address,
            "--scheduler-timeout", "1", "--quiet"]  # fmt: skip
    code = lpfa.cli.main(argv)
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"error: --scheduler={address!r}: no Dask scheduler answered within 1 s "
        "(--scheduler-timeout SECONDS waits longer)\n"
    )
    assert took < 10


def test_local_cluster_workers_get_their_share_of_blas_threads(tmp_path):
    from threadpoolctl import threadpool_info

    from lpfa.threads import set_threads, usable_cores

    if usable_cores() < 2:
        pytest.skip("one core: every share is one thread")
    set_threads(usable_cores())  # not what two workers should get
    sw = tiny(seeds=[0], axes={"channel.rule": ["bp"]})
    try:
        run_sweep(sw, tmp_path / "s.sqlite", executor="dask", workers=2, processes=False,
                  progress=False)  # fmt: skip
        # threads of this process are the workers: the limit is set process-wide
        threads = max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
    finally:
        set_threads(None)
    assert threads == usable_cores() // 2


def _counts_running(config, **kwargs):
    """The real run, plus how many runs of the store say "running" while this one trains."""
    with Store(os.environ["LPFA_TEST_STORE"], readonly=True) as db:
        running = sum(1 for s in db.statuses("tiny").values() if s == "running")
    out = _EXECUTE(config, **kwargs)
    out["seen_running"] = running
    return out


def test_dask_marks_a_run_running_when_a_worker_starts_it_not_when_it_is_submitted(
    tmp_path, monkeypatch
):
    """Eight packs on one single-threaded worker: queued runs are not "running" in the store.

    A run sees itself, the one the scheduler has already handed to the worker next (Dask keeps
    a task ready per thread) and, at most, the one that just ended but is not written yet.
    """
    monkeypatch.setenv("LPFA_TEST_STORE", str(tmp_path / "s.sqlite"))
    monkeypatch.setattr(lpfa.sweep.execute, "execute_pack", _counts_running)
    seen = []
    real = lpfa.sweep.executors._as_started_and_finished

    def spy(client, futures, start, poll=0.05):
        for pack, outcome in real(client, futures, start, poll):
            seen.append(outcome["seen_running"])
            yield pack, outcome

    monkeypatch.setattr(lpfa.sweep.executors, "_as_started_and_finished", spy)
    sw = tiny(seeds=[0], axes={"train.lr": [0.01 * k for k in range(1, 9)]})
    out = run_sweep(sw, tmp_path / "s.sqlite", executor="dask", workers=1, processes=False,
                    progress=False)  # fmt: skip
    assert out.done == 8
    assert len(seen) == 8
    assert max(seen) <= 3  # marked at submit, the first run would see all 8
