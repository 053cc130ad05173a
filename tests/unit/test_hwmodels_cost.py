"""hwmodels cost model: counted operations, feedback synapses, wires, bits and energy."""

import argparse
import json
import math

import numpy as np
import pytest

from hwmodels import cli
from hwmodels.audit import audit, format_table, read_accuracy, variant
from hwmodels.cost import channel_closed_form, eq14_weights, eq15_weights, format_bits
from hwmodels.energy import TechTable
from hwmodels.layout import Floorplan
from lpfa import config as C
from lpfa.network import Network
from tests.conftest import small_config

SIZES = (7, 6, 5, 4, 3)
BASE = small_config(SIZES, "bp", dtype="float32")
HAS_FORMATS = "error_format" in C.ChannelConfig.__dataclass_fields__


def run(*overrides, **kw):
    return audit(variant(BASE, list(overrides)), source="random", **kw)


def test_closed_forms_of_baldi_section_3_1():
    sizes = (784, 100, 100, 100, 100, 10)
    assert eq14_weights(sizes) == 784 * 100 + 3 * 100 * 100 + 100 * 10
    assert eq15_weights(sizes) == 10 * 400
    rbp = C.ChannelConfig(rule=C.Rule.RBP)
    srbp = C.ChannelConfig(rule=C.Rule.SRBP)
    assert channel_closed_form(rbp, sizes)[0] == 3 * 100 * 100 + 100 * 10
    assert channel_closed_form(srbp, sizes)[0] == 4000


@pytest.mark.parametrize("rule", ["bp", "rbp", "srbp", "sbp", "pbp", "cascade"])
def test_counted_channel_macs_equal_the_closed_form(rule):
    a = run(f"channel.rule={rule}")
    assert a.closed_form_ok, (a.channel_macs_per_example, a.closed_form)


def test_srbp_needs_fewer_channel_operations_but_longer_wires_than_rbp():
    rbp, srbp = run("channel.rule=rbp"), run("channel.rule=srbp")
    assert srbp.channel_macs_per_example < rbp.channel_macs_per_example
    assert srbp.channel.wire_lengths_mm.max() > rbp.channel.wire_lengths_mm.max()
    # same receivers, so the same number of wires and messages; SRBP's span L − h pitches
    assert srbp.channel.wires == rbp.channel.wires
    fp = Floorplan(unit_pitch_mm=0.0)
    lengths = sorted(set(run("channel.rule=srbp", floorplan=fp).channel.wire_lengths_mm))
    assert lengths == [1.0, 2.0, 3.0]
    assert set(run("channel.rule=rbp", floorplan=fp).channel.wire_lengths_mm) == {1.0}


@pytest.mark.parametrize("rule", ["rbp", "srbp", "cascade"])
def test_feedback_synapses_are_the_non_zeros_of_every_feedback_matrix(rule):
    over = [f"channel.rule={rule}", "channel.feedback=bernoulli", "channel.feedback_nonzeros=1"]
    cfg = variant(BASE, over)
    net = Network.build(cfg, np)
    expect = sum(int(np.count_nonzero(fb.C)) for fb in net.channel.feedback.values())
    a = audit(cfg, source="random")
    assert a.channel.synapses == expect
    assert a.channel.synapses < run(f"channel.rule={rule}").channel.synapses


def test_bp_counts_the_forward_arrays_it_reads_backwards():
    a = run("channel.rule=bp")
    assert a.channel.synapses == sum(SIZES[h] * SIZES[h + 1] for h in range(1, 4))


def test_dropout_removes_messages():
    full, dropped = run("channel.rule=rbp"), run("channel.rule=rbp", "channel.dropout=0.5")
    B = BASE.train.batch_size
    assert full.channel.messages == B * sum(SIZES[1:-1])
    assert dropped.channel.messages < 0.8 * full.channel.messages


@pytest.mark.skipif(not HAS_FORMATS, reason="channel.error_format is not in this lpfa yet")
@pytest.mark.parametrize(
    ("spec", "bits"),
    [
        (None, 32),
        ("log:bits=5,alpha=0.125", 5),
        ("log:bits=3,alpha=0.125", 3),
        ("log:bits=1,alpha=0.125", 1),
        ("sign:scale=0.01", 1),
        ("minifloat:exp_bits=4,man_bits=3", 8),
    ],
)
def test_bits_scale_with_the_channel_format(spec, bits):
    over = ["channel.rule=srbp"] + ([f"channel.error_format={spec}"] if spec else [])
    a = run(*over)
    ref = run("channel.rule=srbp")
    assert a.channel.message_bits == bits
    assert a.channel.messages == ref.channel.messages  # these formats never round to zero
    assert a.channel.bits == ref.channel.messages * bits


