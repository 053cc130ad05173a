"""The command line: files written, overrides applied, bad input refused in one line."""

import json
import os
import re
import subprocess
import sys

import pytest

from lpfa.backend import cupy_available
from lpfa.cli import main
from lpfa.config import load
from lpfa.report import read_history
from tests.conftest import tiny_toml

CONFIG = tiny_toml(n_train=100)


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


def snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def finished_run(tmp_path):
    """A finished run's folder, made once per test by an in-process ``lpfa train``."""
    out = tmp_path / "earlier"
    assert main(["train", str(write_config(tmp_path)), "--out", str(out), "--quiet"]) == 0
    return out


def one_error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["train.batch_size=101"], "train.batch_size=101: must be <= the 100 training examples"),
        (
            ["model.sizes=[30, 1000000000, 10]"],
            "model.sizes=(30, 1000000000, 10): the run needs about",
        ),
        (["model.output=softmax"], "model.output='softmax': output=softmax is implemented with"),
        (
            ["channel.rule=mixed", "channel.skip_layers=[2]"],
            "channel.skip_layers=(2,): names hidden layer 2",
        ),
        (
            ["channel.feedback=bernoulli", "channel.feedback_nonzeros=inf"],
            "channel.feedback_nonzeros=inf:",
        ),
        (["name='../../x'"], "name='../../x': is used as a folder name"),
        (["name='..'"], "name='..': is used as a folder name"),
    ],
)
def test_bad_input_is_one_line_and_leaves_an_earlier_run_untouched(
    tmp_path, capsys, sets, expected
):
    out = finished_run(tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    argv = ["train", str(write_config(tmp_path)), "--out", str(out), "--quiet"]
    rc = main(argv + [a for s in sets for a in ("--set", s)])
    assert rc == 2
    line = one_error_line(capsys)
    assert line.startswith("error: " + expected)
    assert snapshot(out) == before


def test_memory_refusal_gives_the_figure(tmp_path, capsys):
    argv = ["train", str(write_config(tmp_path)), "--out", str(tmp_path / "o")]
    assert main([*argv, "--set", "model.sizes=[30, 1000000000, 10]"]) == 2
    line = one_error_line(capsys)
    assert re.search(
        r"needs about [\d,.]+ GiB \(\w+ [\d,.]+ GiB\), more than the [\d,.]+ GiB", line
    )
    assert not (tmp_path / "o").exists()


def test_cupy_backend_without_a_gpu_is_one_line(tmp_path, capsys):
    if cupy_available():
        pytest.skip("this machine has a GPU: backend=cupy is valid here")
    out = finished_run(tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    argv = ["train", str(write_config(tmp_path)), "--out", str(out), "--set", "backend=cupy"]
    assert main(argv) == 2
    assert one_error_line(capsys).startswith("error: backend='cupy': CuPy is not installed")
    assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["folder", "missing", "latin-1", "not toml"])
def test_bad_config_files_are_one_line(tmp_path, capsys, kind):
    path = {
        "folder": tmp_path,
        "missing": tmp_path / "nope.toml",
        "latin-1": tmp_path / "latin.toml",
        "not toml": tmp_path / "prose.toml",
    }[kind]
    (tmp_path / "latin.toml").write_bytes(b'name = "caf\xe9"\n')
    (tmp_path / "prose.toml").write_text("this is not toml\n")
    assert main(["train", str(path), "--out", str(tmp_path / "o")]) == 2
    assert one_error_line(capsys).startswith(f"error: config='{path}': ")
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "a-file"
    out.write_text("keep me\n")
    assert main(["train", str(write_config(tmp_path)), "--out", str(out)]) == 2
    assert one_error_line(capsys).startswith(f"error: --out='{out}': must be a folder")
    assert out.read_text() == "keep me\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_that_is_read_only_is_refused(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["train", str(write_config(tmp_path)), "--out", str(ro)]) == 2
    finally:
        ro.chmod(0o755)
    assert one_error_line(capsys).startswith(f"error: --out='{ro}': must be a writable folder")


def test_unwritable_out_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    out = finished_run(tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert main(["train", str(write_config(tmp_path)), "--out", str(out)]) == 2
    assert one_error_line(capsys) == (
        f"error: --out='{out}': must be a writable folder (Permission denied)"
    )
    assert snapshot(out) == before


@pytest.mark.parametrize(
    "sets",
    [
        ["model.init_scale=1e300"],
        ["model.init_scale=1e300", "channel.rule=pbp"],
        ["channel.rule=node_perturbation", "channel.perturbation=1e300"],
    ],
)
def test_overflowing_runs_are_divergence_not_tracebacks(tmp_path, capsys, sets):
    out = tmp_path / "o"
    argv = ["train", str(write_config(tmp_path)), "--out", str(out), "--quiet"]
    assert main(argv + [a for s in sets for a in ("--set", s)]) == 3
    line = one_error_line(capsys)
    assert "diverged in epoch" in line
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert "diverged in epoch" in summary["error"]


def strict_load(text):
    """json.loads that refuses NaN and infinities, as RFC 8259 parsers do."""

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_summary_json_is_strict_with_null_for_nan(tmp_path):
    from lpfa.runfiles import RunWriter, read_status

    cfg = load(write_config(tmp_path))
    writer = RunWriter(tmp_path / "o", cfg)
    assert read_status(tmp_path / "o") == "running"
    nan_summary = {"members": [{"seed": 0, "test_loss": float("nan")}], "x_mean": float("inf")}
    writer.summary(nan_summary, status="diverged")
    data = strict_load((tmp_path / "o" / "summary.json").read_text())
    assert data["members"][0]["test_loss"] is None
    assert data["x_mean"] is None
    assert data["status"] == "diverged"
    assert strict_load((tmp_path / "o" / "config.json").read_text())["seeds"] == [0, 1]


def test_run_writer_says_running_first_and_interrupted_with_the_epoch(tmp_path):
    from lpfa.runfiles import RunWriter, read_status

    out = finished_run(tmp_path)
    assert read_status(out) == "done"
    RunWriter(out, load(write_config(tmp_path)))
    assert read_status(out) == "running"  # never the earlier run's "done"
    assert not (out / "history.csv").exists()
    RunWriter(out, load(write_config(tmp_path))).summary({}, status="interrupted", epoch=4)
    data = json.loads((out / "summary.json").read_text())
    assert (data["status"], data["epoch"], data["message"]) == (
        "interrupted",
        4,
        "interrupted at epoch 4",
    )
    assert read_status(tmp_path / "nowhere") is None
    (out / "summary.json").write_text("{half")
    assert read_status(out) is None
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_write_failure_during_a_run_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    from lpfa.runfiles import RunWriter

    calls = []

    def full_disk(self, rows):
        calls.append(rows[0]["epoch"])
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(self.history_path))
        original(self, rows)

    original = RunWriter.rows
    monkeypatch.setattr(RunWriter, "rows", full_disk)
    out = tmp_path / "o"
    assert main(["train", str(write_config(tmp_path)), "--out", str(out), "--quiet"]) == 1
    line = one_error_line(capsys)
    assert line == (
        f"error: stopped at epoch 1: {out} keeps epochs 0..0: cannot write "
        f"{out / 'history.csv'}: No space left on device"
    )
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"


def test_keyboard_interrupt_is_one_line_exit_130(tmp_path, capsys, monkeypatch):
    from lpfa.runfiles import RunWriter

    def interrupt_after_epoch_1(self, rows):
        original(self, rows)
        if rows[0]["epoch"] == 1:
            raise KeyboardInterrupt

    out = finished_run(tmp_path)
    capsys.readouterr()
    original = RunWriter.rows
    monkeypatch.setattr(RunWriter, "rows", interrupt_after_epoch_1)
    assert main(["train", str(write_config(tmp_path)), "--out", str(out), "--quiet"]) == 130
    assert one_error_line(capsys) == f"interrupted at epoch 2: {out} keeps epochs 0..1"
    data = json.loads((out / "summary.json").read_text())
    assert (data["status"], data["epoch"]) == ("interrupted", 2)
    assert data["message"].startswith("interrupted at epoch 2")
    assert sorted({r["epoch"] for r in read_history(out / "history.csv")}) == [0, 1]


def test_broken_pipe_is_quiet_and_the_run_finishes(tmp_path):
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "lpfa.cli", "train", str(write_config(tmp_path))]
    cmd += ["--out", str(out), "--set", "train.epochs=30"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()  # `| head -1`: read one line, then go away
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err
    assert "BrokenPipe" not in err
    assert json.loads((out / "summary.json").read_text())["status"] == "done"


def test_check_quantizer_on_a_module_with_a_syntax_error_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_q.py").write_text("def q(x:\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check-quantizer", "broken_q:q", "--grid=-1,0,1"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("lpfa check-quantizer: error: spec='broken_q:q': ")
    assert "line 1: SyntaxError" in line


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--rules", "zzz"], "error: --rules='zzz': unknown rule; allowed: bp, rbp"),
        (["--variant", "nolabel"], "error: --variant='nolabel': must look like LABEL:"),
        (["--arith", "int3"], "error: --arith='int3': ops.int3.mult: the table horowitz45 has"),
        (["--tech", "nowhere.toml"], "error: --tech='nowhere.toml': cannot be read"),
        (["--results", "nowhere.csv"], "error: --results='nowhere.csv': cannot be read"),
        (["--layer-pitch", "-1"], "error: --layer-pitch=-1.0: must be a finite length >= 0"),
        (["--set", "model.sizes=[30, 8, 1000000000, 10]"], "error: model.sizes=(30, 8, 10000"),
    ],
)
def test_audit_flag_errors_are_one_line_and_write_nothing(tmp_path, capsys, flags, expected):
    out = tmp_path / "audit"
    assert main(["audit", str(write_config(tmp_path)), "--out", str(out), *flags]) == 2
    assert one_error_line(capsys).startswith(expected)
    assert not out.exists()


