"""The learning channel: every variant is configuration, and the identities of the papers hold."""

import dataclasses
import math

import numpy as np
import pytest

from lpfa import config as C
from lpfa.alignment import alignment
from lpfa.backend import to_numpy
from lpfa.channel import Channel, FeedbackArray
from lpfa.network import Network
from lpfa.wiring import draw_feedback
from tests.conftest import batch, small_config


def channel(**kw):
    return C.from_dict(C.ChannelConfig, kw)


def with_channel(cfg, **kw):
    return dataclasses.replace(cfg, channel=channel(**kw))


def weights(net):
    return [to_numpy(layer.W).copy() for layer in net.layers]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"rule": "bp", "adapt_lr": 0.1},
            r"adapt_lr=0.1: rule=bp has no random feedback matrices to apply it to",
        ),
        ({"rule": "top", "resample": True}, r"resample=True: rule=top has no random feedback"),
        ({"rule": "srbp", "congruent": True}, r"congruent=True: sign congruence .* only rule=rbp"),
        ({"rule": "rbp", "per_weight": True}, r"per_weight=True: .* rule=srbp only"),
        ({"rule": "rbp", "skip_layers": [1]}, r"skip_layers=\(1,\): only applies to rule=mixed"),
        ({"rule": "mixed", "skip_layers": [0]}, r"skip_layers=\(0,\): must list distinct"),
        ({"rule": "rbp", "adapt_lr": 0.1, "resample": True}, r"adapt_lr=0.1: adaptive feedback"),
        ({"feedback": "bernoulli"}, r"feedback_nonzeros=None: feedback=bernoulli needs"),
        ({"feedback_nonzeros": 2}, r"feedback_nonzeros=2.0: only applies to feedback=bernoulli"),
        ({"dropout": 1.0}, r"dropout=1.0: must be in \[0, 1\)"),
        ({"feedback_keep": 0}, r"feedback_keep=0.0: must be in \(0, 1\]"),
        ({"rule": "top", "dropout": 0.2}, r"dropout='0.2': rule=top sends no signal"),
        ({"rule": "np", "fprime": False}, r"fprime='False': rule=node_perturbation sends no"),
        ({"signal": "half"}, r"signal='half': must be one of full, sign, magnitude"),
    ],
)
def test_impossible_combinations_are_refused_with_the_reason(kw, message):
    with pytest.raises(C.ConfigError, match=message):
        channel(**kw)


def test_rbp_equals_srbp_for_linear_networks_with_matching_matrices(xp):
    # Baldi et al. §3: with linear units, chaining C^L … C^{h+1} is one skip matrix
    sizes = (6, 5, 5, 5, 4)
    cfg = small_config(sizes, "rbp", seeds=(1, 2), hidden="linear", output="linear", loss="squared")
    rbp = Network.build(cfg, xp)
    srbp = Network.build(with_channel(cfg, rule="srbp"), xp)
    L = len(sizes) - 1
    for h in range(1, L):
        product = rbp.channel.feedback[(L, L - 1)].C
        for k in range(L - 1, h, -1):
            product = product @ rbp.channel.feedback[(k, k - 1)].C
        srbp.channel.feedback[(L, h)] = FeedbackArray(product.copy())
    x, t = batch(xp, sizes, onehot=False)
    for _ in range(3):
        rbp.step(x, t, 0.05)
        srbp.step(x, t, 0.05)
    for a, b in zip(weights(rbp), weights(srbp), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_dropout_zero_is_the_identity_and_dropout_is_unbiased(xp):
    sizes = (6, 40, 5)
    cfg = small_config(sizes, "srbp", seeds=(0,))
    plain, zero = (
        Network.build(cfg, xp),
        Network.build(with_channel(cfg, rule="srbp", dropout=0.0), xp),
    )
    x, t = batch(xp, sizes)
    plain.step(x, t, 0.1)
    zero.step(x, t, 0.1)
    for a, b in zip(weights(plain), weights(zero), strict=True):
        np.testing.assert_array_equal(a, b)
    p = 0.3
    net = Network.build(with_channel(cfg, rule="srbp", dropout=p), xp)
    outs = net.forward(x)
    full = to_numpy(plain.deltas(outs, t)[0])
    draws = np.stack([to_numpy(net.deltas(outs, t)[0]) for _ in range(400)])
    kept = draws != 0
    assert abs(kept.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / kept.size)
    np.testing.assert_allclose(
        draws[kept], np.broadcast_to(full / (1 - p), draws.shape)[kept], rtol=1e-12
    )
    # mean over draws → the undropped signal; tolerance from the Bernoulli variance
    sd = np.abs(full) * math.sqrt(p / (1 - p)) / math.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0) - full) <= 5 * sd + 1e-12)


