"""BLAS threads: set on purpose, overridden by --threads or LPFA_THREADS, recorded with runs."""

import json
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from lpfa import threads as T
from lpfa.cli import main
from lpfa.config import ConfigError
from lpfa.training import versions

CONFIG = """
name = "tiny"
seeds = [0, 1]
[data]
name = "linear-teacher"
n_train = 60
n_test = 20
[model]
sizes = [12, 6, 4]
hidden = "tanh"
output = "linear"
loss = "squared"
[channel]
rule = "rbp"
[train]
epochs = 1
batch_size = 10
lr = 0.01
"""


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    """Every test leaves the process's BLAS threads and LPFA_THREADS as it found them."""
    monkeypatch.delenv(T.ENV_VAR, raising=False)
    with threadpool_limits(limits=None):  # restores the limits found here on exit
        yield


def blas_threads() -> set[int]:
    """The thread limits threadpoolctl reports for the loaded BLAS libraries."""
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


@pytest.mark.parametrize("n", [1, 2])
def test_set_threads_applies_the_limit_to_blas(n):
    T.set_threads(3 - n)  # start from the other count
    assert blas_threads() == {3 - n}
    assert T.set_threads(n) == n
    assert blas_threads() == {n}


def test_set_threads_default_is_the_env_var_else_the_measured_default(monkeypatch):
    T.set_threads(2)
    assert T.set_threads() == T.DEFAULT_THREADS
    assert blas_threads() == {T.DEFAULT_THREADS}
    monkeypatch.setenv(T.ENV_VAR, " 2 ")
    assert T.set_threads() == 2
    assert blas_threads() == {2}
    monkeypatch.setenv(T.ENV_VAR, "")  # set but empty: as if unset
    assert T.set_threads() == T.DEFAULT_THREADS
    monkeypatch.setenv(T.ENV_VAR, "2")
    assert T.set_threads(1) == 1  # an explicit count wins over the environment
    assert blas_threads() == {1}


def test_a_pool_workers_share_is_overridden_by_lpfa_threads(monkeypatch):
    T.set_threads(1)
    assert T.set_threads(default=2) == 2  # what a pool worker asks for: its share
    assert blas_threads() == {2}
    with pytest.raises(ConfigError, match=r"^default=0"):
        T.set_threads(default=0)
    monkeypatch.setenv(T.ENV_VAR, "1")
    assert T.set_threads(default=2) == 1
    assert blas_threads() == {1}


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5", "1e3", "٣", "2 threads"])
def test_bad_lpfa_threads_names_the_variable_and_changes_nothing(monkeypatch, raw):
    T.set_threads(2)
    monkeypatch.setenv(T.ENV_VAR, raw)
    with pytest.raises(ConfigError) as err:
        T.set_threads()
    assert err.value.path == "LPFA_THREADS"
    assert err.value.value == raw
    assert "positive integer" in str(err.value)
    assert "\n" not in str(err.value)
    assert blas_threads() == {2}


@pytest.mark.parametrize("n", [0, -3, 1.0, True, "x"])
def test_bad_thread_count_is_refused(n):
    with pytest.raises(ConfigError, match=r"^threads=.*positive integer"):
        T.set_threads(n)


@pytest.mark.parametrize(
    ("cores", "workers", "expected"),
    [(8, 1, 8), (8, 2, 4), (8, 3, 2), (8, 8, 1), (8, 16, 1), (2, 2, 1), (2, 1, 2), (1, 4, 1)],
)
def test_worker_threads_is_cores_over_workers_at_least_one(monkeypatch, cores, workers, expected):
    monkeypatch.setattr(T, "usable_cores", lambda: cores)
    assert T.worker_threads(workers) == expected


def test_worker_threads_refuses_no_workers():
    with pytest.raises(ConfigError, match=r"^workers=0"):
        T.worker_threads(0)


def test_usable_cores_follows_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(T.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(T.os, "cpu_count", lambda: 64)
    assert T.usable_cores() == 3
    monkeypatch.delattr(T.os, "sched_getaffinity", raising=False)  # macOS, Windows
    assert T.usable_cores() == 64


def test_versions_record_blas_library_core_type_and_threads(monkeypatch):
    numpy_blas = T._numpy_blas(threadpool_info())  # numpy's own, not scipy's bundled copy
    for n in (2, 1):
        T.set_threads(n)
        assert versions()["threads"] == n
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    v = versions()
    assert v["openblas_coretype"] == "Haswell"
    assert v["blas"] == numpy_blas["internal_api"]
    assert v["blas_version"] == numpy_blas["version"]
    assert v["blas_threading"] == numpy_blas.get("threading_layer")
    assert v["blas_architecture"] == numpy_blas.get("architecture")
    assert json.loads(json.dumps(v)) == v  # stored as JSON with every run
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert versions()["openblas_coretype"] is None


@pytest.mark.parametrize("n", [1, 2])
def test_train_threads_flag_is_applied_and_recorded(tmp_path, n):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    T.set_threads(3 - n)  # start from the other count, so the flag has to change it
    out = tmp_path / "out"
    assert main(["train", str(cfg), "--threads", str(n), "--out", str(out), "--quiet"]) == 0
    assert blas_threads() == {n}
    saved = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert saved["versions"]["threads"] == n
    assert summary["meta"]["versions"]["threads"] == n
    assert summary["meta"]["versions"]["blas"] == saved["versions"]["blas"]


def test_train_without_flag_uses_lpfa_threads(tmp_path, monkeypatch):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    T.set_threads(1)
    monkeypatch.setenv(T.ENV_VAR, "2")
    out = tmp_path / "out"
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["versions"]["threads"] == 2


@pytest.mark.parametrize(
    ("args", "env", "start"),
    [
        (["--threads", "0"], {}, "error: threads='0': must be a positive integer"),
        (["--threads", "many"], {}, "error: threads='many': must be a positive integer"),
        ([], {"LPFA_THREADS": "zero"}, "error: LPFA_THREADS='zero': must be a positive integer"),
    ],
)
def test_bad_threads_on_the_command_line_is_one_line_and_writes_nothing(tmp_path, args, env, start):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "lpfa.cli", "train", str(cfg), "--out", str(out), *args],
        capture_output=True,
        text=True,
        env={**_env_without_threads(), **env},
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(start)
    assert not out.exists()


def _env_without_threads() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != T.ENV_VAR}
