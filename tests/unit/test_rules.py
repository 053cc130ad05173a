"""Exactness of the learning rules: identities that must hold to the bit or to float tolerance."""

import dataclasses

import numpy as np
import pytest

from lpfa import config as C
from lpfa.backend import to_numpy
from lpfa.channel import Channel, FeedbackArray
from lpfa.crossbar import Crossbar
from lpfa.metrics import loss
from lpfa.network import Network
from tests.conftest import batch, small_config


def weights(net):
    return [to_numpy(layer.W).copy() for layer in net.layers] + [
        to_numpy(layer.b).copy() for layer in net.layers
    ]


def copied_feedback(net):
    """An RBP channel whose C^{h+1} are copies of W^{h+1} (B = Wᵀ in Lillicrap's notation)."""
    L = len(net.layers)
    fb = {(h + 1, h): FeedbackArray(net.layers[h].W.copy()) for h in range(1, L)}
    return Channel(C.ChannelConfig(rule=C.Rule.RBP), L, fb)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fa_with_feedback_equal_to_forward_weights_is_backprop_bit_for_bit(xp, dtype):
    sizes = (8, 7, 6, 5, 4)
    cfg = small_config(sizes, "bp", seeds=(0, 1, 2), dtype=dtype)
    bp = Network.build(cfg, xp)
    fa = Network.build(cfg, xp)
    # B = Wᵀ in Lillicrap's notation is C = W in lpfa's storage (see Channel)
    x, t = batch(xp, sizes, dtype=dtype)
    for _ in range(3):  # stays equal step after step, since the copies of W do not learn
        bp.step(x, t, 0.1)
        fa.channel = copied_feedback(fa)
        fa.step(x, t, 0.1)
        for a, b in zip(weights(bp), weights(fa), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("hidden", "output", "loss_kind"),
    [
        ("tanh", "softmax", "cross_entropy"),
        ("logistic", "logistic", "squared"),
        ("relu", "linear", "squared"),
    ],
)
def test_backprop_matches_finite_differences_along_a_random_direction(
    xp, hidden, output, loss_kind
):
    sizes = (5, 6, 4, 3)
    cfg = small_config(sizes, "bp", hidden=hidden, output=output, loss=loss_kind)
    net = Network.build(cfg, xp)
    x, t = batch(xp, sizes, onehot=loss_kind == "cross_entropy")
    rng = np.random.default_rng(42)
    direction = [xp.asarray(rng.standard_normal(layer.W.shape)) for layer in net.layers]
    direction += [xp.asarray(rng.standard_normal(layer.b.shape)) for layer in net.layers]
    params = [layer.W for layer in net.layers] + [layer.b for layer in net.layers]
    kind = C.Loss(loss_kind)

    def objective(eps):
        for p, d in zip(params, direction, strict=True):
            p += eps * d
        value = float(to_numpy(loss(net.forward(x)[-1], t, kind))[0])
        for p, d in zip(params, direction, strict=True):
            p -= eps * d
        return value

    eps = 1e-5
    numeric = (objective(eps) - objective(-eps)) / (2 * eps)
    before = [p.copy() for p in params]
    lr = 1e-3
    net.step(x, t, lr)  # ΔW = −lr · ∂L/∂W for the mean loss
    analytic = (
        -sum(
            float(to_numpy(((p - b) * d).sum()))
            for p, b, d in zip(params, before, direction, strict=True)
        )
        / lr
    )
    assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_srbp_equals_rbp_with_one_hidden_layer(xp):
    sizes = (6, 9, 4)
    rbp = Network.build(small_config(sizes, "rbp", seeds=(3, 4)), xp)
    srbp = Network.build(small_config(sizes, "srbp", seeds=(3, 4)), xp)
    np.testing.assert_array_equal(
        to_numpy(rbp.channel.feedback[(2, 1)].C), to_numpy(srbp.channel.feedback[(2, 1)].C)
    )
    x, t = batch(xp, sizes)
    for _ in range(3):
        rbp.step(x, t, 0.2)
        srbp.step(x, t, 0.2)
    for a, b in zip(weights(rbp), weights(srbp), strict=True):
        np.testing.assert_array_equal(a, b)


