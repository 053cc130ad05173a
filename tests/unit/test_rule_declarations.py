"""Each rule's declaration in lpfa.rules says what its channel does: checked for every rule
against what a traced training step observed, never the other way round."""

import dataclasses

import pytest

from hwmodels.audit import audit, variant
from hwmodels.cli import RULE_VARIANTS, expand
from hwmodels.locality import trace_step
from lpfa import config as C
from lpfa.rules import RULES, Delivery, aliases, sources, spec
from tests.conftest import small_config

SIZES = (6, 5, 4, 3, 3)  # three hidden layers: chained, skipped and cascaded channels differ
BASE = small_config(SIZES, "bp")


def example(rule: C.Rule):
    """A valid config of ``rule`` (its first ``--rules`` setting, e.g. mixed with a skip)."""
    return variant(BASE, next(iter(spec(rule).settings().values())))


def test_every_rule_has_one_declaration():
    assert set(RULES) == set(C.Rule)
    assert all(s.rule is r for r, s in RULES.items())


@pytest.mark.parametrize("rule", list(C.Rule))
def test_declared_topology_is_what_the_traced_channel_reads(rule):
    cfg = example(rule)
    trace = trace_step(cfg, source="random")
    L = len(SIZES) - 1
    declared = {(k, h) for h, ks in enumerate(sources(cfg.channel, L), 1) for k in ks}
    read = {(k, h) for _kind, k, h in (r.edge for r in trace.rec.reads)}
    assert read == declared
    kinds = {r.edge[0] for r in trace.rec.reads}
    # random feedback arrays ("C") exactly for the rules that declare them, built and read
    assert ("C" in kinds) is spec(rule).random_feedback
    assert bool(trace.net.channel.feedback) is spec(rule).random_feedback
    # forward arrays read backwards ("W") exactly for the rules that declare weight transport
    assert ("W" in kinds) is spec(rule).weight_transport


@pytest.mark.parametrize("rule", list(C.Rule))
def test_declared_weight_transport_is_the_audits_observed_verdict(rule):
    """The check that the table does not lie: the audit decides from the step, not the table."""
    a = audit(example(rule), source="random")
    assert (a.verdict == "non-local") is spec(rule).weight_transport, a.offenses
    assert not a.leaks


def test_a_lying_declaration_does_not_change_the_verdict(monkeypatch):
    """Declare RBP as reading the forward weights and BP as not: the audit still observes."""
    for rule, transport in ((C.Rule.RBP, True), (C.Rule.BP, False)):
        lie = dataclasses.replace(RULES[rule], weight_transport=transport)
        monkeypatch.setitem(RULES, rule, lie)
    assert audit(example(C.Rule.RBP), source="random").verdict == "local"
    assert audit(example(C.Rule.BP), source="random").verdict == "non-local"


@pytest.mark.parametrize("rule", list(C.Rule))
def test_declared_closed_form_equals_the_counted_channel_macs(rule):
    a = audit(example(rule), source="random")
    assert a.closed_form == spec(rule).closed_form(SIZES, example(rule).channel)
    assert a.closed_form_ok, (a.channel_macs_per_example, a.closed_form)


def test_deliveries_without_senders_are_the_rules_that_send_nothing():
    for rule, s in RULES.items():
        silent = s.delivery in (Delivery.NONE, Delivery.PERTURBATION)
        assert silent is (sources(example(rule).channel, 4) == [[], [], []]), rule


def test_aliases_parse_in_configs_and_on_the_command_line():
    assert aliases() == {
        "backprop": "bp",
        "fa": "rbp",
        "dfa": "srbp",
        "pseudobackprop": "pbp",
        "np": "node_perturbation",
        "top_layer_only": "top",
    }
    for alias, value in aliases().items():
        assert C.Rule.parse(alias, "channel.rule") is C.Rule(value)
        assert expand(alias, [], []) == {alias: RULE_VARIANTS[value]}


def test_rule_variants_of_the_audit_are_the_declared_settings():
    assert {k: v for s in RULES.values() for k, v in s.settings().items()} == RULE_VARIANTS
    assert RULE_VARIANTS["arbp"] == ["channel.rule=rbp", "channel.adapt_lr=0.1"]
    for overrides in RULE_VARIANTS.values():
        variant(BASE, overrides)  # each one a valid config


def test_has_random_feedback_reads_the_declaration():
    assert [r for r in C.Rule if r.has_random_feedback] == [
        r for r, s in RULES.items() if s.random_feedback
    ]
