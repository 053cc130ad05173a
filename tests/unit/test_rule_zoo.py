"""The credit-assignment zoo: sign symmetry, Kolen-Pollack, weight mirror, DRTP, sign-DFA, binary
and low-rank feedback, each a setting of the learning channel. Per rule: its defining identity,
the ensemble axis, and the audit's verdict (with a rule that secretly reads what it should not)."""

import itertools

import numpy as np
import pytest

from hwmodels.audit import audit, variant
from hwmodels.cli import RULE_VARIANTS
from lpfa import config as C
from lpfa.backend import to_numpy
from lpfa.channel import Channel, FactoredFeedback, FeedbackArray
from lpfa.network import Network
from lpfa.rules import edge_macs
from lpfa.wiring import draw_feedback, draw_feedback_factors
from tests.conftest import batch, small_config

SIZES = (6, 5, 4, 3, 3)  # three hidden layers: chained and skipped channels differ
BASE = small_config(SIZES, "bp")


def net_of(name_or_overrides, xp=np, *, seeds=(0, 1), sizes=SIZES):
    overrides = (
        RULE_VARIANTS[name_or_overrides]
        if isinstance(name_or_overrides, str)
        else list(name_or_overrides)
    )
    cfg = variant(small_config(sizes, "bp", seeds=seeds), overrides)
    return Network.build(cfg, xp), cfg


def host(a):
    return to_numpy(a).copy()


def signs(W):
    return np.where(host(W) >= 0, 1.0, -1.0)


# --- sign symmetry: the feedback follows W's current signs -------------------------------------


def test_usf_feedback_is_the_scaled_sign_of_w_at_every_step(xp):
    net, cfg = net_of("usf", xp)
    s = cfg.channel.feedback_scale
    x, t = batch(xp, SIZES)
    flipped = 0
    for _ in range(6):
        before = [signs(layer.W) for layer in net.layers]
        net.deltas(net.forward(x), t)  # the channel reads W's signs when it delivers
        for (k, _h), fb in net.channel.feedback.items():
            np.testing.assert_array_equal(host(fb.C), s * signs(net.layers[k - 1].W))
        net.step(x, t, 2.0)  # a large step, so that some signs flip
        flipped += sum(
            int((b != signs(L.W)).sum()) for b, L in zip(before, net.layers, strict=True)
        )
    assert flipped > 0  # the identity was checked while W's signs changed


def test_frsf_keeps_its_random_magnitudes_and_tracks_the_signs(xp):
    net, _ = net_of("frsf", xp)
    mags = {e: np.abs(host(fb.C)) for e, fb in net.channel.feedback.items()}
    assert all(m.std() > 0 for m in mags.values())  # random magnitudes, not uniform
    x, t = batch(xp, SIZES)
    for _ in range(4):
        net.step(x, t, 2.0)
        net.deltas(net.forward(x), t)
        for (k, h), fb in net.channel.feedback.items():
            np.testing.assert_array_equal(np.abs(host(fb.C)), mags[(k, h)])
            np.testing.assert_array_equal(np.sign(host(fb.C)), signs(net.layers[k - 1].W))


def test_brsf_redraws_magnitudes_with_the_current_signs_every_minibatch(xp):
    net, _ = net_of("brsf", xp)
    seen = []

    def hook(C, k, h):  # every redrawn array, with the signs of W^k when it was drawn
        seen.append((k, host(C), signs(net.layers[k - 1].W)))
        return C

    net.channel.on_feedback = hook
    x, t = batch(xp, SIZES)
    for _ in range(3):
        net.step(x, t, 2.0)
    assert len(seen) == 3 * 3  # three arrays a step
    for _k, C_, s in seen:
        np.testing.assert_array_equal(np.sign(C_), s)
    assert not np.allclose(np.abs(seen[0][1]), np.abs(seen[3][1]))  # fresh magnitudes


