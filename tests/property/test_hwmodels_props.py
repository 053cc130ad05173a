"""Properties of the hwmodels audit over random architectures (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodels.audit import audit, variant
from hwmodels.energy import TechTable
from lpfa.network import Network
from tests.conftest import small_config

sizes_st = st.lists(st.integers(1, 9), min_size=3, max_size=6).map(tuple)
FEW = settings(max_examples=25, deadline=None)


def _audit(sizes, *overrides, **kw):
    cfg = variant(small_config(sizes, "bp", batch_size=4), list(overrides))
    return cfg, audit(cfg, source="random", **kw)


@FEW
@given(sizes=sizes_st, rule=st.sampled_from(["bp", "rbp", "sbp", "pbp"]))
def test_chained_channels_cost_sum_of_neighbouring_layer_products(sizes, rule):
    """BP / RBP: Θ(W) channel MACs per example, W = Σ_{h=1}^{L−1} N_h N_{h+1} (Baldi eq. 14)."""
    _, a = _audit(sizes, f"channel.rule={rule}")
    L = len(sizes) - 1
    assert a.channel_macs_per_example == sum(sizes[h] * sizes[h + 1] for h in range(1, L))
    assert a.closed_form_ok


@FEW
@given(sizes=sizes_st)
def test_skipped_channel_costs_output_size_times_hidden_units(sizes):
    """SRBP: W′ = N_L Σ_{k=1}^{L−1} N_k channel MACs per example (Baldi eq. 15)."""
    _, a = _audit(sizes, "channel.rule=srbp")
    assert a.channel_macs_per_example == sizes[-1] * sum(sizes[1:-1])
    assert a.channel.synapses == sizes[-1] * sum(sizes[1:-1])


@FEW
@given(
    sizes=sizes_st,
    rule=st.sampled_from(["rbp", "srbp", "cascade"]),
    n=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_synapses_are_the_non_zeros_of_the_feedback(sizes, rule, n):
    over = [f"channel.rule={rule}", "channel.feedback=bernoulli", f"channel.feedback_nonzeros={n}"]
    cfg, a = _audit(sizes, *over)
    net = Network.build(cfg, np)
    assert a.channel.synapses == sum(
        int(np.count_nonzero(f.C)) for f in net.channel.feedback.values()
    )
    # a wire per receiving unit that has a non-zero synapse
    wires = sum(int(np.any(f.C[0] != 0, axis=0).sum()) for f in net.channel.feedback.values())
    assert a.channel.wires == wires


@FEW
@given(sizes=sizes_st, rule=st.sampled_from(["bp", "rbp", "srbp", "node_perturbation", "top"]))
def test_verdict_depends_on_the_rule_not_the_architecture(sizes, rule):
    _, a = _audit(sizes, f"channel.rule={rule}")
    assert a.verdict == ("non-local" if rule == "bp" else "local")


@settings(max_examples=15, deadline=None)
@given(sizes=sizes_st, scale=st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False))
def test_energy_scales_with_the_whole_table(sizes, scale):
    table = TechTable.load()
    scaled = table.replace(**{k.replace(".", "__"): v * scale for k, v in table.entries.items()})
    _, a = _audit(sizes, "channel.rule=srbp", tech=table)
    _, b = _audit(sizes, "channel.rule=srbp", tech=scaled)
    for phase, value in a.energy_per_step.items():
        assert b.energy_per_step[phase] == pytest.approx(scale * value, rel=1e-9, abs=1e-30)
