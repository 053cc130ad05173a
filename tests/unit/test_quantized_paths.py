"""Quantizers on every signal path: where they act, and that "off" is exactly off."""

import dataclasses

import numpy as np
import pytest

from lpfa import config as C
from lpfa.backend import to_numpy
from lpfa.network import Network
from lpfa.quant import parse_format, quantize
from tests.conftest import batch, small_config

LOG3 = "log:bits=3,alpha=0.125"


def build(xp, cfg, **channel):
    if channel:
        cfg = dataclasses.replace(cfg, channel=C.from_dict(C.ChannelConfig, channel))
    return Network.build(cfg, xp)


def grid_values(spec):
    fmt = parse_format(spec)
    return {0.0} | {s * fmt.alpha * 2.0**-k for s in (1, -1) for k in range(fmt.bits)}


@pytest.mark.parametrize("rule", ["bp", "rbp", "srbp"])
def test_error_channel_quantizes_what_each_hidden_neuron_receives_before_fprime(xp, rule):
    sizes = (6, 5, 4, 3)
    cfg = small_config(sizes, rule)
    net = build(xp, cfg, rule=rule, error_format=LOG3)
    x, t = batch(xp, sizes)
    outs = net.forward(x)
    deltas = net.deltas(outs, t)
    allowed = grid_values(LOG3)
    for h, r in enumerate(deltas[:-1], 1):
        received = to_numpy(r) / to_numpy(1 - outs[h] ** 2)  # undo f′ (tanh)
        assert {round(float(v), 12) for v in received.ravel()} <= {round(v, 12) for v in allowed}


def test_error_quantization_accumulates_along_the_chain():
    # in BP the quantized signal of layer 2 is what layer 1 hears through W^2ᵀ
    sizes = (6, 5, 4, 3)
    net = build(np, small_config(sizes, "bp"), rule="bp", error_format=LOG3)
    x, t = batch(np, sizes)
    outs = net.forward(x)
    d = net.deltas(outs, t)
    j1 = quantize(d[1] @ net.layers[1].W, parse_format(LOG3))
    np.testing.assert_array_equal(d[0], j1 * (1 - outs[1] ** 2))