@pytest.mark.parametrize("rule", ["top", "node_perturbation"])
def test_audit_of_rules_without_a_channel_works(tmp_path, capsys, rule):
    out = tmp_path / "audit"
    assert main(["audit", str(write_config(tmp_path)), "--out", str(out), "--rules", rule]) == 0
    assert "Traceback" not in capsys.readouterr().err
    audits = strict_load((out / "audit.json").read_text())
    assert [a["label"] for a in audits] == [rule]
    assert (out / "audit_bars.png").stat().st_size > 0
    assert (out / "wire_lengths.png").stat().st_size > 0


def test_version(capsys):
    from lpfa import __version__

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"lpfa {__version__}"


def test_summary_is_mean_std_in_words_and_narrow(tmp_path, capsys):
    assert main(["train", str(write_config(tmp_path)), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    summary = printed[printed.index("final, epoch 2") : printed.index("\nwrote ")]
    assert "mean±std over 2 seeds" in summary
    assert re.search(r"test NSE, Σ.*\s+\d\.\d+ ± \d\.\d+\n", summary)
    assert "rule∠BP" in summary  # the angles per layer, with their meaning
    assert "rule's error signal" in summary
    assert "angle_pbp_1" not in summary  # the per-member columns only with --table
    assert max(map(len, summary.splitlines())) <= 100
    assert "epoch    2  test NSE" in printed


def test_one_seed_is_one_seed_and_table_shows_every_member(tmp_path, capsys):
    argv = ["train", str(write_config(tmp_path)), "--out", str(tmp_path / "o"), "--table"]
    assert main([*argv, "--set", "seeds=[3]", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "1 seeds" not in printed
    assert "final, epoch 2 (1 seed)" in printed
    assert re.search(r"angle_pbp_1 +\d", printed)  # the full table: every column, per seed
    assert "seed 3" in printed


def test_start_says_which_sections_are_the_defaults(tmp_path, capsys):
    path = tmp_path / "no_channel.toml"
    path.write_text(CONFIG.replace('[channel]\nrule = "rbp"\n', "").replace("seeds = [0, 1]\n", ""))
    assert main(["train", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  channel: defaults (not in the config) — rule bp" in lines
    assert "  seeds: defaults (not in the config) — 1 seed (0), backend numpy" in lines
    assert "  model: 30-8-10 tanh → linear, squared loss" in lines


def test_run_writer_next_epoch_is_read_from_the_history_file(tmp_path):
    from lpfa.runfiles import RunWriter

    writer = RunWriter(tmp_path / "o", load(write_config(tmp_path)))
    assert writer.next_epoch() == 0  # nothing written yet
    writer.rows([{"epoch": 0, "member": 0, "x": 1.0}, {"epoch": 0, "member": 1, "x": None}])
    writer.rows([{"epoch": 1, "member": 0, "x": 2.0}, {"epoch": 1, "member": 1, "x": 3.0}])
    assert writer.next_epoch() == 2
    # what the file says, whatever the writer object remembers (a Ctrl-C between the two)
    with (tmp_path / "o" / "history.csv").open("a") as f:
        f.write("2,0,4.0\n")
    assert writer.next_epoch() == 3