def test_top_layer_only_leaves_hidden_layers_and_trains_top_like_bp(xp):
    sizes = (6, 5, 4, 3)
    cfg = small_config(sizes, "top")
    top, bp = (
        Network.build(cfg, xp),
        Network.build(dataclasses.replace(cfg, channel=C.ChannelConfig()), xp),
    )
    before = weights(top)
    x, t = batch(xp, sizes)
    top.step(x, t, 0.5)
    bp.step(x, t, 0.5)
    after = weights(top)
    for h in range(2):
        np.testing.assert_array_equal(after[h], before[h])  # W^1, W^2 frozen
        np.testing.assert_array_equal(after[3 + h], before[3 + h])  # b^1, b^2 frozen
    # Fact 1: the top layer follows the gradient, whatever the channel
    np.testing.assert_array_equal(after[2], weights(bp)[2])


@pytest.mark.parametrize("rule", ["bp", "rbp", "srbp", "top"])
def test_ensemble_equals_single_runs_with_the_same_seeds(xp, rule):
    sizes = (7, 6, 5, 4)
    seeds = (11, 12, 13)
    ens = Network.build(small_config(sizes, rule, seeds=seeds), xp)
    singles = [Network.build(small_config(sizes, rule, seeds=(s,)), xp) for s in seeds]
    x, t = batch(xp, sizes)
    for _ in range(4):
        ens.step(x, t, 0.3, weight_decay=1e-3, momentum=0.5)
        for net in singles:
            net.step(x, t, 0.3, weight_decay=1e-3, momentum=0.5)
    for m, net in enumerate(singles):
        for a, b in zip(weights(ens), weights(net), strict=True):
            np.testing.assert_allclose(a[m], b[0], rtol=1e-12, atol=1e-12)


def test_crossbar_update_is_the_sum_of_outer_products():
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4))
    post, pre = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 3))
    bar = Crossbar(W.copy(), b.copy())
    bar.update(post, pre, 0.1)
    expected = W + 0.1 * np.einsum("ebi,ebj->eij", post, pre)
    np.testing.assert_allclose(bar.W, expected, rtol=1e-13)
    np.testing.assert_allclose(bar.b, b + 0.1 * post.sum(axis=1), rtol=1e-13)
    shared = rng.standard_normal((5, 3))  # the first layer: one input for every member
    bar2 = Crossbar(W.copy(), b.copy())
    bar2.update(post, shared, 0.1)
    np.testing.assert_allclose(bar2.W, W + 0.1 * np.einsum("ebi,bj->eij", post, shared), rtol=1e-13)
    np.testing.assert_allclose(bar2.read(shared), bar2.read(np.stack([shared, shared])), rtol=1e-13)


def test_crossbar_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="need \\(E, n_out, n_in\\)"):
        Crossbar(np.zeros((2, 3, 4)), np.zeros((2, 4)))


def test_weight_decay_and_momentum_follow_their_formulas():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((1, 3, 2))
    post, pre = rng.standard_normal((1, 4, 3)), rng.standard_normal((1, 4, 2))
    bar = Crossbar(W.copy(), np.zeros((1, 3)))
    lr, wd, mu = 0.1, 0.01, 0.9
    g = np.einsum("ebi,ebj->eij", post, pre) / 4
    bar.update(post, pre, lr / 4, weight_decay=wd, momentum=mu)
    v = lr * g - lr * wd * W
    np.testing.assert_allclose(bar.W, W + v, rtol=1e-12)
    W1 = bar.W.copy()
    bar.update(post, pre, lr / 4, weight_decay=wd, momentum=mu)
    v = mu * v + lr * g - lr * wd * W1
    np.testing.assert_allclose(bar.W, W1 + v, rtol=1e-12)