def test_congruent_feedback_has_the_forward_signs(xp):
    sizes = (6, 5, 4, 3)
    net = Network.build(
        with_channel(small_config(sizes, "rbp", seeds=(0, 1)), rule="rbp", congruent=True), xp
    )
    for (k, _h), fb in net.channel.feedback.items():
        np.testing.assert_array_equal(
            np.sign(to_numpy(fb.C)), np.sign(to_numpy(net.layers[k - 1].W))
        )
    # redrawn every minibatch, congruent with the current forward weights each time
    net = Network.build(
        with_channel(small_config(sizes, "rbp"), rule="rbp", congruent=True, resample=True), xp
    )
    x, t = batch(xp, sizes)
    seen = []
    for _ in range(2):
        net.step(x, t, 0.5)
        fb = net.channel.feedback[(3, 2)].C
        seen.append(to_numpy(fb).copy())
    assert not np.allclose(seen[0], seen[1])


def test_on_feedback_sees_every_redrawn_array_before_it_is_used(xp):
    sizes = (6, 5, 4, 3)
    net = Network.build(with_channel(small_config(sizes, "rbp"), rule="rbp", resample=True), xp)
    seen = []

    def observe(C, k, h):
        seen.append((k, h, C.shape))
        return C * 0  # what it returns is what the channel reads

    net.channel.on_feedback = observe
    x, t = batch(xp, sizes)
    *hidden, _top = net.deltas(net.forward(x), t)
    assert seen == [(2, 1, (1, 4, 5)), (3, 2, (1, 3, 4))]
    assert all(not np.any(to_numpy(d)) for d in hidden)


@pytest.mark.parametrize("n", [1.0, 2.0, 8.0])
def test_sparse_wiring_has_the_expected_number_of_non_zeros(n):
    cfg = channel(rule="srbp", feedback="bernoulli", feedback_nonzeros=n, feedback_normalize=True)
    shape = (10, 400, 100)  # members, senders, receivers: p = n / 100
    m = draw_feedback(cfg, shape, np.random.default_rng(0), "float64")
    p = n / shape[-1]
    count = np.count_nonzero(m)
    trials = m.size
    assert abs(count - trials * p) < 5 * math.sqrt(trials * p * (1 - p))  # binomial
    assert abs(np.count_nonzero(m, axis=-1).mean() - n) < 5 * math.sqrt(n * (1 - p) / (10 * 400))
    np.testing.assert_allclose(np.unique(m[m != 0]), [1 / math.sqrt(n)])


def test_fraction_of_feedback_removed():
    cfg = channel(rule="rbp", feedback="uniform", feedback_keep=0.5)
    m = draw_feedback(cfg, (200, 300), np.random.default_rng(1), "float64")
    assert abs(np.mean(m == 0) - 0.5) < 5 * math.sqrt(0.25 / m.size)


def test_missing_forward_synapses_stay_missing(xp):
    sizes = (8, 7, 3)
    cfg = small_config(sizes, "rbp")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, weight_keep=0.5))
    net = Network.build(cfg, xp)
    holes = [to_numpy(layer.W) == 0 for layer in net.layers]
    x, t = batch(xp, sizes)
    for _ in range(3):
        net.step(x, t, 0.5, momentum=0.9, weight_decay=0.1)
    for hole, layer in zip(holes, net.layers, strict=True):
        assert 0.3 < hole.mean() < 0.7
        assert np.all(to_numpy(layer.W)[hole] == 0)


