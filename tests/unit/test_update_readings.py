"""The switches that bracket Baldi et al. §5.2's quantized-update rows: what §5.2 leaves open."""

import dataclasses

import numpy as np
import pytest

from lpfa import config as C
from lpfa.network import Network
from tests.conftest import batch, small_config

Q = "log:bits=3,alpha=0.015625"
SIZES = (6, 5, 4, 3)


def stepped(rule="rbp", **channel):
    cfg = small_config(SIZES, rule)
    if channel:
        cfg = dataclasses.replace(
            cfg, channel=C.from_dict(C.ChannelConfig, {"rule": rule, **channel})
        )
    net = Network.build(cfg)
    before = [(layer.W.copy(), layer.b.copy()) for layer in net.layers]
    x, t = batch(np, SIZES, n=16)
    net.step(x, t, 0.1)
    return [(layer.W - W, layer.b - b) for layer, (W, b) in zip(net.layers, before, strict=True)]


@pytest.mark.parametrize("rule", ["bp", "rbp", "srbp"])
def test_an_exact_top_layer_takes_the_unquantized_step_the_hidden_ones_stay_quantized(rule):
    exact, quantized = stepped(rule), stepped(rule, update_format=Q)
    mixed = stepped(rule, update_format=Q, update_top=False)
    for h in range(len(SIZES) - 2):  # same forward pass, same deltas: the hidden steps agree
        np.testing.assert_array_equal(mixed[h][0], quantized[h][0])
    np.testing.assert_allclose(mixed[-1][0], exact[-1][0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mixed[-1][1], exact[-1][1], rtol=1e-12, atol=1e-15)
    assert not np.allclose(quantized[-1][0], exact[-1][0])


def test_exact_biases_take_the_minibatch_mean_while_the_weights_stay_quantized():
    exact, quantized = stepped(), stepped(update_format=Q)
    mixed = stepped(update_format=Q, update_bias=False)
    for (dW, db), (qW, qb), (_, eb) in zip(mixed, quantized, exact, strict=True):
        np.testing.assert_array_equal(dW, qW)
        np.testing.assert_allclose(db, eb, rtol=1e-12, atol=1e-15)
        assert not np.allclose(qb, eb)


def test_the_sum_reading_is_the_batch_size_times_the_mean_reading():
    mean, total = stepped(update_format=Q), stepped(update_format=Q, update_sum=True)
    for (mW, mb), (sW, sb) in zip(mean, total, strict=True):
        np.testing.assert_allclose(sW, 16 * mW, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(sb, 16 * mb, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("field", ["update_top", "update_bias", "update_sum"])
def test_the_switches_mean_nothing_without_an_update_format(field):
    value = field == "update_sum"
    with pytest.raises(C.ConfigError, match=rf"channel.{field}={value}: only applies with"):
        C.from_dict(C.RunConfig, {"channel": {field: value}})
