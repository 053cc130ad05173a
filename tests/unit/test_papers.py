"""The papers' numbers: one file per table, one label scheme, read by experiments, sweeps and
the audit, and joined to results on every row."""

import re
import tomllib
from pathlib import Path

import pytest

from hwmodels.cli import PRESETS, _results
from lpfa import config as C
from lpfa import papers
from lpfa.sweep import config_hash, load_spec
from tests.conftest import experiment_script

ROOT = Path(__file__).resolve().parents[2]
TABLE = "baldi2018_table1"
SPEC = ROOT / "experiments" / "baldi2018_table1.toml"
LABEL = re.compile(
    r"(cifar10_)?(nofp_|adaptive_|sparse\d_|error\d_|update\d_|dropout\d\d_)?(bp|rbp|srbp|top)"
)


experiment = experiment_script


def test_baldi_table1_is_read_whole_with_one_label_scheme():
    rows = papers.table(TABLE)
    labels = [r["label"] for r in rows]
    assert len(rows) == 55  # 42 MNIST numbers and 13 CIFAR-10 ones
    assert len(set(labels)) == len(labels)
    assert all(LABEL.fullmatch(k) for k in labels), [k for k in labels if not LABEL.fullmatch(k)]
    assert papers.value(TABLE, "bp") == 97.9
    assert papers.value(TABLE, "dropout10_rbp") == 96.5
    assert papers.value(TABLE, "update1_rbp") == 9.6
    first = rows[0]
    assert (first["row"], first["column"], first["std"]) == ("MNIST Baseline", "BP", 0.1)
    assert next(r for r in rows if r["label"] == "error5_bp")["std"] is None
    assert papers.info(TABLE)["metric"] == "test_acc"
    assert papers.info(TABLE)["scale"] == "100"
    assert TABLE in papers.names()


def test_unknown_tables_and_labels_are_named_in_the_error():
    with pytest.raises(KeyError, match="no such paper table; allowed: baldi2018_table1"):
        papers.table("nobody2099_table9")
    with pytest.raises(KeyError, match=re.escape("dropout0.1_bp")):
        papers.values(TABLE, ["bp", "dropout0.1_bp"])
    with pytest.raises(KeyError, match="no lpfa setting"):
        papers.variants(TABLE, ["cifar10_bp"])


def test_results_join_the_paper_on_every_row():
    ours = [{"label": "dropout10_bp", "test_acc_mean": 0.97}, {"label": "mine", "x": 1}]
    joined = papers.join(ours, TABLE)
    assert joined[0] == {**ours[0], "paper": 97.7, "paper_std": None}
    assert joined[1] == {**ours[1], "paper": None, "paper_std": None}
    assert papers.join([{"rule": "rbp"}], TABLE, key="rule")[0]["paper_std"] == 0.1


def test_every_lpfa_setting_of_the_table_is_a_valid_config():
    base = C.load(ROOT / papers.info(TABLE)["base"])
    cfgs = papers.configs(TABLE, base)
    assert len(cfgs) == 42  # every MNIST row
    assert cfgs["dropout20_srbp"].channel.dropout == 0.2
    assert cfgs["dropout20_srbp"].channel.rule is C.Rule.SRBP
    assert cfgs["update3_rbp"].train.lr_decay == 0.0
    assert all(c.name == k for k, c in cfgs.items())


def test_the_sweep_spec_runs_the_experiments_rows_under_the_papers_labels():
    sweep = load_spec(SPEC)
    by_label = {r.label: r.config for r in sweep.runs}
    quantized = ("error", "update")  # rows of experiments/baldi2018_fig7_quantized.py
    rows = [k for k in papers.variants(TABLE) if not k.startswith(quantized)]
    assert sorted(by_label) == sorted(rows)
    assert sweep.paper["values"] == papers.values(TABLE, by_label)
    backend = next(iter(by_label.values())).backend
    cfgs = {}
    for name in ("baldi2018_table1_baseline", "baldi2018_table1_channel"):
        cfgs.update(experiment(name).configs(False, None, backend))
    assert sorted(cfgs) == sorted(by_label)
    for label, cfg in by_label.items():
        assert config_hash(cfgs[label]) == config_hash(cfg), label


def test_experiments_compare_with_the_papers_numbers():
    for name in ("baldi2018_table1_baseline", "baldi2018_table1_channel"):
        module = experiment(name)
        assert papers.values(TABLE, module.PAPER) == module.PAPER
        assert set(module.PAPER) == set(module.configs(True, 1, "numpy"))


def test_the_audit_reads_the_paper_table_and_its_presets_use_its_labels():
    assert _results(["paper:baldi2018"]) == papers.values(TABLE)
    assert _results([f"paper:{TABLE}"]) == papers.values(TABLE)
    assert PRESETS["baldi2018"] == papers.variants(TABLE, PRESETS["baldi2018"])
    with pytest.raises(C.ConfigError, match="allowed papers: baldi2018_table1"):
        _results(["paper:nobody"])


def test_paper_tables_are_package_data():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "papers/*.csv" in meta["tool"]["setuptools"]["package-data"]["lpfa"]


def test_the_quick_spec_keeps_the_papers_labels():
    quick = load_spec(SPEC, quick=True)
    assert {r.label for r in quick.runs} == {r.label for r in load_spec(SPEC).runs}
