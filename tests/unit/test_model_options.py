"""Forward-array options of the model config: synapses present per array, frozen arrays."""

import dataclasses

import numpy as np
import pytest

from lpfa import config as C
from lpfa.backend import to_numpy
from lpfa.network import Network
from tests.conftest import batch, small_config


def with_model(cfg, **kw):
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **kw))


def test_keep_per_array_removes_synapses_from_the_named_arrays_only(xp):
    # Lillicrap et al.'s sparse network: W0 dense, half of W1 removed
    sizes = (30, 40, 20)
    cfg = with_model(small_config(sizes, "rbp"), weight_keep=(1.0, 0.5))
    net = Network.build(cfg, xp)
    dense, sparse = (to_numpy(layer.W) == 0 for layer in net.layers)
    assert net.layers[0].mask is None
    assert not dense.any()
    assert 0.35 < sparse.mean() < 0.65
    x, t = batch(xp, sizes)
    for _ in range(3):
        net.step(x, t, 0.5, weight_decay=0.1)
    assert np.all(to_numpy(net.layers[1].W)[sparse] == 0)


def test_one_keep_for_every_array_equals_the_same_keep_listed_per_array(xp):
    sizes = (8, 7, 3)
    one = Network.build(with_model(small_config(sizes, "rbp"), weight_keep=0.5), xp)
    each = Network.build(with_model(small_config(sizes, "rbp"), weight_keep=(0.5, 0.5)), xp)
    for a, b in zip(one.layers, each.layers, strict=True):
        np.testing.assert_array_equal(to_numpy(a.W), to_numpy(b.W))


def test_a_dense_array_keeps_its_mask_draw_so_the_other_masks_do_not_move():
    # the mask of array 2 is the same whether array 1 is dense or half removed
    sizes = (8, 7, 3)
    a = Network.build(with_model(small_config(sizes, "rbp"), weight_keep=(1.0, 0.5)))
    b = Network.build(with_model(small_config(sizes, "rbp"), weight_keep=(0.5, 0.5)))
    np.testing.assert_array_equal(a.layers[1].mask, b.layers[1].mask)


@pytest.mark.parametrize("rule", ["bp", "rbp", "srbp"])
def test_a_frozen_array_keeps_its_initial_weights_and_the_others_match_an_unfrozen_step(rule):
    sizes = (6, 5, 4, 3)
    base = small_config(sizes, rule)
    frozen = Network.build(with_model(base, frozen=(2,)))
    free = Network.build(base)
    W0 = [layer.W.copy() for layer in frozen.layers]
    b0 = [layer.b.copy() for layer in frozen.layers]
    x, t = batch(np, sizes)
    frozen.step(x, t, 0.3, weight_decay=0.01, momentum=0.9)
    free.step(x, t, 0.3, weight_decay=0.01, momentum=0.9)
    np.testing.assert_array_equal(frozen.layers[1].W, W0[1])
    np.testing.assert_array_equal(frozen.layers[1].b, b0[1])
    for h in (0, 2):  # one step: the others received what they would have without the freeze
        assert not np.array_equal(frozen.layers[h].W, W0[h])
        np.testing.assert_array_equal(frozen.layers[h].W, free.layers[h].W)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"weight_keep": [1.0, 0.5]},
            r"model.weight_keep=\(1.0, 0.5\): must be in \(0, 1\], one"
            r" number or one per array \(5 for sizes=",
        ),
        ({"weight_keep": 0.0}, r"model.weight_keep=0.0: must be in \(0, 1\]"),
        (
            {"frozen": [0]},
            r"model.frozen=\(0,\): must list distinct arrays, 1 = the lowest, up"
            r" to 5",
        ),
        ({"frozen": [2, 2]}, r"model.frozen=\(2, 2\): must list distinct arrays"),
    ],
)
def test_bad_model_options_name_the_field(model, message):
    with pytest.raises(C.ConfigError, match=message):
        C.from_dict(C.RunConfig, {"model": model})


def test_a_list_in_toml_reaches_the_per_array_form(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(
        '[data]\nname = "linear-teacher"\n'
        "[model]\nsizes = [4, 3, 2]\nweight_keep = [1, 0.5]\nfrozen = [1]\n"
    )
    m = C.load(p).model
    assert (m.weight_keep, m.frozen) == ((1.0, 0.5), (1,))
    assert C.load(p, ["model.weight_keep=0.25"]).model.weight_keep == 0.25


def test_members_with_their_own_inputs_take_the_step_of_the_batch_not_of_the_ensemble():
    # x (E, B, N_0): each member its own copy of the batch; the step is η / B, as for shared x
    sizes = (6, 5, 3)
    cfg = dataclasses.replace(small_config(sizes, "rbp"), seeds=(0, 1, 2))
    shared, own = Network.build(cfg), Network.build(cfg)
    x, t = batch(np, sizes)
    shared.step(x, t, 0.3)
    own.step(np.broadcast_to(x, (3, *x.shape)).copy(), t, 0.3)
    for a, b in zip(shared.layers, own.layers, strict=True):
        np.testing.assert_allclose(a.W, b.W, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("rule", ["bp", "rbp", "srbp"])
def test_arrays_without_bias_keep_it_at_zero_and_learn_as_a_biased_net_reset_to_zero(rule):
    sizes = (6, 5, 4, 3)
    free = Network.build(with_model(small_config(sizes, rule), bias=False))
    reset = Network.build(small_config(sizes, rule))
    x, t = batch(np, sizes)
    for _ in range(3):
        free.step(x, t, 0.3, momentum=0.9)
        reset.step(x, t, 0.3, momentum=0.9)
        for layer in reset.layers:  # what an experiment had to do before model.bias
            layer.b[...] = 0.0
    for a, b in zip(free.layers, reset.layers, strict=True):
        assert not a.b.any()
        np.testing.assert_array_equal(a.W, b.W)