def test_lillicrap_invariant_is_conserved_to_first_order_under_linear_fa():
    # Supplementary Proof 1: with E[x xᵀ] = I, d/dt (BW + WᵀBᵀ − AAᵀ) = 0, so a step of size η
    # changes it by O(η²) and a fixed learning time τ = η·K by O(η).
    n_i, n_h, n_o = 30, 20, 10
    rng = np.random.default_rng(0)
    X = math.sqrt(n_i) * np.vstack([np.eye(n_i), -np.eye(n_i)])  # mean 0, XᵀX / B = I exactly
    T = rng.uniform(-1, 1, (n_o, n_i))
    cfg = small_config((n_i, n_h, n_o), "rbp", hidden="linear", output="linear", loss="squared")
    cfg = with_channel(cfg, rule="rbp", feedback="uniform", feedback_scale=0.5)

    def drift(eta, tau=0.4):
        net = Network.build(cfg)
        B = net.channel.feedback[(2, 1)].C[0].T  # Lillicrap's B (n_h × n_o)

        def invariant():
            A, W = net.layers[0].W[0], net.layers[1].W[0]
            return B @ W + W.T @ B.T - A @ A.T

        start = invariant()
        for _ in range(round(tau / eta)):
            net.step(X, X @ T.T, eta)
        return np.abs(invariant() - start).max() / np.abs(start).max()

    d1, d2 = drift(0.02), drift(0.01)
    assert d1 < 0.05
    assert 0.35 < d2 / d1 < 0.65  # halves with η: first order


def test_adaptive_feedback_follows_its_rule(xp):
    sizes = (6, 5, 4)
    cfg = with_channel(small_config(sizes, "rbp"), rule="rbp", adapt_lr=0.1)
    net = Network.build(cfg, xp)
    x, t = batch(xp, sizes)
    C0 = to_numpy(net.channel.feedback[(2, 1)].C).copy()
    outs = net.forward(x)
    r_top = to_numpy(t - outs[-1])
    expected = C0 + 0.1 * (0.2 / x.shape[0]) * np.einsum("ebk,ebh->ekh", r_top, to_numpy(outs[1]))
    net.step(x, t, 0.2)
    np.testing.assert_allclose(to_numpy(net.channel.feedback[(2, 1)].C), expected, rtol=1e-12)


