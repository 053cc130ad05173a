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


AVX512 = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw")
AVX2 = ("sse4_2", "avx", "avx2", "fma")


@pytest.mark.parametrize(
    ("kernel", "flags", "below"),
    [
        ("Haswell", AVX512, True),  # this machine's case: AVX2 kernel on an AVX-512 CPU
        ("haswell", AVX512, True),  # OPENBLAS_CORETYPE is read in any case
        ("Zen", AVX512, True),
        ("Sandybridge", AVX2, True),
        ("Prescott", ("sse4_2", "avx"), True),
        ("SkylakeX", AVX512, False),
        ("Cooperlake", AVX512, False),
        ("Haswell", AVX2, False),
        ("Zen", AVX2, False),
        ("SkylakeX", AVX2, False),  # above the CPU: OpenBLAS falls back itself, nothing to say
        ("Nehalem", ("sse4_2",), False),
        ("NeoverseN1", AVX512, False),  # not an x86 kernel: not judged
        (None, AVX512, False),
        ("Haswell", None, False),  # flags unknown (not Linux): not judged
    ],
)
def test_kernel_warning_when_the_kernel_is_below_the_cpu(kernel, flags, below):
    line = T.kernel_warning(kernel, flags)
    assert (line is not None) == below
    if below:
        assert kernel in line
        assert "\n" not in line


def test_kernel_warning_names_both_levels_and_the_fix_when_forced():
    line = T.kernel_warning("Haswell", AVX512, forced=True)
    assert "OPENBLAS_CORETYPE=Haswell" in line
    assert "AVX2" in line
    assert "AVX-512" in line
    assert "unset OPENBLAS_CORETYPE" in line
    assert "OPENBLAS_CORETYPE" not in T.kernel_warning("Haswell", AVX512)


def test_every_kernel_level_is_a_level_some_flags_reach():
    levels = set(T.KERNEL_LEVEL.values())
    assert levels == {0, 1, 2, 3}
    assert [T.cpu_level(f) for f in ((), ("avx",), AVX2, AVX512)] == [0, 1, 2, 3]
    for name, level in T.KERNEL_LEVEL.items():
        assert name == name.lower()
        assert (T.kernel_warning(name, AVX512) is None) == (level == 3)


def test_forced_kernel_warning_prefers_the_reported_kernel_over_the_variable():
    env = {"OPENBLAS_CORETYPE": "Haswell"}
    assert "OPENBLAS_CORETYPE=Haswell" in T.forced_kernel_warning("Haswell", env, AVX512)
    # the variable named a kernel the library did not take: what runs decides
    assert T.forced_kernel_warning("SkylakeX", env, AVX512) is None
    # not forced: the library's own choice is below the CPU
    line = T.forced_kernel_warning("Haswell", {}, AVX512)
    assert line is not None
    assert "OPENBLAS_CORETYPE" not in line
    # no kernel reported (another build): the variable is judged
    assert "OPENBLAS_CORETYPE=Sandybridge" in T.forced_kernel_warning(
        None, {"OPENBLAS_CORETYPE": "Sandybridge"}, AVX2
    )
    assert T.forced_kernel_warning(None, {}, AVX512) is None


def test_cpu_flags_reads_the_first_flags_line_and_none_without_the_file(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse4_2 avx avx2\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert T.cpu_flags(str(info)) == frozenset({"fpu", "sse4_2", "avx", "avx2"})
    (tmp_path / "noflags").write_text("processor\t: 0\n")
    assert T.cpu_flags(str(tmp_path / "noflags")) is None
    assert T.cpu_flags(str(tmp_path / "missing")) is None


def test_blas_info_records_the_kernel_warning(monkeypatch):
    info = T.blas_info()
    assert "blas_kernel_warning" in info
    if info["blas"] == "openblas":
        expected = T.forced_kernel_warning(info["blas_architecture"])
        assert info["blas_kernel_warning"] == expected
    else:
        assert info["blas_kernel_warning"] is None


_HEAP_PROBE = """
import ctypes, json, sys
import numpy as np
from lpfa import threads

threads.set_threads(1, hold_memory=sys.argv[1] == "1")
page = 4096

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page

before = rss()
a = np.ones(20 << 20, dtype=np.uint8)  # 20 MiB, every page touched
del a
print(json.dumps({"kept": rss() - before, "heap": threads.heap_settings()}))
"""


def _heap_probe(hold: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _HEAP_PROBE, str(int(hold))], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt, /proc")
def test_set_threads_holds_freed_memory_in_the_process():
    held, default = _heap_probe(True), _heap_probe(False)
    if held["heap"] is None:
        pytest.skip("the C library has no mallopt (not glibc)")
    assert held["heap"] == T.HEAP
    assert default["heap"] is None
    # glibc maps 20 MiB on its own and unmaps it when freed; held, it stays in the heap
    assert held["kept"] >= 16 << 20
    assert default["kept"] < 4 << 20


def test_versions_record_the_heap_settings():
    T.set_threads(1)
    assert versions()["heap"] == T.heap_settings()
    assert T.hold_freed_memory() == T.heap_settings()