def test_format_bits():
    from lpfa import quant as Q

    assert format_bits(None, "float64") == 64
    assert format_bits(Q.Identity(), "float32") == 32
    assert format_bits(Q.LogFormat(bits=3, alpha=0.125)) == 3
    assert format_bits(Q.LogFormat(bits=3, alpha=0.125), levels=True) == pytest.approx(math.log2(7))
    assert format_bits(Q.Ternary()) == 2
    assert format_bits(Q.Ternary(), levels=True) == pytest.approx(math.log2(3))
    assert format_bits(Q.FP8_E4M3) == 8
    assert format_bits(Q.FixedPoint(bits=6, step=0.1)) == 6


def test_energy_is_linear_in_every_table_entry():
    table = TechTable.load()
    cfg = variant(BASE, ["channel.rule=srbp", "channel.adapt_lr=1.0"])
    base = audit(cfg, source="random", tech=table)
    total = base.energy_per_step["total"]
    coeff = {}
    for phase_terms in base.energy_terms.values():
        for k, c in phase_terms.items():
            coeff[k] = coeff.get(k, 0.0) + c
    assert total == pytest.approx(sum(c * table.entries[k] for k, c in coeff.items()) * 1e-12)
    for key in coeff:
        bumped = table.replace(**{key.replace(".", "__"): table.entries[key] + 1.0})
        got = audit(cfg, source="random", tech=bumped).energy_per_step["total"]
        assert got - total == pytest.approx(coeff[key] * 1e-12, rel=1e-9, abs=1e-24), key
    zero = table.replace(**{k.replace(".", "__"): 0.0 for k in table.entries})
    assert audit(cfg, source="random", tech=zero).energy_per_step["total"] == 0.0


def test_every_table_entry_cites_a_source():
    table = TechTable.load()
    assert table.entries["ops.float32.mult"] == 3.7
    assert table.entries["ops.int8.add"] == 0.03
    assert all(table.sources[k].strip() for k in table.entries)


def test_energy_per_epoch_is_steps_times_step():
    a = run("channel.rule=rbp")
    assert a.steps_per_epoch == 200 // BASE.train.batch_size
    assert a.energy_per_epoch["total"] == pytest.approx(
        a.steps_per_epoch * a.energy_per_step["total"]
    )


def test_event_driven_pricing_never_costs_more():
    dense = run("channel.rule=rbp", "channel.dropout=0.5", macs="executed")
    events = run("channel.rule=rbp", "channel.dropout=0.5", macs="events")
    assert events.energy_per_step["channel"] < dense.energy_per_step["channel"]


def test_table_json_and_cli(tmp_path, capsys):
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(
        'name = "tiny"\n[data]\nname = "linear-teacher"\nn_train = 200\n'
        '[model]\nsizes = [7, 6, 5, 3]\noutput = "linear"\nloss = "squared"\n'
        "[train]\nbatch_size = 20\n"
    )
    results = tmp_path / "results.csv"
    results.write_text("label,epoch,member,test_acc\nbp,1,0,0.5\nbp,2,0,0.9\nsrbp,2,0,0.8\n")
    assert read_accuracy(results) == {"bp": 90.0, "srbp": 80.0}
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    cli.add_commands(sub)
    out = tmp_path / "out"
    args = p.parse_args(
        ["audit", str(cfg_path), "--rules", "bp,rbp,srbp", "--data", "random", "--out", str(out),
         "--results", str(results), "--variant", "q1:channel.rule=srbp;channel.dropout=0.2"]
    )  # fmt: skip
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "bp: non-local" in text
    assert "srbp: local" in text
    data = json.loads((out / "audit.json").read_text())
    assert [d["label"] for d in data] == ["bp", "rbp", "srbp", "q1"]
    assert data[0]["closed_form_ok"] is True
    for name in ("audit_bars.png", "wire_lengths.png", "accuracy_vs_cost.png"):
        assert (out / name).stat().st_size > 0


def test_lpfa_cli_finds_the_audit_command_through_its_entry_point():
    from importlib.metadata import entry_points

    if not [ep for ep in entry_points(group="lpfa.commands") if ep.name == "hwmodels"]:
        pytest.skip("hwmodels entry point not installed (pip install -e .)")
    from lpfa.cli import build_parser

    args = build_parser().parse_args(["audit", "configs/baldi2018_mnist.toml", "--rules", "bp"])
    assert args.func.__module__ == "hwmodels.cli"


def test_format_table_has_a_row_per_configuration():
    text = format_table([run("channel.rule=bp"), run("channel.rule=srbp")])
    lines = text.splitlines()
    assert lines[2].startswith("bp")
    assert lines[3].startswith("srbp")