def test_per_weight_feedback_with_equal_rows_is_srbp(xp):
    sizes = (6, 5, 4, 3)
    cfg = small_config(sizes, "srbp", seeds=(0, 1))
    srbp = Network.build(cfg, xp)
    pw = Network.build(with_channel(cfg, rule="srbp", per_weight=True), xp)
    for h in (1, 2):
        C = srbp.channel.feedback[(3, h)].C  # (E, N_L, N_h)
        tensor = xp.repeat(C[..., None], sizes[h - 1] + 1, axis=-1)
        pw.channel.per_weight[h - 1] = tensor
    x, t = batch(xp, sizes)
    srbp.step(x, t, 0.3)
    pw.step(x, t, 0.3)
    for a, b in zip(weights(srbp), weights(pw), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_sign_and_magnitude_signals():
    sizes = (6, 5, 3)
    cfg = small_config(sizes, "srbp")
    full = Network.build(cfg)
    x, t = batch(np, sizes)
    outs = full.forward(x)
    r = full.deltas(outs, t)[0]
    for kind, f in (("sign", np.sign), ("magnitude", np.abs)):
        net = Network.build(with_channel(cfg, rule="srbp", signal=kind))
        np.testing.assert_array_equal(net.deltas(outs, t)[0], f(r))


def test_sbp_top_hidden_layer_is_backprop_and_lower_layers_skip_fprime():
    sizes = (6, 5, 4, 3)
    cfg = small_config(sizes, "bp")
    bp, sbp = Network.build(cfg), Network.build(with_channel(cfg, rule="sbp"))
    x, t = batch(np, sizes)
    outs = bp.forward(x)
    d_bp, d_sbp = bp.deltas(outs, t), sbp.deltas(outs, t)
    np.testing.assert_array_equal(d_bp[1], d_sbp[1])
    e = t - outs[-1]
    expected = (e @ bp.layers[2].W @ bp.layers[1].W) * (1 - outs[1] ** 2)
    np.testing.assert_allclose(d_sbp[0], expected, rtol=1e-12)


def test_pseudobackprop_is_the_pseudoinverse_of_the_forward_weights():
    sizes = (6, 12, 3)
    net = Network.build(
        with_channel(
            small_config(sizes, "bp", hidden="linear", output="linear", loss="squared"), rule="pbp"
        )
    )
    x, t = batch(np, sizes, onehot=False)
    outs = net.forward(x)
    e = t - outs[-1]
    W = net.layers[1].W[0]
    np.testing.assert_allclose(net.deltas(outs, t)[0][0], e[0] @ np.linalg.pinv(W).T, rtol=1e-10)


def test_node_perturbation_estimates_the_gradient_on_average():
    sizes = (5, 8, 3)
    cfg = with_channel(
        small_config(sizes, "bp", hidden="tanh", output="linear", loss="squared"),
        rule="np",
        perturbation=1e-3,
    )
    net = Network.build(cfg)
    x, t = batch(np, sizes, n=4, onehot=False)
    outs = net.forward(x)
    bp = net.deltas(outs, t, Channel.backprop(2))[0]
    mean = np.mean([net.deltas(outs, t)[0] for _ in range(3000)], axis=0)
    cos = (mean * bp).sum() / np.linalg.norm(mean) / np.linalg.norm(bp)
    assert cos > 0.95


def test_mixed_and_cascade_topologies():
    sizes = (6, 5, 5, 4, 3)
    cfg = small_config(sizes, "mixed")
    mixed = Network.build(with_channel(cfg, rule="mixed", skip_layers=[1]))
    assert sorted(mixed.channel.feedback) == [(3, 2), (4, 1), (4, 3)]
    cascade = Network.build(with_channel(cfg, rule="cascade"))
    assert sorted(cascade.channel.feedback) == [(2, 1), (3, 1), (3, 2), (4, 1), (4, 2), (4, 3)]
    x, t = batch(np, sizes)
    outs = cascade.forward(x)
    d = cascade.deltas(outs, t)
    fb, e = cascade.channel.feedback, t - outs[-1]
    j1 = d[1] @ fb[(2, 1)].C + d[2] @ fb[(3, 1)].C + e @ fb[(4, 1)].C
    np.testing.assert_allclose(d[0], j1 * (1 - outs[1] ** 2), rtol=1e-12)


def test_alignment_diagnostics_exist_where_defined():
    sizes = (6, 5, 4, 3)
    x, t = batch(np, sizes)
    fa = Network.build(small_config(sizes, "rbp", seeds=(0, 1)))
    diag = alignment(fa, x, t)
    for key in ("angle_1", "angle_2", "angle_pbp_1", "angle_wb_1", "angle_wb_2", "ewbe_pos"):
        assert diag[key].shape == (2,)
        assert np.all(np.isfinite(diag[key]))
    assert np.all((diag["ewbe_pos"] >= 0) & (diag["ewbe_pos"] <= 1))
    bp = alignment(Network.build(small_config(sizes, "bp")), x, t)
    np.testing.assert_allclose(bp["angle_1"], 0.0, atol=1e-5)
    assert np.isnan(bp["angle_wb_1"])
    assert np.isnan(bp["ewbe_pos"])
    # FA with C = W: aligned by construction
    fa.channel.feedback = {
        k: FeedbackArray(fa.layers[k[0] - 1].W.copy()) for k in fa.channel.feedback
    }
    diag = alignment(fa, x, t)
    np.testing.assert_allclose(diag["angle_wb_2"], 0.0, atol=1e-5)
    np.testing.assert_allclose(diag["ewbe_pos"], 1.0)


def test_alignment_in_chunks_is_the_whole_probe_at_once(xp):
    sizes = (6, 5, 4, 3)
    x, t = batch(xp, sizes, n=23)
    fa = Network.build(small_config(sizes, "rbp", seeds=(0, 1)), xp=xp)
    whole = alignment(fa, x, t)
    for chunk in (1, 3, x.shape[0] - 1):  # uneven chunks: the means are over examples
        parts = alignment(fa, x, t, chunk=chunk)
        for key, v in whole.items():
            np.testing.assert_allclose(parts[key], v, rtol=1e-9, atol=1e-9, err_msg=key)


# --- the blog post's open questions: non-linear backward paths, better fixed feedback ---------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"backward": "cube"}, r"backward='cube': must be one of linear, tanh, relu, sign"),
        ({"rule": "top", "backward": "tanh"}, r"backward='tanh': rule=top sends no signal"),
        ({"rule": "bp", "feedback_rank": 2}, r"feedback_rank=2: rule=bp has no random"),
        ({"feedback_rank": 0}, r"feedback_rank=0: must be an integer >= 1"),
        ({"feedback_rank": 2, "resample": True}, r"feedback_rank=2: .* resample=true"),
        ({"feedback_rank": 2, "feedback_keep": 0.5}, r"feedback_rank=2: removing entries"),
        ({"rule": "srbp", "feedback_from_init": True}, r"feedback_from_init=True: .* rule=rbp"),
        ({"feedback": "orthogonal", "resample": True}, r"resample=True: feedback=orthogonal"),
        ({"adapt_epochs": 3}, r"adapt_epochs=3: freezes adaptive feedback .* needs adapt_lr"),
        ({"adapt_lr": 0.1, "adapt_epochs": -1}, r"adapt_epochs=-1: must be >= 0"),
    ],
)
def test_open_question_options_refuse_what_they_cannot_do(kw, message):
    with pytest.raises(C.ConfigError, match=message):
        channel(**{"rule": "rbp", **kw})


