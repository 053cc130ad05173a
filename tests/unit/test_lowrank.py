"""The ``lowrank`` task (Garg & Vempala): its target matrix, its data, its validation, and the
factorization dynamics lpfa runs on it."""

import numpy as np
import pytest

from lpfa import config as C
from lpfa.config import ConfigError
from lpfa.data import load, lowrank_target
from lpfa.dynamics import ExpectedDynamics, linear_config, moment_design
from lpfa.network import Network


def lowrank(**kw):
    return C.DataConfig(name="lowrank", **kw)


def factor_net(n, r, rule, seeds=(0, 1, 2)):
    return Network.build(linear_config((n, r, n), rule, seeds=seeds, data="lowrank"))


def test_the_data_are_t_equals_y_x_with_the_configured_shapes():
    cfg = lowrank(n_train=30, n_test=7, target_rank=2, seed=3)
    ds = load(cfg, (5, 3, 4), "float64")
    assert ds.x_train.shape == (30, 5)
    assert ds.t_train.shape == (30, 4)
    assert ds.x_test.shape == (7, 5)
    assert ds.y_train is None
    assert not ds.classification
    Y = lowrank_target(cfg, 5, 4)
    np.testing.assert_allclose(ds.t_train, ds.x_train @ Y.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ds.t_test, ds.x_test @ Y.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("spectrum", "rank", "expected"),
    [
        ("flat", 2, [1.0, 1.0, 0.0, 0.0]),
        ("decaying", 3, [1.0, 1 / 2, 1 / 3, 0.0]),
        ("decaying", None, [1.0, 1 / 2, 1 / 3, 1 / 4]),  # None = full rank min(n_in, n_out)
    ],
)
def test_the_target_has_the_stated_singular_values(spectrum, rank, expected):
    Y = lowrank_target(lowrank(target_rank=rank, spectrum=spectrum), 6, 4)
    assert Y.shape == (4, 6)
    np.testing.assert_allclose(np.linalg.svd(Y, compute_uv=False), expected, atol=1e-12)


def test_the_target_depends_on_the_seed_only():
    a = lowrank_target(lowrank(target_rank=2, seed=1, n_train=10), 5, 5)
    b = lowrank_target(lowrank(target_rank=2, seed=1, n_train=999), 5, 5)
    c = lowrank_target(lowrank(target_rank=2, seed=2), 5, 5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_bad_lowrank_settings_name_the_field():
    with pytest.raises(ConfigError, match=r"target_rank=2: only applies to name=lowrank"):
        C.DataConfig(name="mnist", target_rank=2)
    with pytest.raises(ConfigError, match=r"target_rank=0: must be an integer >= 1"):
        lowrank(target_rank=0)
    with pytest.raises(ConfigError, match=r"spectrum='steep': must be one of flat, decaying"):
        lowrank(spectrum="steep")
    raw = {
        "data": {"name": "lowrank", "target_rank": 5},
        "model": {"sizes": [6, 2, 4], "output": "linear", "loss": "squared"},
    }
    with pytest.raises(ConfigError, match=r"data.target_rank=5: must be <= min\(N_0, N_L\) = 4"):
        C.from_dict(C.RunConfig, raw)


def test_bp_and_fa_nets_start_from_the_same_weights_and_members_differ():
    bp, fa = factor_net(6, 2, "bp"), factor_net(6, 2, "rbp")
    for a, b in zip(bp.layers, fa.layers, strict=True):
        assert a.W.shape[0] == 3  # the ensemble axis
        np.testing.assert_array_equal(a.W, b.W)
        np.testing.assert_array_equal(a.b, 0.0)
        assert not np.allclose(a.W[0], a.W[1])


@pytest.mark.parametrize("rule", ["bp", "rbp"])
def test_one_design_step_is_the_hand_computed_factorization_update(rule):
    # loss E[½‖Yx − ZWx‖²] = ½‖Y − ZW‖²_F for x ~ N(0, I): GD moves Z by η (Y − ZW) Wᵀ and W by
    # η Zᵀ(Y − ZW); FA puts its feedback C (n × r, C = Z would be GD) in place of Z for W
    n, r, eta = 3, 2, 0.05
    Y = lowrank_target(lowrank(target_rank=2, spectrum="decaying"), n, n)
    net = factor_net(n, r, rule)
    ed = ExpectedDynamics(net, *moment_design(np.eye(n), Y))
    W, Z = np.array(net.layers[0].W), np.array(net.layers[1].W)
    B = Z if rule == "bp" else np.array(net.channel.feedback[(2, 1)].C)
    E = Y - Z @ W  # (E, n, n)
    np.testing.assert_allclose(ed.loss(), 0.5 * (E**2).sum(axis=(1, 2)), rtol=1e-12)
    ed.step(eta)
    np.testing.assert_allclose(net.layers[1].W, Z + eta * E @ W.transpose(0, 2, 1), atol=1e-13)
    np.testing.assert_allclose(net.layers[0].W, W + eta * B.transpose(0, 2, 1) @ E, atol=1e-13)
    np.testing.assert_allclose(net.layers[0].b, 0.0, atol=1e-14)  # biases stay 0
