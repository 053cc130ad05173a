"""hwmodels locality audit: verdicts of every rule come from the traced step, and a rule that
secretly reads the forward weights is caught however it declares itself."""

import dataclasses

import numpy as np
import pytest

from hwmodels.audit import audit, variant
from hwmodels.locality import classify, information, trace_step
from hwmodels.trace import Recorder, Source, Tag, Traced, recording
from lpfa import config as C
from lpfa.channel import Channel, FeedbackArray
from lpfa.crossbar import Crossbar
from tests.conftest import small_config

SIZES = (6, 5, 4, 3, 3)  # three hidden layers: chained and skipped channels differ
BASE = small_config(SIZES, "bp")


def run(*overrides, **kw):
    return audit(variant(BASE, list(overrides)), source="random", **kw)


VERDICTS = {
    "bp": "non-local",
    "rbp": "local",
    "srbp": "local",
    "sbp": "non-local",
    "pbp": "non-local",
    "cascade": "local",
    "node_perturbation": "local",
    "top": "local",
}


@pytest.mark.parametrize(("rule", "verdict"), VERDICTS.items())
def test_every_rule_gets_its_verdict_from_the_traced_step(rule, verdict):
    a = run(f"channel.rule={rule}")
    assert a.verdict == verdict, a.offenses
    assert not a.leaks


def test_mixed_rule_is_local():
    assert run("channel.rule=mixed", "channel.skip_layers=[1]").verdict == "local"


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("arbp", ["channel.rule=rbp", "channel.adapt_lr=0.1"]),
        ("asrbp", ["channel.rule=srbp", "channel.adapt_lr=1.0"]),
        (
            "sparse",
            ["channel.rule=srbp", "channel.feedback=bernoulli", "channel.feedback_nonzeros=1"],
        ),
        ("dropout", ["channel.rule=rbp", "channel.dropout=0.5"]),
        ("sign", ["channel.rule=srbp", "channel.signal=sign"]),
        ("no-fprime", ["channel.rule=rbp", "channel.fprime=false"]),
        ("per-weight", ["channel.rule=srbp", "channel.per_weight=true"]),
        ("resampled", ["channel.rule=rbp", "channel.resample=true"]),
        ("momentum", ["channel.rule=rbp", "train.momentum=0.9", "train.weight_decay=0.001"]),
    ],
)
def test_random_feedback_variants_are_local(name, overrides):
    a = run(*overrides)
    assert a.verdict == "local", (name, a.offenses)


def test_bp_names_weight_transport_of_the_layer_above():
    a = run("channel.rule=bp")
    assert (
        "layer 1 update reads forward weights of layer 2 through a transposed read: "
        "weight transport" in a.offenses
    )
    top = next(u for u in a.updates if u.param == "W4")
    assert top.local  # the top layer follows the gradient with local signals (Fact 1)


def test_adaptive_feedback_updates_are_audited_too():
    a = run("channel.rule=srbp", "channel.adapt_lr=1.0")
    names = {u.param for u in a.updates}
    assert {"C4→1", "C4→2", "C4→3"} <= names
    assert all(u.local for u in a.updates)


def test_resampled_congruent_feedback_reads_the_signs_of_the_forward_weights():
    a = run("channel.rule=rbp", "channel.congruent=true", "channel.resample=true")
    assert a.verdict == "non-local"
    assert any("forward weights of layer 2" in o for o in a.offenses)


# --- Baldi et al. (2018) Table 2: which information reaches the deep synapses ------------------


@pytest.mark.parametrize(
    ("rule", "formula", "upper"),
    [
        ("bp", "I_i^h(T−O, w(l>h), f′(l≥h))", True),
        ("rbp", "I_i^h(T−O, r(l+1→l, l≥h), f′(l≥h))", True),
        ("srbp", "I_i^h(T−O, r(L→h), f′(l=h))", False),
        ("sbp", "I_i^h(T−O, w(l>h), f′(l=h))", False),
    ],
)
def test_table2_rows_and_upper_derivatives(rule, formula, upper):
    a = run(f"channel.rule={rule}")
    assert a.information == formula
    assert a.upper_derivatives is upper


def test_no_fprime_uses_no_derivative():
    assert run("channel.rule=srbp", "channel.fprime=false").information.endswith("no f′)")


# --- mutations: FA that secretly reads W must be caught ---------------------------------------


def _attach_forward_weights(monkeypatch):
    """Give every feedback array a handle on the forward array it stands in for."""
    deliver = Channel.deliver

    def with_w(self, net, outs, t, e, r_top):
        for (k, _h), fb in self.feedback.items():
            fb.W = net.layers[k - 1].W
        return deliver(self, net, outs, t, e, r_top)

    monkeypatch.setattr(Channel, "deliver", with_w)


def test_fa_that_multiplies_its_feedback_by_w_is_caught(monkeypatch):
    _attach_forward_weights(monkeypatch)
    # numerically the same as FA (W·0 adds nothing) — only provenance can tell
    monkeypatch.setattr(FeedbackArray, "read", lambda self, s: s @ (self.C * (1.0 + 0.0 * self.W)))
    a = run("channel.rule=rbp")
    assert a.verdict == "non-local"
    assert (
        "layer 2 update reads forward weights of layer 3 through a transposed read: "
        "weight transport" in a.offenses
    )