@pytest.mark.parametrize("rule", ["rbp", "srbp", "bp"])
def test_linear_backward_path_is_the_identity(xp, rule):
    sizes = (6, 5, 4, 3)
    cfg = small_config(sizes, rule, seeds=(0, 1))
    plain = Network.build(cfg, xp)
    linear = Network.build(with_channel(cfg, rule=rule, backward="linear"), xp)
    x, t = batch(xp, sizes)
    outs = plain.forward(x)
    for a, b in zip(plain.deltas(outs, t), linear.deltas(outs, t), strict=True):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


BACKWARD = {
    "tanh": np.tanh,
    "relu": lambda j: np.maximum(j, 0.0),
    "sign": np.sign,
    "hardtanh": lambda j: np.clip(j, -1.0, 1.0),
}


@pytest.mark.parametrize("curve", sorted(BACKWARD))
def test_backward_curve_acts_on_the_delivered_signal_before_fprime(xp, curve):
    # SRBP, two members: R^h = g(e C^{L→h}) ∘ f′(S^h), by hand on the host. A feedback scale of
    # 3 makes |J| > 1 for some entries, so every curve differs from the identity there.
    sizes = (4, 6, 5, 3)
    cfg = with_channel(
        small_config(sizes, "srbp", seeds=(0, 1)),
        rule="srbp",
        feedback="normal",
        feedback_scale=3.0,
        backward=curve,
    )
    net = Network.build(cfg, xp)
    x, t = batch(xp, sizes)
    outs = net.forward(x)
    got = [to_numpy(d) for d in net.deltas(outs, t)]
    e = to_numpy(t - outs[-1])
    for h in (1, 2):
        j = e @ to_numpy(net.channel.feedback[(3, h)].C)
        assert np.any(np.abs(j) > 1)
        assert np.any(j < 0)
        o = to_numpy(outs[h])
        assert got[h - 1].shape == (2, x.shape[0], sizes[h])
        np.testing.assert_allclose(got[h - 1], BACKWARD[curve](j) * (1 - o**2), rtol=1e-12)
    np.testing.assert_array_equal(got[-1], e)  # the top layer is untouched


def test_backward_curve_compounds_down_an_rbp_chain():
    # R^2 = g(e C^{3→2}) ∘ f′², and layer 1 hears R^2: R^1 = g(R^2 C^{2→1}) ∘ f′¹
    sizes = (4, 6, 5, 3)
    cfg = with_channel(
        small_config(sizes, "rbp", seeds=(0, 1)),
        rule="rbp",
        feedback="normal",
        feedback_scale=3.0,
        backward="tanh",
    )
    net = Network.build(cfg)
    x, t = batch(np, sizes)
    outs = net.forward(x)
    d = net.deltas(outs, t)
    fb = net.channel.feedback
    r2 = np.tanh((t - outs[-1]) @ fb[(3, 2)].C) * (1 - outs[2] ** 2)
    r1 = np.tanh(r2 @ fb[(2, 1)].C) * (1 - outs[1] ** 2)
    np.testing.assert_allclose(d[1], r2, rtol=1e-12)
    np.testing.assert_allclose(d[0], r1, rtol=1e-12)