def test_sign_symmetry_settings_are_refused_where_they_cannot_apply():
    with pytest.raises(C.ConfigError, match=r"track_signs=True: .* only rule=rbp"):
        C.ChannelConfig(rule=C.Rule.SRBP, track_signs=True)
    with pytest.raises(C.ConfigError, match=r"track_signs=True: .* resample=True"):
        C.ChannelConfig(rule=C.Rule.RBP, track_signs=True, resample=True)


# --- Kolen-Pollack: C gets W's update and decay, so C − W decays to 0 ---------------------------


KP_EQUAL = [
    "channel.adapt_lr=1.0",
    "channel.feedback_decay=0.01",
    "channel.feedback_from_init=true",
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kp_with_equal_start_and_decay_keeps_c_equal_to_w_exactly(xp, dtype):
    net, _ = net_of(["channel.rule=rbp", *KP_EQUAL, f"model.dtype={dtype}"], xp)
    x, t = batch(xp, SIZES, dtype=dtype)
    for _ in range(5):
        net.step(x, t, 0.5, weight_decay=0.01)
        for (k, _h), fb in net.channel.feedback.items():
            np.testing.assert_array_equal(host(fb.C), host(net.layers[k - 1].W))
    # unequal decay breaks the identity (the test can fail)
    net.step(x, t, 0.5, weight_decay=0.02)
    assert not np.array_equal(host(net.channel.feedback[(2, 1)].C), host(net.layers[1].W))


def test_kp_difference_between_c_and_w_shrinks_by_one_minus_eta_lambda_per_step(xp):
    lam, lr, steps = 0.05, 0.4, 6
    net, _ = net_of(["channel.rule=rbp", "channel.adapt_lr=1.0", f"channel.feedback_decay={lam}"])
    start = {e: host(fb.C) - host(net.layers[e[0] - 1].W) for e, fb in net.channel.feedback.items()}
    x, t = batch(np, SIZES)
    for _ in range(steps):
        net.step(x, t, lr, weight_decay=lam)
    for (k, h), fb in net.channel.feedback.items():
        np.testing.assert_allclose(
            host(fb.C) - host(net.layers[k - 1].W),
            start[(k, h)] * (1 - lr * lam) ** steps,
            rtol=1e-9,
            atol=1e-12,
        )


def test_direct_kp_update_is_the_output_error_times_the_activity_minus_decay():
    lr = 0.3
    net, cfg = net_of("dkp")
    lam = cfg.channel.feedback_decay
    assert lam > 0
    assert cfg.channel.adapt_lr == 1.0
    x, t = batch(np, SIZES)
    before = {e: host(fb.C) for e, fb in net.channel.feedback.items()}
    outs = [host(o) for o in net.forward(x)]
    e = host(t) - outs[-1]
    net.step(x, t, lr)
    n = x.shape[0]
    for (k, h), fb in net.channel.feedback.items():
        assert k == len(SIZES) - 1  # the direct topology: C^{L→h}
        dC = (lr / n) * e.transpose(0, 2, 1) @ outs[h] - lr * lam * before[(k, h)]
        np.testing.assert_allclose(host(fb.C), before[(k, h)] + dC, rtol=1e-12, atol=1e-14)


# --- weight mirror: C learns W Σ_ξ from noise, in its own phase -------------------------------


def test_weight_mirror_expected_update_is_w_times_the_noise_covariance():
    sigma, a, lr, n = 0.7, 0.5, 0.2, 40_000
    net, _ = net_of(
        ["channel.rule=rbp", "channel.mirror_ratio=1", f"channel.adapt_lr={a}",
         f"channel.mirror_noise={sigma}"],
        seeds=(3,),
    )  # fmt: skip
    rng = np.random.default_rng(1)
    for layer in net.layers:  # a bias must average out of E[y ξᵀ]
        layer.b[...] = rng.normal(0, 0.5, layer.b.shape)
    before = {e: host(fb.C) for e, fb in net.channel.feedback.items()}
    assert net.channel.mirror(net, lr / n, n) == 1
    for (k, h), fb in net.channel.feedback.items():
        W, b = host(net.layers[k - 1].W)[0], host(net.layers[k - 1].b)[0]
        mean = (host(fb.C)[0] - before[(k, h)][0]) / (a * lr)  # Σ_b y_b ξ_bᵀ / n
        # Var(y_i ξ_j) = σ⁴(‖W_i‖² + W_ij²) + b_i² σ² for Gaussian ξ
        var = sigma**4 * ((W**2).sum(1, keepdims=True) + W**2) + (b**2)[:, None] * sigma**2
        z = (mean - sigma**2 * W) / np.sqrt(var / n)
        assert np.abs(z).max() < 5.0, np.abs(z).max()
        assert np.abs(mean - sigma**2 * W).max() > 0  # noise, not a copy of W


@pytest.mark.parametrize(
    ("ratio", "phases"),
    [(1.0, [1, 1, 1, 1]), (0.25, [0, 0, 0, 1]), (2.0, [2, 2, 2, 2]), (0.5, [0, 1, 0, 1])],
)
def test_mirror_phases_follow_the_ratio_and_the_normal_step_leaves_c_alone(ratio, phases):
    net, _ = net_of(["channel.rule=rbp", f"channel.mirror_ratio={ratio}", "channel.adapt_lr=0.1"])
    x, t = batch(np, SIZES)
    ran = []
    mirror = net.channel.mirror
    net.channel.mirror = lambda *a: ran.append(mirror(*a)) or ran[-1]
    for _ in range(4):
        before = host(net.channel.feedback[(2, 1)].C)
        net.step(x, t, 0.3)
        moved = not np.array_equal(before, host(net.channel.feedback[(2, 1)].C))
        assert moved is (ran[-1] > 0)  # C changes in mirror phases only
    assert ran == phases


def test_weight_mirror_needs_a_rate_and_a_chain():
    with pytest.raises(C.ConfigError, match=r"mirror_ratio=1.0: the mirror phase .* adapt_lr"):
        C.ChannelConfig(rule=C.Rule.RBP, mirror_ratio=1.0)
    with pytest.raises(C.ConfigError, match=r"mirror_ratio=1.0: .* only rule=rbp"):
        C.ChannelConfig(rule=C.Rule.SRBP, mirror_ratio=1.0, adapt_lr=0.1)


# --- DRTP: the target, not the error ------------------------------------------------------------


def test_drtp_hidden_signal_does_not_depend_on_the_output(xp):
    net, _ = net_of("drtp", xp)
    x, t = batch(xp, SIZES)
    outs = net.forward(x)
    first = [host(d) for d in net.deltas(outs, t)]
    outs[-1] = outs[-1] * 0.5 + 0.1  # another output, the same target
    second = [host(d) for d in net.deltas(outs, t)]
    for a, b in zip(first[:-1], second[:-1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[-1], second[-1])  # the top layer still learns from its error
    # and the hidden signal is the target's projection, by hand: (T C^{L→h}) ∘ f′(S^h)
    for h, d in enumerate(first[:-1], 1):
        Ch = host(net.channel.feedback[(4, h)].C)
        o = host(outs[h])
        np.testing.assert_allclose(d, (host(t) @ Ch) * (1 - o * o), rtol=1e-12)
    _, t2 = batch(xp, SIZES, seed=5)
    third = [host(d) for d in net.deltas(outs, t2)]
    assert not np.allclose(third[0], first[0])  # another target moves it


# --- sign-DFA, binary DFA ----------------------------------------------------------------------


def test_sign_dfa_sends_the_sign_of_the_output_error(xp):
    net, _ = net_of("sdfa", xp)
    x, t = batch(xp, SIZES)
    outs = net.forward(x)
    deltas = [host(d) for d in net.deltas(outs, t)]
    e = host(t) - host(outs[-1])
    for h, d in enumerate(deltas[:-1], 1):
        o = host(outs[h])
        Ch = host(net.channel.feedback[(4, h)].C)
        np.testing.assert_allclose(d, (np.sign(e) @ Ch) * (1 - o * o), rtol=1e-12)
    np.testing.assert_allclose(deltas[-1], e, rtol=1e-12)  # the top layer: the full error


def test_binary_dfa_feedback_is_plus_or_minus_its_scale():
    net, cfg = net_of("bdfa")
    for fb in net.channel.feedback.values():
        assert set(np.unique(host(fb.C))) == {
            -cfg.channel.feedback_scale,
            cfg.channel.feedback_scale,
        }


# --- low-rank feedback, stored as its factors ---------------------------------------------------


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_low_rank_feedback_is_stored_as_two_factors_and_read_as_two_products(xp, rank):
    sizes = (8, 7, 6, 5)
    net, cfg = net_of(["channel.rule=srbp", f"channel.feedback_rank={rank}"], xp, sizes=sizes)
    for (k, h), fb in net.channel.feedback.items():
        assert isinstance(fb, FactoredFeedback)
        assert fb.Q.shape == (2, sizes[k], rank)
        assert fb.P.shape == (2, rank, sizes[h])
        assert list(np.linalg.matrix_rank(host(fb.C))) == [rank, rank]
        # the same matrix as the old, dense draw of the same config
        dense = draw_feedback(
            cfg.channel, (sizes[k], sizes[h]), np.random.default_rng(9), "float64"
        )
        q, p = draw_feedback_factors(cfg.channel, (sizes[k], sizes[h]), np.random.default_rng(9),
                                     "float64")  # fmt: skip
        np.testing.assert_allclose(q @ p, dense, rtol=1e-10, atol=1e-12)
        s = xp.asarray(np.random.default_rng(2).standard_normal((2, 3, sizes[k])))
        np.testing.assert_allclose(host(fb.read(s)), host(s) @ host(fb.C), rtol=1e-10)


def test_full_rank_is_stored_dense_and_adaptive_low_rank_is_refused():
    net, _ = net_of(["channel.rule=srbp", "channel.feedback_rank=3"])  # min(3, N_h) = 3
    assert all(type(fb) is FeedbackArray for fb in net.channel.feedback.values())
    with pytest.raises(C.ConfigError, match=r"adapt_lr=0.1: low-rank feedback is stored"):
        C.ChannelConfig(rule=C.Rule.RBP, feedback_rank=2, adapt_lr=0.1)


def test_low_rank_audit_counts_the_factors_so_synapses_and_long_wires_fall_with_r():
    sizes = (12, 10, 10, 10, 4)
    base = small_config(sizes, "bp")
    got = {}
    for r in (1, 2, 4, None):
        extra = [] if r is None else [f"channel.feedback_rank={r}"]
        a = audit(variant(base, ["channel.rule=srbp", *extra]), source="random")
        assert a.verdict == "local"
        assert a.closed_form_ok, (
            a.channel_macs_per_example,
            a.closed_form,
        )
        cfg = variant(base, ["channel.rule=srbp", *extra]).channel
        assert a.channel.synapses == sum(edge_macs(4, n, cfg) for n in sizes[1:-1])
        relays = sum(v for k, v in a.channel.wires_by_edge.items() if "relays" in k)
        got[r] = (a.channel.synapses, relays)
    assert got[None] == (4 * 30, 0)
    assert [got[r] for r in (1, 2)] == [(1 * 14 * 3, 3), (2 * 14 * 3, 6)]
    assert got[4] == got[None]  # rank ≥ min(4, 10): full rank, stored dense


# --- the ensemble axis: members equal single runs ------------------------------------------------

DETERMINISTIC = ["usf", "frsf", "kp", "dkp", "sdfa", "bdfa", "lowrank_rbp", "lowrank_srbp", "drtp"]


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_members_of_an_ensemble_equal_single_runs(xp, name):
    seeds = (11, 12, 13)
    ens, _ = net_of(name, xp, seeds=seeds)
    singles = [net_of(name, xp, seeds=(s,))[0] for s in seeds]
    x, t = batch(xp, SIZES)
    for _ in range(3):
        for net in (ens, *singles):
            net.step(x, t, 0.3, weight_decay=1e-3)
    for m, net in enumerate(singles):
        for a, b in zip(ens.layers, net.layers, strict=True):
            np.testing.assert_allclose(host(a.W)[m], host(b.W)[0], rtol=1e-12, atol=1e-13)
        for e, fb in ens.channel.feedback.items():
            np.testing.assert_allclose(
                host(fb.C)[m], host(net.channel.feedback[e].C)[0], rtol=1e-12, atol=1e-13
            )


def test_weight_mirror_members_learn_from_their_own_noise():
    """The mirror's noise is the ensemble's runtime stream: members differ, each converges."""
    net, _ = net_of(["channel.rule=rbp", "channel.mirror_ratio=1", "channel.adapt_lr=0.5",
                     "channel.feedback_decay=0.5"], seeds=(0, 1))  # fmt: skip
    x, t = batch(np, SIZES)
    angle0 = _angles(net)
    for _ in range(60):
        net.step(x, t, 0.2)
    angle = _angles(net)
    assert (angle0 > 45).all(), angle0
    assert (angle < 20).all(), angle  # C → W in each member


def _angles(net):
    out = []
    for (k, _h), fb in net.channel.feedback.items():
        c, w = host(fb.C), host(net.layers[k - 1].W)
        cos = (c * w).sum((1, 2)) / np.linalg.norm(c, axis=(1, 2)) / np.linalg.norm(w, axis=(1, 2))
        out.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return np.array(out)


# --- the audit's verdicts, from the traced step -------------------------------------------------

VERDICTS = {
    "usf": "non-local", "frsf": "non-local", "brsf": "non-local", "kp": "local", "dkp": "local",
    "wm": "local", "drtp": "local", "sdfa": "local", "bdfa": "local", "lowrank_rbp": "local",
    "lowrank_srbp": "local",
}  # fmt: skip


@pytest.mark.parametrize(("name", "verdict"), VERDICTS.items())
def test_each_zoo_rule_gets_its_verdict_from_the_traced_step(name, verdict):
    a = audit(variant(BASE, RULE_VARIANTS[name]), source="random")
    assert a.verdict == verdict, a.offenses
    assert not a.leaks
    assert a.closed_form_ok, (a.channel_macs_per_example, a.closed_form)
    if verdict == "non-local":  # sign symmetry reads the signs of the forward weights
        assert all("forward weights of layer" in o for o in a.offenses)
        assert (
            a.channel.synapses
            == audit(variant(BASE, ["channel.rule=rbp"]), source="random").channel.synapses
        )


def test_sign_tracking_is_a_write_into_c_that_reads_w():
    a = audit(variant(BASE, RULE_VARIANTS["usf"]), source="random")
    assert "C3→2 update reads forward weights of layer 3 directly" in a.offenses
    assert all(u.local for u in a.updates if u.param.startswith("W"))  # the W updates read C only


def test_drtp_information_is_the_target_without_the_output():
    assert audit(variant(BASE, ["channel.rule=drtp"]), source="random").information == (
        "I_i^h(T, r(L→h), f′(l=h))"
    )
    assert audit(variant(BASE, ["channel.rule=srbp"]), source="random").information.startswith(
        "I_i^h(T−O,"
    )


def test_mirror_phase_and_feedback_learning_are_channel_work():
    rbp = audit(variant(BASE, ["channel.rule=rbp"]), source="random")
    wm = audit(variant(BASE, RULE_VARIANTS["wm"]), source="random")
    kp = audit(variant(BASE, RULE_VARIANTS["kp"]), source="random")
    B = BASE.train.batch_size
    # the mirror phase: one forward read of every W^{h+1} on B noise examples, then the ΔC outer
    # products, all counted in the channel
    mirror_reads = B * sum(a * b for a, b in itertools.pairwise(SIZES[1:]))
    assert wm.ops["channel"]["macs"] - rbp.ops["channel"]["macs"] == 2 * mirror_reads
    assert wm.channel_macs_per_example == rbp.channel_macs_per_example  # not feedback reads
    assert kp.ops["channel"]["macs"] - rbp.ops["channel"]["macs"] == mirror_reads  # ΔC = Rᵀ O
    for a in (wm, kp):
        assert a.energy_per_step["channel"] > rbp.energy_per_step["channel"]
    assert wm.energy_per_step["update"] == pytest.approx(rbp.energy_per_step["update"])


# --- mutations: a rule that secretly reads what it should not is caught ------------------------


def test_kolen_pollack_that_secretly_copies_w_is_caught(monkeypatch):
    adapt = Channel.adapt

    def copying(self, lr_scale):
        if self._pending is not None:
            for (k, _h), fb in self.feedback.items():
                fb.C += 0.0 * self._layers[k - 1].W  # numerically KP, but it reads W
        return adapt(self, lr_scale)

    deliver = Channel.deliver

    def remember(self, net, *a):
        self._layers = net.layers
        return deliver(self, net, *a)

    monkeypatch.setattr(Channel, "deliver", remember)
    monkeypatch.setattr(Channel, "adapt", copying)
    a = audit(variant(BASE, RULE_VARIANTS["kp"]), source="random")
    assert a.verdict == "non-local"
    assert "C2→1 update reads forward weights of layer 2 directly" in a.offenses


def test_weight_mirror_that_reads_w_transposed_is_caught(monkeypatch):
    update = FeedbackArray.update

    def peeking(self, signal, activity, scale, decay=0.0):
        W = getattr(self, "W", None)
        if W is not None:  # numerically the mirror, but the noise side hears yᵀW: W read back
            activity = activity + 0.0 * (signal @ W)
        return update(self, signal, activity, scale, decay)

    mirror = Channel.mirror

    def attach(self, net, *a):
        for (k, _h), fb in self.feedback.items():
            fb.W = net.layers[k - 1].W
        return mirror(self, net, *a)

    monkeypatch.setattr(Channel, "mirror", attach)
    assert audit(variant(BASE, RULE_VARIANTS["wm"]), source="random").verdict == "local"
    monkeypatch.setattr(FeedbackArray, "update", peeking)
    a = audit(variant(BASE, RULE_VARIANTS["wm"]), source="random")
    assert a.verdict == "non-local"
    assert (
        "C2→1 update reads forward weights of layer 2 through a transposed read: weight "
        "transport" in a.offenses
    ), a.offenses


def test_drtp_that_secretly_uses_the_output_is_seen(monkeypatch):
    deliver = Channel.deliver

    def with_output(self, net, outs, t, e, r_top):
        deltas = deliver(self, net, outs, t, e, r_top)
        return [d + 0.0 * e.sum(axis=-1, keepdims=True) for d in deltas]

    monkeypatch.setattr(Channel, "deliver", with_output)
    a = audit(variant(BASE, ["channel.rule=drtp"]), source="random")
    assert a.information.startswith("I_i^h(T−O")  # no longer the target alone


def test_sign_symmetry_that_launders_w_through_asarray_is_not_passed(monkeypatch):
    import lpfa.channel as channel_module

    monkeypatch.setattr(
        channel_module, "with_signs", lambda m, w: abs(m) * np.where(np.asarray(w) >= 0, 1.0, -1.0)
    )
    a = audit(variant(BASE, RULE_VARIANTS["usf"]), source="random")
    assert a.verdict != "local"
