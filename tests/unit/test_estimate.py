"""``lpfa train --estimate``: time and memory from a calibration; nothing trained or written."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from lpfa import estimate as est_mod
from lpfa import threads
from lpfa.cli import main
from lpfa.config import ConfigError
from lpfa.training import memory_estimate, train
from tests.conftest import small_config, tiny_toml

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"

CONFIG = tiny_toml(n_train=105)

FIELDS = (
    "steps per epoch",
    "seconds per step",
    "training",
    "evaluation",
    "expected time",
    "expected memory",
)


def field(text: str, name: str) -> str:
    """The rest of the line that starts with ``name`` (after its indent)."""
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith(name)]
    return line.strip()[len(name) :].strip()


def run_estimate(tmp_path, monkeypatch, capsys, config, *extra):
    """``lpfa train CONFIG --estimate --out tmp/out`` from inside an empty folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the default run folder (results/<name>) would land here
    out = tmp_path / "out"
    capsys.readouterr()
    rc = main(["train", str(config), "--estimate", "--out", str(out), *extra])
    printed = capsys.readouterr()
    return rc, printed, out, work


def test_quickstart_estimate_prints_every_field_and_writes_nothing(tmp_path, monkeypatch, capsys):
    rc, printed, out, work = run_estimate(tmp_path, monkeypatch, capsys, QUICKSTART)
    assert rc == 0, printed.err
    for name in FIELDS:
        assert field(printed.out, name)
    assert not out.exists()
    assert list(work.iterdir()) == []  # no results/ folder either
    # MNIST: 60 000 training examples, batch 100
    assert field(printed.out, "steps per epoch").startswith("600 ")
    assert "3 epoch(s) × 600 steps" in field(printed.out, "training")
    assert "4 pass(es) over 10,000 test examples" in field(printed.out, "evaluation")


def test_estimated_memory_is_the_memory_estimate(tmp_path, monkeypatch, capsys):
    from lpfa.config import load

    rc, printed, _, _ = run_estimate(tmp_path, monkeypatch, capsys, QUICKSTART)
    assert rc == 0
    total = memory_estimate(load(QUICKSTART))["total"]
    shown = field(printed.out, "expected memory").split(" MiB")[0]
    assert float(shown.replace(",", "")) == pytest.approx(total / 2**20, abs=0.05)


@pytest.mark.parametrize(("n_train", "batch"), [(105, 10), (100, 10), (37, 5), (40, 40)])
def test_steps_per_epoch_is_n_train_floor_batch(tmp_path, monkeypatch, capsys, n_train, batch):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    sets = ["--set", f"data.n_train={n_train}", "--set", f"train.batch_size={batch}"]
    rc, printed, out, _ = run_estimate(tmp_path, monkeypatch, capsys, config, *sets)
    assert rc == 0, printed.err
    steps = int(field(printed.out, "steps per epoch").split()[0].replace(",", ""))
    assert steps == n_train // batch
    assert not out.exists()


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["train.batch_size=106"], "error: train.batch_size=106: must be <= the 105 training"),
        (["model.sizes=[30, 1000000000, 10]"], "error: model.sizes=(30, 1000000000, 10): the run"),
        (["train.lr=-1"], "error: train.lr=-1"),
    ],
)
def test_bad_input_is_still_one_line_with_estimate(tmp_path, monkeypatch, capsys, sets, expected):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    args = [a for s in sets for a in ("--set", s)]
    rc, printed, out, work = run_estimate(tmp_path, monkeypatch, capsys, config, *args)
    assert rc == 2
    lines = printed.err.strip().splitlines()
    assert len(lines) == 1, printed.err
    assert lines[0].startswith(expected)
    assert printed.out == ""
    assert not out.exists()
    assert list(work.iterdir()) == []