@pytest.mark.parametrize(("shape", "scale"), [((3, 4, 9), 1.0), ((2, 9, 4), 0.5), ((1, 5, 5), 2.0)])
def test_orthogonal_feedback_is_scaled_semi_orthogonal(shape, scale):
    cfg = channel(rule="srbp", feedback="orthogonal", feedback_scale=scale)
    m = draw_feedback(cfg, shape, np.random.default_rng(3), "float64")
    assert m.shape == shape
    n = min(shape[1:])
    gram = m @ m.transpose(0, 2, 1) if shape[1] <= shape[2] else m.transpose(0, 2, 1) @ m
    np.testing.assert_allclose(gram, np.broadcast_to(scale**2 * np.eye(n), gram.shape), atol=1e-12)
    if shape[0] > 1:
        assert not np.allclose(m[0], m[1])  # every member has its own matrix


def test_orthogonal_feedback_in_a_network_has_one_matrix_per_member():
    sizes = (6, 5, 4, 3)
    cfg = with_channel(small_config(sizes, "rbp", seeds=(0, 1)), rule="rbp", feedback="orthogonal")
    net = Network.build(cfg)
    for (k, h), fb in net.channel.feedback.items():
        assert fb.C.shape == (2, sizes[k], sizes[h])
        gram = fb.C @ fb.C.transpose(0, 2, 1)  # N_k < N_h: orthonormal rows
        np.testing.assert_allclose(gram, np.broadcast_to(np.eye(sizes[k]), gram.shape), atol=1e-12)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_low_rank_feedback_is_the_best_rank_r_approximation_of_the_draw(rank):
    shape = (3, 6, 8)
    full = draw_feedback(channel(rule="srbp"), shape, np.random.default_rng(5), "float64")
    low = draw_feedback(
        channel(rule="srbp", feedback_rank=rank), shape, np.random.default_rng(5), "float64"
    )
    assert low.shape == shape
    assert list(np.linalg.matrix_rank(low)) == [rank] * shape[0]
    # Eckart-Young: the residual is the norm of the dropped singular values, per member
    s = np.linalg.svd(full, compute_uv=False)
    np.testing.assert_allclose(
        np.linalg.norm(full - low, axis=(1, 2)), np.sqrt((s[:, rank:] ** 2).sum(-1)), rtol=1e-10
    )
    # the best rank-r matrix: its projection onto the top singular space is the draw's
    u = np.linalg.svd(full)[0][..., :rank]
    np.testing.assert_allclose(u.transpose(0, 2, 1) @ low, u.transpose(0, 2, 1) @ full, atol=1e-12)


def test_low_rank_feedback_in_a_network():
    sizes = (6, 5, 4, 3)
    net = Network.build(
        with_channel(small_config(sizes, "srbp", seeds=(0, 1)), rule="srbp", feedback_rank=2)
    )
    for (k, h), fb in net.channel.feedback.items():
        assert fb.C.shape == (2, sizes[k], sizes[h])
        assert list(np.linalg.matrix_rank(fb.C)) == [2, 2]


def test_feedback_from_initial_forward_weights_then_fixed(xp):
    sizes = (6, 5, 4, 3)
    cfg = with_channel(
        small_config(sizes, "rbp", seeds=(0, 1)), rule="rbp", feedback_from_init=True
    )
    net = Network.build(cfg, xp)
    start = {k: to_numpy(fb.C).copy() for k, fb in net.channel.feedback.items()}
    for (k, _h), C0 in start.items():
        np.testing.assert_array_equal(C0, to_numpy(net.layers[k - 1].W))  # B = W⁰ᵀ exactly
    w0 = weights(net)
    x, t = batch(xp, sizes)
    for _ in range(3):
        net.step(x, t, 0.5)
    assert not np.allclose(weights(net)[2], w0[2])  # W learns ...
    for k, fb in net.channel.feedback.items():
        np.testing.assert_array_equal(to_numpy(fb.C), start[k])  # ... C stays W⁰
    # on the first step the rule is backprop
    fresh = Network.build(cfg, xp)
    outs = fresh.forward(x)
    bp = fresh.deltas(outs, t, Channel.backprop(3))
    for a, b in zip(fresh.deltas(outs, t), bp, strict=True):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-12)


def _final_feedback(cfg, epochs, adapt_epochs):
    from lpfa.training import train

    cfg = dataclasses.replace(
        cfg,
        channel=dataclasses.replace(cfg.channel, adapt_epochs=adapt_epochs),
        train=dataclasses.replace(cfg.train, epochs=epochs, angle_every=None),
    )
    net = train(cfg, progress=False).network
    return {k: to_numpy(fb.C).copy() for k, fb in net.channel.feedback.items()}, weights(net)


