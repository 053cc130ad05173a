"""Sweeps: spec expansion and validation, packing, resume after a kill, failures, the CLI."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lpfa.cli
import lpfa.sweep.execute
import lpfa.sweep.spec
from lpfa.config import ConfigError
from lpfa.sweep import config_hash, dry_run, load_spec, parse_spec, run_sweep
from lpfa.sweep.report import results
from lpfa.sweep.store import Store
from tests.conftest import run_concurrently

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "data.name": "linear-teacher", "data.n_train": 100, "data.n_test": 40,
    "model.sizes": [30, 8, 10], "model.hidden": "tanh", "model.output": "linear",
    "model.loss": "squared", "train.epochs": 2, "train.batch_size": 10, "train.lr": 0.01,
}  # fmt: skip
SPEC = textwrap.dedent(
    """
    name = "tiny"
    seeds = [0, 1]
    [set]
    """
    + "\n".join(f"{k} = {lpfa.sweep.spec._toml(v)}" for k, v in BASE.items())
    + """
    [axes]
    channel.rule = ["bp", "rbp"]
    [quick]
    seeds = [5]
    set = { train.epochs = 1 }
    """
)


def spec(**extra):
    """The tiny spec as a dict, with top-level tables replaced by ``extra``."""
    return {"name": "tiny", "seeds": [0, 1], "set": dict(BASE), **extra}


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return path


# --- expansion --------------------------------------------------------------------------------


def test_axes_multiply_zips_walk_together_and_grids_add_up():
    sw = parse_spec(
        spec(
            axes={"train": {"lr": [0.01, 0.02]}},
            grid=[
                {"label": "{channel.rule}", "axes": {"channel.rule": ["bp", "rbp", "srbp"]}},
                {
                    "label": "adaptive_{channel.rule}",
                    "zip": {"channel.rule": ["rbp", "srbp"], "channel.adapt_lr": [0.1, 1.0]},
                },
            ],
        )
    )
    assert len({r.config_hash for r in sw.runs}) == 2 * (3 + 2)
    assert len(sw.runs) == 2 * 2 * (3 + 2)
    adaptive = {(r.config.channel.rule.value, r.config.channel.adapt_lr) for r in sw.runs
                if r.label.startswith("adaptive")}  # fmt: skip
    assert adaptive == {("rbp", 0.1), ("srbp", 1.0)}
    assert sw.runs[0].axes == {"train.lr": 0.01, "channel.rule": "bp"}
    assert sw.runs[0].label == "bp train.lr=0.01"


def test_quick_applies_its_own_set_and_seeds(spec_file):
    sw = load_spec(spec_file, quick=True)
    assert sw.name == "tiny_quick"
    assert {r.seed for r in sw.runs} == {5}
    assert all(r.config.train.epochs == 1 for r in sw.runs)


def test_the_run_hash_ignores_seeds_and_name_and_nothing_else():
    a = parse_spec(spec(axes={"channel.rule": ["bp"]})).runs
    b = parse_spec(spec(name="other", seeds=[7], axes={"channel.rule": ["bp"]})).runs
    c = parse_spec(spec(axes={"channel.rule": ["bp"], "train.lr": [0.02]})).runs
    assert a[0].config_hash == a[1].config_hash == b[0].config_hash
    assert c[0].config_hash != a[0].config_hash
    assert config_hash(a[0].config) == a[0].config_hash


def test_the_run_hash_survives_a_new_field_with_a_default(monkeypatch):
    """A field added to lpfa later must not change the identity of runs already stored."""
    import lpfa.sweep.spec as spec_mod
    from lpfa.config import RunConfig, to_dict

    cfg = parse_spec(spec(axes={"channel.rule": ["rbp"]})).runs[0].config
    before = config_hash(cfg)
    real = spec_mod.to_dict

    def with_new_field(c):
        d = real(c)
        d["channel"]["a_field_from_the_future"] = 1.0
        return d

    monkeypatch.setattr(spec_mod, "to_dict", with_new_field)
    assert config_hash(cfg) == before
    assert config_hash(RunConfig()) != before  # and differences from the defaults still count
    assert to_dict is real


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"axes": {"channel": {"dropout": [0.1, 0.2, 1.5]}}},
         "axes.channel.dropout[2]=1.5: must be in [0, 1)"),
        ({"grid": [{}, {"axes": {"train.lr": [0.1, -1]}}]},
         "grid[1].axes.train.lr[1]=-1.0: must be finite and > 0"),
        ({"axes": {"model.sizes": [[30, 10], [30, "x", 10]]}},
         "axes.model.sizes[1][1]='x': must be an integer"),
        ({"axes": {"channel.bogus": [1]}}, "axes.channel.bogus[0]=1: unknown field"),
        ({"axes": {"channel.rule": "bp"}}, "axes.channel.rule='bp': must be a non-empty list"),
        ({"axes": {"channel.rule": []}}, "must be a non-empty list"),
        ({"zip": {"channel.rule": ["rbp", "srbp"], "channel.adapt_lr": [0.1]}},
         "zip.channel.adapt_lr=[0.1]: has 1 values; every list of a zip needs as many"),
        ({"axes": {"seeds": [[0], [1]]}}, "seeds are the ensemble axis"),
        ({"axes": {"channel.adapt_lr": [0.1]}},
         "axes.channel.adapt_lr[0]=0.1: rule=bp has no random feedback"),
        ({"set": {**BASE, "channel.adapt_lr": 0.1}, "axes": {"channel.rule": ["rbp", "bp"]}},
         "set.channel.adapt_lr=0.1: rule=bp has no random feedback matrices to apply it to; "
         "use rbp, srbp, mixed or cascade (in the run with channel.rule=bp)"),
        ({"axes": {"channel.rule": ["bp", "backprop"]}}, "repeats the configuration"),
        ({"seeds": [0, 0]}, "seeds=[0, 0]: must not repeat a seed"),
        ({"set": {**BASE, "train.epochs": 0}}, "set.train.epochs=0: must be an integer >= 1"),
        ({"pack": 0}, "pack=0: must be true, false"),
        ({"axis": {}}, "axis={}: unknown spec field"),
        ({"grid": [{"label": "{channel.nope}"}]}, "{channel.nope} is no config field"),
        ({"paper": {"values": {"bp": "high"}}}, "paper.values="),
    ],
)  # fmt: skip
def test_invalid_specs_are_refused_naming_the_spec_field(extra, message):
    with pytest.raises(ConfigError) as info:
        parse_spec(spec(**extra))
    assert message in str(info.value)


def test_two_grids_with_one_label_are_refused_when_the_spec_loads():
    with pytest.raises(ConfigError) as info:
        parse_spec(spec(grid=[
            {"label": "baseline", "set": {"channel.rule": "bp"}},
            {"label": "baseline", "set": {"channel.rule": "rbp"}},
        ]))  # fmt: skip
    assert str(info.value).startswith("grid[1].label='baseline': is also the label of grid[0]")


@pytest.mark.parametrize(
    ("extra", "override", "message"),
    [
        ({"axes": {"channel.rule": ["bp", "rbp"]}}, "channel.rule=srbp",
         "--set channel.rule='srbp': the spec's axes.channel.rule sets this field too"),
        ({"zip": {"channel.rule": ["rbp", "srbp"], "channel.adapt_lr": [0.1, 1.0]}},
         "channel.adapt_lr=0.5",
         "--set channel.adapt_lr='0.5': the spec's zip.channel.adapt_lr sets this field too"),
        ({"grid": [{"set": {"train.lr": 0.02}}]}, "train.lr=0.5",
         "--set train.lr='0.5': the spec's grid[0].set.train.lr sets this field too"),
    ],
)  # fmt: skip
def test_a_set_of_a_field_that_the_grid_sets_is_refused_naming_both(extra, override, message):
    with pytest.raises(ConfigError) as info:
        parse_spec(spec(**extra), overrides=[override])
    assert str(info.value).startswith(message)
    # a --set of the spec's own [set] is what --set is for
    sw = parse_spec(spec(**extra), overrides=["train.epochs=1"])
    assert all(r.config.train.epochs == 1 for r in sw.runs)


@pytest.mark.parametrize(
    ("quick", "match"),
    [
        ({"set": {"train": {"epochs": -1}}}, "quick.set.train.epochs=-1"),
        ({"seeds": "x"}, "quick.seeds"),
        ({"sets": {}}, "quick.sets"),
    ],
    ids=["bad-value", "bad-seeds", "unknown-key"],
)
def test_a_bad_quick_table_is_refused_even_when_not_quick(quick, match):
    """A [quick] table is validated when the spec loads, not first under --quick."""
    with pytest.raises(ConfigError, match=match):
        parse_spec(spec(axes={"channel": {"rule": ["bp"]}}, quick=quick))


def test_quick_without_a_quick_table_is_refused():
    with pytest.raises(ConfigError, match="no \\[quick\\] table"):
        parse_spec(spec(), quick=True)


# --- packing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("pack", "sizes"), [(True, [3, 3]), (False, [1] * 6), (2, [2, 1, 2, 1])])
def test_runs_of_one_config_are_packed_by_seed(pack, sizes):
    sw = parse_spec(spec(seeds=[0, 1, 2], pack=pack, axes={"channel.rule": ["bp", "rbp"]}))
    packs = sw.packs()
    assert [len(p.runs) for p in packs] == sizes
    assert all(len({r.config_hash for r in p.runs}) == 1 for p in packs)
    assert packs[0].config.seeds == tuple(r.seed for r in packs[0].runs)


@pytest.mark.parametrize(
    ("seeds", "rules", "pack", "spread", "sizes"),
    [
        (8, 1, True, 2, [4, 4]),  # one configuration, two workers: a pack each
        (8, 1, True, 3, [3, 3, 2]),
        (3, 1, True, 5, [1, 1, 1]),  # never more packs than seeds
        (3, 2, True, 2, [3, 3]),  # as many configurations as workers: packs stay whole
        (3, 2, True, 4, [2, 1, 2, 1]),
        (3, 2, 2, 8, [2, 1, 2, 1]),  # a pack size the spec gives is kept
        (3, 2, False, 8, [1] * 6),
    ],
)
def test_open_pack_sizes_split_seeds_so_that_every_worker_has_a_pack(
    seeds, rules, pack, spread, sizes
):
    axes = {"channel.rule": ["bp", "rbp"][:rules]}
    sw = parse_spec(spec(seeds=list(range(seeds)), pack=pack, axes=axes))
    packs = sw.packs(spread=spread)
    assert [len(p.runs) for p in packs] == sizes
    assert sorted(r.key for p in packs for r in p.runs) == sorted(r.key for r in sw.runs)
    assert all(len({r.config_hash for r in p.runs}) == 1 for p in packs)
    done = {sw.runs[0].key}  # a resumed sweep splits what is left
    assert sum(len(p.runs) for p in sw.packs(skip=done, spread=spread)) == len(sw.runs) - 1


def test_a_process_pool_gets_one_pack_per_worker_and_the_dry_run_says_so(tmp_path):
    sw = parse_spec(spec(axes={"channel.rule": ["rbp"]}))
    run_sweep(sw, tmp_path / "s.sqlite", executor="process", workers=2, progress=False)
    with Store(tmp_path / "s.sqlite") as db:
        assert sorted(r["packed_with"] for r in db.records("tiny")) == [[0], [1]]
    text = dry_run(sw, spread=2)
    assert "packed into 2 batched runs (the seeds of a configuration split for 2 workers)" in text
    assert "packed into 1 batched runs (all seeds of a configuration together)" in dry_run(sw)


def test_the_dry_run_shows_packing_and_cost():
    sw = parse_spec(spec(seeds=[0, 1, 2], axes={"channel.rule": ["bp", "rbp"]}))
    text = dry_run(sw)
    assert "2 configurations, 6 runs" in text
    assert "packed into 2 batched runs" in text
    assert "0,1,2" in text
    assert "12 member-epochs" in text


def test_packed_members_equal_single_runs(tmp_path):
    axes = {"channel.rule": ["rbp"]}
    packed = parse_spec(spec(axes=axes))
    single = parse_spec(spec(axes=axes, pack=False))
    run_sweep(packed, tmp_path / "a.sqlite", progress=False)
    run_sweep(single, tmp_path / "b.sqlite", progress=False)
    a = results(tmp_path / "a.sqlite", by=["seed"], metrics=["test_nse"])
    b = results(tmp_path / "b.sqlite", by=["seed"], metrics=["test_nse"])
    np.testing.assert_allclose(
        [r["test_nse_mean"] for r in a], [r["test_nse_mean"] for r in b], rtol=1e-5
    )


# --- running, failing, resuming ---------------------------------------------------------------


def test_a_sweep_writes_one_row_per_seed_and_resumes_with_nothing(tmp_path, monkeypatch):
    sw = parse_spec(spec(axes={"channel.rule": ["bp", "rbp"]}))
    out = run_sweep(sw, tmp_path / "s.sqlite", progress=False)
    assert (out.done, out.failed, out.skipped) == (4, 0, 0)
    with Store(tmp_path / "s.sqlite") as db:
        rows = db.records("tiny")
        assert [(r["label"], r["seed"], r["status"]) for r in rows] == [
            ("channel.rule=bp", 0, "done"), ("channel.rule=bp", 1, "done"),
            ("channel.rule=rbp", 0, "done"), ("channel.rule=rbp", 1, "done"),
        ]  # fmt: skip
        assert all(r["packed_with"] == [0, 1] for r in rows)
        assert all(len(db.epochs(r["id"])) == 3 for r in rows)
    monkeypatch.setattr(lpfa.sweep.execute, "execute_pack", lambda *a, **k: pytest.fail("reran"))
    again = run_sweep(sw, tmp_path / "s.sqlite", progress=False)
    assert (again.done, again.skipped) == (0, 4)


def test_a_run_that_raises_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    sw = parse_spec(spec(seeds=[0], axes={"train.batch_size": [10, 1000, 20]}))
    out = run_sweep(sw, tmp_path / "s.sqlite", progress=False)
    assert (out.done, out.failed) == (2, 1)
    with Store(tmp_path / "s.sqlite") as db:
        (bad,) = db.records("tiny", "failed")
    assert bad["axes"] == {"train.batch_size": 1000}
    assert "the 100 training examples" in bad["error"]
    assert "Traceback" in bad["traceback"]


def test_a_diverging_member_does_not_take_its_pack_mates_down(tmp_path):
    sw = parse_spec(spec(seeds=[0, 1], axes={"train.lr": [1e4]}))
    out = run_sweep(sw, tmp_path / "s.sqlite", progress=False)
    assert out.diverged >= 1
    assert out.diverged + out.done == 2


KILLER = """
import os, sys
import lpfa.sweep as S, lpfa.sweep.execute as X
real, calls = X.execute_pack, []
def dying(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        os._exit(9)  # the process dies mid-sweep, as under kill -9
    return real(*args, **kwargs)
X.execute_pack = dying
S.run_sweep(S.load_spec(sys.argv[1]), sys.argv[2], progress=False)
"""


def test_resume_after_a_kill_loses_nothing_and_reruns_nothing_finished(tmp_path, monkeypatch):
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC.replace('["bp", "rbp"]', '["bp", "rbp", "srbp", "top"]'))
    store = tmp_path / "s.sqlite"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    proc = subprocess.run([sys.executable, str(script), str(path), str(store)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)  # fmt: skip
    assert proc.returncode == 9
    with Store(store) as db:
        before = {(r["label"], r["seed"]): r for r in db.records("tiny")}
    done = {k for k, r in before.items() if r["status"] == "done"}
    assert len(done) == 4  # two packs of two seeds finished
    assert {r["status"] for k, r in before.items() if k not in done} == {"running"}

    calls = []
    real = lpfa.sweep.execute.execute_pack
    monkeypatch.setattr(
        lpfa.sweep.execute, "execute_pack", lambda c, **k: calls.append(c) or real(c, **k)
    )
    out = run_sweep(load_spec(path), store, progress=False)
    assert (out.skipped, out.done, out.failed) == (4, 4, 0)
    assert len(calls) == 2
    with Store(store) as db:
        after = {(r["label"], r["seed"]): r for r in db.records("tiny")}
    assert all(r["status"] == "done" for r in after.values())
    for k in done:  # finished runs are untouched: same rows, same times, one attempt
        assert after[k]["finished"] == before[k]["finished"]
        assert after[k]["attempts"] == 1
    assert {after[k]["attempts"] for k in after if k not in done} == {1, 2}


def _dies_once(config, **kwargs):
    marker = Path(os.environ["LPFA_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("died")
        os._exit(3)
    return lpfa.sweep.execute.execute_pack.__wrapped__(config, **kwargs)


def test_process_pool_reruns_the_packs_of_a_worker_that_died(tmp_path, monkeypatch):
    monkeypatch.setenv("LPFA_TEST_MARKER", str(tmp_path / "marker"))
    # _dies_once is pickled by reference: the pool's workers are forks of this process
    real = lpfa.sweep.execute.execute_pack
    monkeypatch.setattr(lpfa.sweep.execute, "execute_pack", _dies_once)
    monkeypatch.setattr(_dies_once, "__wrapped__", real, raising=False)
    sw = parse_spec(spec(axes={"channel.rule": ["bp", "rbp"]}))
    out = run_sweep(sw, tmp_path / "s.sqlite", executor="process", workers=1, progress=False)
    assert (out.done, out.failed) == (4, 0)
    with Store(tmp_path / "s.sqlite") as db:
        assert max(r["attempts"] for r in db.records("tiny")) == 2


def _sweep_into(store, name):
    run_sweep(parse_spec(spec(name=name, axes={"channel.rule": ["bp", "rbp", "srbp"]})), store,
              progress=False)  # fmt: skip


def test_two_sweeps_writing_one_store_at_once(tmp_path):
    store = tmp_path / "s.sqlite"
    run_concurrently(_sweep_into, [(store, f"sweep{k}") for k in range(2)])
    with Store(store) as db:
        assert db.sweeps() == {"sweep0": {"done": 6}, "sweep1": {"done": 6}}


# --- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(lpfa.cli, "BUILTIN_COMMANDS", ("lpfa.sweep.cli",))
    return lpfa.cli.main


def test_cli_sweep_results_and_plot(cli, spec_file, tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    assert cli(["sweep", str(spec_file), "--store", str(store), "--dry-run"]) == 0
    assert "packed into 2 batched runs" in capsys.readouterr().out
    assert not store.exists()
    assert cli(["sweep", str(spec_file), "--store", str(store), "--quiet"]) == 0
    assert "4 done, 0 failed" in capsys.readouterr().out
    assert cli(["results", str(store), "--by", "rule", "--metric", "test_nse"]) == 0
    out = capsys.readouterr().out
    assert "channel.rule" in out
    assert "±" in out
    fig = tmp_path / "fig.png"
    assert cli(["plot", str(store), "--x", "rule", "--y", "test_nse", "--out", str(fig)]) == 0
    assert fig.stat().st_size > 1000


def test_cli_only_runs_a_chunk_of_the_labels_and_the_rest_later(cli, spec_file, tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    labels = [r.label for r in load_spec(spec_file).runs]
    rbp = [label for label in labels if "rbp" in label]
    assert rbp
    assert len(rbp) < len(labels)
    args = ["sweep", str(spec_file), "--store", str(store), "--quiet"]
    assert cli([*args, "--only", "*rbp*"]) == 0
    assert f"{len(rbp)} done, 0 failed" in capsys.readouterr().out
    with Store(store) as db:
        assert sorted(r["label"] for r in db.records("tiny")) == sorted(rbp)
    assert cli(args) == 0  # the whole sweep resumes: only the other labels run
    assert f"{len(labels) - len(rbp)} done, 0 failed, 0 diverged, {len(rbp)} already done" in (
        capsys.readouterr().out
    )
    assert cli([*args, "--only", "*rbp*", "--only", "nothing*"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --only='nothing*': matches no label of tiny (")


def test_cli_refuses_a_bad_spec_in_one_line_before_running_anything(cli, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.replace('["bp", "rbp"]', '["bp", "rbp"]\nchannel.dropout = [0.1, 1.5]'))
    store = tmp_path / "s.sqlite"
    assert cli(["sweep", str(bad), "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: axes.channel.dropout[1]=1.5: must be in [0, 1)"
    assert not store.exists()


def test_the_paper_table_sets_ours_next_to_the_paper_and_fills_its_markers(tmp_path):
    from lpfa.sweep import paper_table
    from lpfa.sweep.cli import write_block

    paper = {"metric": "test_nse", "scale": 100, "unit": "NSE %",
             "values": {"bp": 50.0, "rbp": 60.0}}  # fmt: skip
    sw = parse_spec(spec(grid=[{"label": "{channel.rule}", "axes": {"channel.rule": ["bp"]}}],
                         paper=paper))  # fmt: skip
    with Store(tmp_path / "s.sqlite") as db, pytest.raises(ConfigError, match="not in the store"):
        paper_table(sw, db)
    run_sweep(sw, tmp_path / "s.sqlite", progress=False)
    nse = results(tmp_path / "s.sqlite", metrics=["test_nse"])[0]["test_nse_mean"]
    table = paper_table(sw, tmp_path / "s.sqlite")
    assert f"| bp (epoch 2) | {100 * nse:.2f} ± " in table
    assert f"| 2 | 50.0 | {100 * nse - 50:+.2f} |" in table
    assert "rbp" not in table  # no runs, no row
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- lpfa:table tiny -->\nold\n<!-- lpfa:end -->\noutro\n")
    write_block(doc, "tiny", table)
    text = doc.read_text()
    assert text.startswith("intro\n<!-- lpfa:table tiny -->\n| setting")
    assert text.endswith("<!-- lpfa:end -->\noutro\n")
    assert "old" not in text
    # a document without the markers keeps what it held and gets the block at its end
    other = tmp_path / "other.md"
    other.write_text("# Results\nkept\n")
    write_block(other, "tiny", table)
    assert (
        other.read_text()
        == f"# Results\nkept\n\n<!-- lpfa:table tiny -->\n{table.rstrip()}\n<!-- lpfa:end -->\n"
    )


def test_the_table1_spec_is_valid_and_quick_is_small():
    spec_path = ROOT / "experiments" / "baldi2018_table1.toml"
    full = load_spec(spec_path)
    quick = load_spec(spec_path, quick=True)
    assert len({r.config_hash for r in full.runs}) == 24
    assert {r.label for r in full.runs} == set(full.paper["values"])
    assert len(quick.packs()) == 24  # seeds packed
    member_samples = sum(p.member_epochs * p.config.data.n_train for p in quick.packs())
    assert member_samples <= 3_000_000  # minutes on 2 CPU cores


def test_importing_the_sweep_modules_does_not_import_dask():
    code = (
        "import sys, lpfa, lpfa.sweep, lpfa.sweep.store, lpfa.sweep.cli; "
        "import lpfa.store, lpfa.sweep_cli; "  # the old paths, too
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_commands_do_not_import_the_lpfa_command_line_back():
    code = "import sys, lpfa.sweep.cli, lpfa.experiment; print('lpfa.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from lpfa.config import add_set_option

    assert lpfa.cli.add_set_option is add_set_option  # kept where it was


def test_the_old_command_module_warns_and_gives_the_same_objects():
    import importlib

    import lpfa.sweep.cli

    with pytest.warns(DeprecationWarning, match=r"lpfa\.sweep\.cli"):
        old = importlib.reload(importlib.import_module("lpfa.sweep_cli"))
    assert old.add_commands is lpfa.sweep.cli.add_commands


def test_cli_readers_refuse_a_foreign_database_in_one_line(cli, tmp_path, capsys):
    import sqlite3

    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (name TEXT)")
    con.commit()
    con.close()
    before = path.read_bytes()
    for argv in (["results", str(path)], ["plot", str(path), "--x", "rule", "--y", "test_nse"]):
        assert cli(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: store={str(path)!r}: is not an lpfa results store")
        assert err.count("\n") == 1
    assert path.read_bytes() == before


def test_results_into_a_closed_pipe_is_quiet(spec_file, tmp_path):
    """``lpfa results STORE | head``: the reader goes away; no traceback, no noise."""
    store = tmp_path / "s.sqlite"
    run_sweep(load_spec(spec_file), store, progress=False)
    read, write = os.pipe()
    os.close(read)  # the reader has gone before lpfa writes a line
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lpfa.cli", "results", str(store)], stdout=write,
            stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode in (0, 1)


def _blas_threads(config, **kwargs):
    """Instead of training: one history row holding the worker's BLAS thread limit."""
    from threadpoolctl import threadpool_info

    threads = max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
    members = {
        s: {"status": "done", "error": None, "traceback": None,
            "history": [{"epoch": 0, "seed": s, "blas_threads": threads}]}
        for s in config["seeds"]
    }  # fmt: skip
    return {"members": members, "seconds": 0.0, "versions": {}}


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_pool_workers_get_cores_divided_by_workers_blas_threads(tmp_path, monkeypatch, workers):
    from lpfa.threads import usable_cores

    monkeypatch.setattr(lpfa.sweep.execute, "execute_pack", _blas_threads)
    sw = parse_spec(spec(axes={"channel.rule": ["bp", "rbp"]}, pack=False))
    run_sweep(sw, tmp_path / "s.sqlite", executor="process", workers=workers, progress=False)
    with Store(tmp_path / "s.sqlite") as db:
        threads = {r["finals"]["blas_threads"] for r in db.records("tiny")}
    assert threads == {max(1, usable_cores() // workers)}


def test_a_paper_table_gives_the_numbers_of_the_spec_labels_only():
    from lpfa import papers

    def grid(rules, **paper):
        return parse_spec(
            spec(
                grid=[{"label": "{channel.rule}", "axes": {"channel": {"rule": rules}}}],
                paper={"table": "baldi2018_table1", **paper},
            )
        )

    sw = grid(["bp", "rbp"])
    assert sw.paper["values"] == papers.values("baldi2018_table1", ["bp", "rbp"])
    assert sw.paper["metric"] == "test_acc"
    assert grid(["bp"], values={"bp": 50.0}).paper["values"] == {"bp": 50.0}  # the spec wins
    with pytest.raises(ConfigError, match=r"paper\.table='nobody': one of lpfa\.papers"):
        parse_spec(spec(paper={"table": "nobody"}))


def test_a_pool_worker_ends_on_sigterm_whatever_handler_the_parent_installed():
    """The parent stops its workers with SIGTERM; a worker that inherited the CLI's
    SIGTERM-as-Ctrl-C handler raised KeyboardInterrupt instead, and an idle one printed a
    multiprocessing traceback (seen in the Ctrl-C fault test, about 1 run in 20)."""
    code = (
        "import signal, queue\n"
        "from lpfa.runfiles import terminate_as_interrupt\n"
        "from lpfa.sweep.executors import _pool_init\n"
        "terminate_as_interrupt()\n"
        "assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL\n"
        "_pool_init(queue.Queue(), 1)\n"
        "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,"
        " signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_store_write_finishes_before_a_ctrl_c_or_sigterm_is_raised(signame):
    """A SIGTERM (handled as Ctrl-C) used to be raised inside a store write: a transaction
    left open made the cleanup's next write fail with "cannot start a transaction within a
    transaction" (seen in the SIGTERM fault test on CI)."""
    code = (
        "import os, signal\n"
        "from lpfa.runfiles import terminate_as_interrupt\n"
        "from lpfa.sweep.executors import _interrupts_deferred\n"
        "terminate_as_interrupt()\n"
        "done = []\n"
        "try:\n"
        "    with _interrupts_deferred():\n"
        f"        os.kill(os.getpid(), signal.{signame})\n"
        "        done.append('write')\n"
        "    done.append('after')\n"
        "except KeyboardInterrupt:\n"
        "    done.append('interrupt')\n"
        "print(*done)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["write", "interrupt"]


def _send_half_a_result_and_hang(ready: str) -> None:
    """In a pool worker: write the start of a result message (its length header and a few
    bytes) into the pool's result pipe, as a worker killed while sending a large result does."""
    import multiprocessing
    import struct
    import time

    result_queue = multiprocessing.current_process()._args[1]  # _process_worker's arguments
    os.write(result_queue._writer.fileno(), struct.pack("!i", 1 << 20) + b"half")
    Path(ready).touch()
    time.sleep(60)


@pytest.mark.skipif(sys.platform == "win32", reason="the pool's workers are forks")
def test_stopping_the_pool_does_not_hang_on_half_a_result_from_a_killed_worker(tmp_path):
    """The SIGINT fault test once printed its "interrupted" line and then never exited: the
    pool's manager thread waited in recv() for the rest of a message that a terminated worker
    had begun, and the interpreter joins that thread at exit."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor

    from lpfa.sweep.executors import _stop_pool

    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    ready = tmp_path / "ready"
    pool.submit(_send_half_a_result_and_hang, str(ready))
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists()
    manager = pool._executor_manager_thread
    _stop_pool(pool)
    manager.join(timeout=10)
    assert not manager.is_alive()