def test_bad_threads_is_refused_before_the_estimate(tmp_path, monkeypatch, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    rc, printed, _, _ = run_estimate(tmp_path, monkeypatch, capsys, config, "--threads", "0")
    assert rc == 2
    assert printed.err.startswith("error: threads='0'")


def test_estimate_leaves_the_run_as_it_would_be(xp):
    """A run trained after an estimate in the same process is the run trained without one."""
    backend = "numpy" if xp is np else "cupy"
    cfg = dataclasses.replace(small_config(rule="rbp", seeds=(0, 1)), backend=backend)
    alone = train(cfg, progress=False).history
    e = est_mod.estimate(cfg, budget=0.05, max_steps=3)
    assert e.steps_per_epoch == 200 // 20
    after = train(cfg, progress=False).history
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    np.testing.assert_equal(strip(after), strip(alone))  # NaN where a diagnostic is undefined


def test_estimate_times_add_up():
    cfg = small_config(epochs=3, angle_every=2)
    e = est_mod.estimate(cfg, budget=0.05, max_steps=4)
    assert 1 <= e.calibration_steps <= 4
    assert e.step_min_s <= e.step_s <= e.step_max_s
    assert e.train_s == pytest.approx(3 * (200 // 20) * e.step_s)
    assert e.evaluations == 4  # before training and after each of the 3 epochs
    assert e.alignments == 2  # epochs 0 and 2
    expected = 4 * 50 * e.forward_s_per_example + 2 * e.alignment_s
    assert e.eval_s == pytest.approx(expected)
    assert e.total_s == pytest.approx(e.train_s + e.eval_s)
    assert e.memory == memory_estimate(cfg)
    no_angles = est_mod.estimate(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, angle_every=None)),
        budget=0.05,
        max_steps=2,
    )
    assert no_angles.alignments == 0
    assert no_angles.alignment_s == 0


def test_calibrate_warms_up_once_and_keeps_within_its_limits():
    calls = []
    times = est_mod.calibrate(lambda: calls.append(1), budget=10.0, max_steps=5)
    assert len(times) == 5
    assert len(calls) == 6  # the warm-up call is not timed
    calls.clear()
    times = est_mod.calibrate(lambda: calls.append(1), budget=0.0, max_steps=5)
    assert len(times) == 1  # at least one timed call, whatever the budget
    assert len(calls) == 2


@pytest.mark.parametrize("warning", ["OpenBLAS kernel Haswell (AVX2) below the CPU", None])
def test_the_kernel_warning_is_printed_where_there_is_one(monkeypatch, warning):
    real = threads.blas_info
    monkeypatch.setattr(threads, "blas_info", lambda: {**real(), "blas_kernel_warning": warning})
    cfg = small_config()
    e = est_mod.estimate(cfg, budget=0.05, max_steps=2)
    text = est_mod.estimate_text(cfg, e)
    assert e.kernel_warning == warning
    warned = [ln for ln in text.splitlines() if ln.startswith("warning:")]
    assert warned == ([f"warning: {warning}"] if warning else [])


def test_estimate_refuses_what_training_refuses():
    cfg = small_config(batch_size=500)  # 200 training examples
    with pytest.raises(ConfigError, match=r"^train\.batch_size=500"):
        est_mod.estimate(cfg)
    with pytest.raises(ConfigError, match=r"^train\.batch_size=500"):
        train(cfg, progress=False)


def test_the_printed_time_is_the_estimates_total():
    cfg = small_config()
    e = est_mod.estimate(cfg, budget=0.05, max_steps=2)
    text = est_mod.estimate_text(cfg, e)
    shown = re.match(r"([\d.]+) (s|min|h)", field(text, "expected time"))
    scale = {"s": 1, "min": 60, "h": 3600}[shown.group(2)]
    assert float(shown.group(1)) * scale == pytest.approx(e.total_s, abs=0.01)


def test_a_busy_machine_is_said_and_an_idle_one_is_not():
    cfg = small_config()
    e = est_mod.estimate(cfg, budget=0.05, max_steps=2)
    busy = est_mod.estimate_text(cfg, dataclasses.replace(e, load=3.6, cores=2))
    idle = est_mod.estimate_text(cfg, dataclasses.replace(e, load=0.2, cores=2))
    unknown = est_mod.estimate_text(cfg, dataclasses.replace(e, load=None))
    assert "3.6 (1-min average) on 2 usable core(s): other processes" in field(busy, "machine load")
    assert field(idle, "machine load") == "0.2 (1-min average) on 2 usable core(s)"
    assert "machine load" not in unknown