def test_adaptive_feedback_is_frozen_after_adapt_epochs():
    cfg = with_channel(small_config((6, 5, 4), "rbp", seeds=(0, 1)), rule="rbp", adapt_lr=0.5)
    initial = {k: to_numpy(fb.C) for k, fb in Network.build(cfg).channel.feedback.items()}
    one, w_one = _final_feedback(cfg, 1, None)
    frozen, w_frozen = _final_feedback(cfg, 3, 1)
    adapting, _ = _final_feedback(cfg, 3, None)
    never, _ = _final_feedback(cfg, 2, 0)
    for k in one:
        assert not np.allclose(one[k], initial[k])  # it learned in epoch 1
        np.testing.assert_array_equal(frozen[k], one[k])  # and not after it
        assert not np.allclose(adapting[k], one[k])  # without the freeze it goes on
        np.testing.assert_array_equal(never[k], initial[k])
    assert not np.allclose(w_frozen[0], w_one[0])  # the forward arrays kept learning


def test_top_feedback_replaces_the_top_gradient_and_keeps_the_hidden_channel(xp):
    sizes = (6, 5, 4, 3)
    cfg = small_config(sizes, "rbp", seeds=(0, 1))
    plain = Network.build(cfg, xp)
    top = Network.build(with_channel(cfg, rule="rbp", top_feedback=True), xp)
    assert top.channel.top.C.shape == (2, 3, 3)
    for k, fb in plain.channel.feedback.items():  # drawn last: the other arrays are unchanged
        np.testing.assert_array_equal(to_numpy(top.channel.feedback[k].C), to_numpy(fb.C))
    x, t = batch(xp, sizes)
    outs = plain.forward(x)
    a, b = plain.deltas(outs, t), top.deltas(outs, t)
    for h in range(2):
        np.testing.assert_array_equal(to_numpy(a[h]), to_numpy(b[h]))
    e = to_numpy(t - outs[-1])
    np.testing.assert_allclose(to_numpy(b[-1]), e @ to_numpy(top.channel.top.C), rtol=1e-12)
    # with C^top = I the top layer follows its gradient again
    top.channel.top.C = xp.asarray(np.broadcast_to(np.eye(3), (2, 3, 3)).copy())
    np.testing.assert_allclose(to_numpy(top.deltas(outs, t)[-1]), e, rtol=1e-12)
    # it works for the rule without a channel too (only the top layer learns, randomly)
    only = Network.build(with_channel(cfg, rule="top", top_feedback=True), xp)
    assert only.deltas(outs, t)[:-1] == [None, None]


def test_angle_to_the_pseudo_inverse_of_the_feedback_on_a_hand_case():
    from lpfa.alignment import pinv_feedback

    sizes = (4, 3, 2)
    net = Network.build(small_config(sizes, "rbp", seeds=(0, 1)))
    C = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # Bᵀ; B⁺ = [[1, 0, 0], [0, 0.5, 0]]
    np.testing.assert_allclose(pinv_feedback(C[None])[0], [[1, 0, 0], [0, 0.5, 0]])
    net.channel.feedback[(2, 1)] = FeedbackArray(np.stack([C, C]))
    # member 0: W = Bᵀ (W∠Bᵀ = 0, W∠B⁺ = arccos 0.8); member 1: W = B⁺ (W∠B⁺ = 0)
    net.layers[1].W[...] = np.stack([C, [[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]]])
    x, t = batch(np, sizes)
    diag = alignment(net, x, t)
    np.testing.assert_allclose(diag["angle_wb_1"][0], 0.0, atol=1e-6)
    np.testing.assert_allclose(
        diag["angle_wbpinv_1"], [math.degrees(math.acos(0.8)), 0.0], atol=1e-6
    )
    # a generic member: W = B⁺ gives 0° while W∠Bᵀ does not
    rng = np.random.default_rng(0)
    B = rng.standard_normal((2, 3, 2))
    net.channel.feedback[(2, 1)] = FeedbackArray(B.transpose(0, 2, 1).copy())
    net.layers[1].W[...] = np.linalg.pinv(B)
    diag = alignment(net, x, t)
    np.testing.assert_allclose(diag["angle_wbpinv_1"], 0.0, atol=1e-5)
    assert np.all(diag["angle_wb_1"] > 1.0)