def test_update_channel_quantizes_each_example_before_the_sum(xp):
    sizes = (6, 5, 3)
    spec = "log:bits=3,alpha=0.015625"
    cfg = small_config(sizes, "srbp")
    plain, quant = build(xp, cfg), build(xp, cfg, rule="srbp", update_format=spec)
    x, t = batch(xp, sizes)
    outs = plain.forward(x)
    deltas = plain.deltas(outs, t)
    W0 = [to_numpy(layer.W).copy() for layer in quant.layers]
    quant.step(x, t, 0.1)
    fmt = parse_format(spec)
    for h, (R, pre) in enumerate(zip(deltas, outs[:-1], strict=True)):
        R, pre = to_numpy(R), to_numpy(pre)
        pre = np.broadcast_to(pre, (R.shape[0], *pre.shape[-2:]))
        per_example = quantize(0.1 * R[:, :, :, None] * pre[:, :, None, :], fmt)
        expected = W0[h] + per_example.mean(axis=1)
        np.testing.assert_allclose(to_numpy(quant.layers[h].W), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "spec",
    [
        "log:bits=3,alpha=0.015625",
        "log:bits=1,alpha=0.015625,flush_to_zero=True",
        "sign",
        "log:bits=1,alpha=0.015625",  # eq. 19 at 1 bit: a product of signs, no outer products
        "log:bits=1,alpha=0.0015625",
    ],
)
@pytest.mark.parametrize("budget", [10_000, 40, 1])
def test_per_example_sum_skips_zero_columns_only_where_q_of_0_is_0(xp, spec, budget):
    # sign maps 0 to +scale: its zero columns still add; the log formats' are skipped exactly
    from lpfa.crossbar import Crossbar
    from lpfa.quant import quantizer

    rng = np.random.default_rng(3)
    E, B, n_out, n_in = 2, 7, 4, 9
    post = rng.standard_normal((E, B, n_out)) * 0.05
    pre = rng.standard_normal((B, n_in))
    pre[:, [0, 4, 5]] = 0.0  # zero in every example
    pre[rng.random((B, n_in)) < 0.5] = 0.0  # and in many single examples
    q = quantizer(spec)
    layer = Crossbar(xp.asarray(np.zeros((E, n_out, n_in))), xp.asarray(np.zeros((E, n_out))))
    dW, db = layer._quantized_sum(xp.asarray(post), xp.asarray(pre), q, budget=budget)
    want = q(post[:, :, :, None] * pre[None, :, None, :]).sum(axis=1)
    np.testing.assert_allclose(to_numpy(dW), want, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(to_numpy(db), q(post).sum(axis=1))


@pytest.mark.parametrize("shared_input", [True, False])
def test_one_bit_update_as_a_product_of_signs_equals_every_example_quantized(xp, shared_input):
    # float32, alpha a power of two: every partial sum of +-alpha is exact, so the sum of signs
    # times alpha must equal the elementwise path bit for bit (which a wrapper without
    # sign_level forces); a network step with it matches the elementwise step too
    from lpfa.crossbar import Crossbar
    from lpfa.quant import quantizer

    rng = np.random.default_rng(5)
    E, B, n_out, n_in = 3, 100, 7, 30
    post = (rng.standard_normal((E, B, n_out)) * 1e-3).astype(np.float32)
    post[:, ::3, 2] = 0.0
    pre = rng.standard_normal((B, n_in) if shared_input else (E, B, n_in)).astype(np.float32)
    pre[..., :5] = np.maximum(pre[..., :5], 0)
    q = quantizer("log:bits=1,alpha=0.015625")
    assert q.sign_level == 0.015625
    layer = Crossbar(
        xp.asarray(np.zeros((E, n_out, n_in), np.float32)),
        xp.asarray(np.zeros((E, n_out), np.float32)),
    )
    fast = layer._quantized_sum(xp.asarray(post), xp.asarray(pre), q)
    slow = layer._quantized_sum(xp.asarray(post), xp.asarray(pre), lambda v: q(v))
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_formats_off_are_exactly_off(xp):
    sizes = (6, 5, 3)
    cfg = small_config(sizes, "rbp")
    a = build(xp, cfg)
    b = build(xp, cfg, rule="rbp", error_format=None, update_format=None)
    x, t = batch(xp, sizes)
    a.step(x, t, 0.1)
    b.step(x, t, 0.1)
    for la, lb in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(to_numpy(la.W), to_numpy(lb.W))


def test_forward_path_dac_adc_and_conductance_levels(xp):
    sizes = (6, 5, 3)
    cfg = small_config(sizes, "srbp")
    model = dataclasses.replace(
        cfg.model,
        input_format="fixed:bits=4,full_scale=1.0",
        output_format="fixed:bits=6,full_scale=4.0",
        weight_format="fixed:bits=5,full_scale=0.5",
    )
    net = Network.build(dataclasses.replace(cfg, model=model), xp)
    w_step = parse_format(model.weight_format)._scale()
    x, t = batch(xp, sizes)
    for _ in range(3):
        net.step(x, t, 0.5)
        for layer in net.layers:
            W = to_numpy(layer.W)
            np.testing.assert_allclose(W / w_step, np.round(W / w_step), atol=1e-9)
            assert np.abs(W).max() <= 0.5 + 1e-12
    S = to_numpy(net.layers[0].read(x))
    s_step = parse_format(model.output_format)._scale()
    np.testing.assert_allclose(S / s_step, np.round(S / s_step), atol=1e-9)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"error_format": "log:bits=0,alpha=0.1"},
            r"channel.error_format='log:bits=0,alpha=0.1': not a number format",
        ),
        ({"update_format": "float7"}, r"channel.update_format='float7': not a number format"),
        ({"rounding": "up"}, r"channel.rounding='up': must be one of nearest, stochastic"),
        ({"rule": "top", "error_format": LOG3}, r"error_format=.*rule=top sends no signal"),
        (
            {"rule": "srbp", "per_weight": True, "update_format": LOG3},
            r"update_format=.*per-weight",
        ),
    ],
)
def test_bad_formats_are_refused(kw, message):
    with pytest.raises(C.ConfigError, match=message):
        C.from_dict(C.RunConfig, {"channel": kw})


def test_a_per_row_error_scale_maps_each_example_s_peak_to_alpha(xp):
    sizes = (6, 5, 4, 3)
    cfg = small_config(sizes, "rbp")
    net = build(xp, cfg, rule="rbp", error_format="log:bits=3,alpha=per_row")
    x, t = batch(xp, sizes)
    outs = net.forward(x)
    deltas = net.deltas(outs, t)
    for h, r in enumerate(deltas[:-1], 1):
        received = to_numpy(r) / to_numpy(1 - outs[h] ** 2)  # undo f′ (tanh)
        peak = np.abs(received).max(axis=-1, keepdims=True)  # one scale per example and member
        levels = np.asarray([0.0, 0.25, 0.5, 1.0])
        ratio = np.abs(received / peak).ravel()
        assert np.isclose(ratio[:, None], levels, rtol=1e-9, atol=0).any(axis=1).all()


def test_a_per_tensor_update_scale_is_refused(xp):
    # per-example updates are quantized a chunk of examples at a time: one peak would pool them
    cfg = small_config((6, 5, 3), "srbp")
    with pytest.raises(ValueError, match=r"channel\.update_format=.*per_tensor scale would pool"):
        build(xp, cfg, rule="srbp", update_format="log:bits=3,alpha=per_tensor")
    build(xp, cfg, rule="srbp", update_format="log:bits=3,alpha=per_row")