def test_fa_whose_channel_secretly_transports_is_caught(monkeypatch):
    deliver = Channel.deliver

    def secretly_bp(self, net, outs, t, e, r_top):
        deltas = deliver(self, net, outs, t, e, r_top)
        return [d + 0.0 * net.layers[h].transport(r_top if h == len(deltas) else deltas[h])
                for h, d in enumerate(deltas, 1)]  # fmt: skip

    monkeypatch.setattr(Channel, "deliver", secretly_bp)
    a = run("channel.rule=rbp")
    assert a.verdict == "non-local"
    assert any("weight transport" in o for o in a.offenses)


def test_update_that_reads_a_scalar_of_the_upper_weights_is_caught(monkeypatch):
    update = Crossbar.update
    layers = {}

    def nosy(self, post, pre, scale, **kw):
        above = layers.get(id(self))
        if above is not None:
            post = post * (1.0 + 0.0 * above.W.mean())
        return update(self, post, pre, scale, **kw)

    deliver = Channel.deliver

    def remember(self, net, outs, t, e, r_top):
        for low, high in zip(net.layers[:-1], net.layers[1:], strict=True):
            layers[id(low)] = high
        return deliver(self, net, outs, t, e, r_top)

    monkeypatch.setattr(Crossbar, "update", nosy)
    monkeypatch.setattr(Channel, "deliver", remember)
    a = run("channel.rule=srbp")
    assert "layer 1 update reads forward weights of layer 2 directly" in a.offenses


def test_laundering_through_asarray_is_not_passed_as_local(monkeypatch):
    _attach_forward_weights(monkeypatch)
    monkeypatch.setattr(
        FeedbackArray, "read", lambda self, s: s @ (self.C + 0.0 * np.asarray(self.W))
    )
    a = run("channel.rule=rbp")
    assert a.verdict == "unverified"
    assert a.leaks


# --- the tracer itself ------------------------------------------------------------------------


def _weights(n_out=3, n_in=4):
    W = np.arange(1.0, 1.0 + n_out * n_in).reshape(1, n_out, n_in)
    s = Source("weight", 2)
    axes = (frozenset(), frozenset({"out:W2"}), frozenset({"in:W2"}))
    return Traced(W, {Tag(s)}, axes, s)


def test_forward_read_absorbs_the_weights_and_the_presynaptic_activity():
    W = _weights()
    x = Traced(np.ones((1, 5, 4)), {Tag(Source("activity", 1))})
    with recording(Recorder()):
        S = np.matmul(x, W.transpose(0, 2, 1))
    assert S.tags == {Tag(Source("activity", 2))}


def test_transposed_read_is_weight_transport_even_through_a_reshape():
    W = _weights(4, 4)  # square: only the orientation tells forward from transposed
    e = Traced(np.ones((5, 4)), {Tag(Source("target"))})
    with recording(rec := Recorder()):
        j = e @ W.reshape(4, 4)
    assert Tag(Source("weight", 2), "transport", 1) in j.tags
    assert Tag(Source("target"), "transport", 1) in j.tags
    assert rec.counts[("update", "macs")] == 5 * 4 * 4


def test_in_place_write_into_a_parameter_is_a_sink():
    W = _weights()
    dW = Traced(np.ones((1, 3, 4)), {Tag(Source("activity", 1))})
    with recording(rec := Recorder()):
        W += dW
    assert rec.sinks[Source("weight", 2)] >= {Tag(Source("activity", 1))}
    assert W.tags == {Tag(Source("weight", 2))}  # the array keeps its identity


def test_classify_names_the_offending_source():
    tags = {Tag(Source("activity", 2)), Tag(Source("input")), Tag(Source("weight", 3))}
    u = classify(Source("weight", 1), tags, 3)
    assert not u.local
    assert "layer 1 update reads the activity of layer 2" in u.offenses
    assert "layer 1 update reads forward weights of layer 3 directly" in u.offenses


def test_trace_runs_the_real_step_and_changes_the_weights():
    cfg = dataclasses.replace(BASE, channel=C.ChannelConfig(rule=C.Rule.SRBP))
    tr = trace_step(cfg, source="random")
    assert set(tr.rec.sinks) >= {Source("weight", h) for h in range(1, 5)}
    assert isinstance(tr.net.layers[0].W, Traced)
    infos, _, _ = information(tr.rec.sinks, 4)
    assert [i.feedback for i in infos] == [[(4, 1)], [(4, 2)], [(4, 3)]]


# --- the recorder and the channel's hook ------------------------------------------------------


def test_each_thread_records_into_its_own_recorder():
    """The recorder is a context variable: two traced steps at once do not mix their counts."""
    import threading

    both_inside = threading.Barrier(2)
    recs = {1: Recorder(), 2: Recorder()}

    def work(n: int) -> None:
        x = Traced(np.ones((n, 3)), {Tag(Source("input"))})
        with recording(recs[n]):
            both_inside.wait()
            _ = x + x  # counted by the active recorder
            both_inside.wait()

    threads = [threading.Thread(target=work, args=(n,)) for n in recs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert recs[1].counts == {("update", "adds"): 3}
    assert recs[2].counts == {("update", "adds"): 6}


def test_redrawn_feedback_is_traced_through_the_channels_public_hook():
    cfg = variant(BASE, ["channel.rule=rbp", "channel.resample=true"])
    tr = trace_step(cfg, source="random")
    ch = tr.net.channel
    assert "_redraw" not in vars(ch)  # nothing private is replaced on the channel
    assert ch.on_feedback is not None
    assert all(isinstance(fb.C, Traced) and fb.C.param is not None for fb in ch.feedback.values())
    assert {t.source for tags in tr.rec.sinks.values() for t in tags} >= {
        Source("feedback", h, h + 1) for h in (1, 2, 3)
    }
