"""The expected (mean-field) dynamics: exact moments, the simulator's own update, refusals."""

import numpy as np
import pytest

from lpfa import config as C
from lpfa.config import ConfigError
from lpfa.dynamics import ExpectedDynamics, moment_design
from lpfa.network import Network


def linear_net(sizes=(3, 4, 2), rule="rbp", seeds=(0,), **channel):
    cfg = C.from_dict(
        C.RunConfig,
        {
            "seeds": list(seeds),
            "data": {"name": "linear-teacher"},
            "model": {
                "sizes": list(sizes),
                "hidden": "linear",
                "output": "linear",
                "loss": "squared",
                "dtype": "float64",
            },
            "channel": {"rule": rule, **channel},
        },
    )
    return Network.build(cfg)


def moments(n_in=3, n_out=2, seed=1):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n_in, n_in))
    sxx = A @ A.T / n_in + 0.2 * np.eye(n_in)
    return sxx, rng.standard_normal((n_out, n_in))


def test_the_design_has_exactly_the_requested_moments():
    sxx, stx = moments(4, 3)
    X, T = moment_design(sxx, stx)
    assert X.shape == (5, 4)
    assert T.shape == (5, 3)
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-13)
    np.testing.assert_allclose(X.T @ X / len(X), sxx, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(T.T @ X / len(X), stx, rtol=1e-12, atol=1e-12)


def test_a_scalar_design_is_baldis_alpha_and_beta():
    X, T = moment_design(2.0, 0.5)  # β = E[I²] = 2, α = E[T I] = 0.5
    assert X.shape == (2, 1)
    assert np.mean(X * X) == pytest.approx(2.0)
    assert np.mean(T * X) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("sxx", "stx", "message"),
    [
        (np.array([[1.0, 2.0], [0.0, 1.0]]), np.ones((1, 2)), "symmetric"),
        (np.array([[1.0, 0.0], [0.0, -1.0]]), np.ones((1, 2)), "positive semi-definite"),
        (np.eye(2), np.ones((1, 3)), "sigma_tx.shape"),
    ],
)
def test_a_bad_moment_is_refused_by_name(sxx, stx, message):
    with pytest.raises(ValueError, match=message):
        moment_design(sxx, stx)


@pytest.mark.parametrize(
    ("rule", "channel"),
    [("bp", {}), ("rbp", {}), ("srbp", {}), ("rbp", {"adapt_lr": 0.5}), ("sbp", {})],
)
def test_the_ode_right_hand_side_is_the_mean_of_the_simulated_updates(rule, channel):
    """E[Δθ] from the design equals the average of many minibatch updates drawn from the input
    distribution at the same weights, within 5 standard errors of that average; the ODE and the
    simulator cannot use different update formulas."""
    sizes = (3, 4, 4, 2)
    net = linear_net(sizes, rule, seeds=(0, 1), **channel)
    sxx, stx = moments(3, 2)
    ed = ExpectedDynamics(net, *moment_design(sxx, stx), weight_decay=0.01)
    for layer in net.layers:  # biases away from 0, so their terms are tested too
        layer.b[...] = 0.3
    y0 = ed.state()
    drift = ed.rhs(0.0, y0)

    rng = np.random.default_rng(7)
    M = stx @ np.linalg.inv(sxx)
    root = np.linalg.cholesky(sxx)
    K, B = 400, 25
    samples = np.empty((K, y0.size))
    for i in range(K):
        x = rng.standard_normal((B, 3)) @ root.T
        ed.set_state(y0)
        net.step(x, x @ M.T, 1.0, weight_decay=0.01)
        samples[i] = ed.state() - y0
    mean, se = samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(K)
    assert np.all(np.abs(mean - drift) <= 5 * se + 1e-12)
    # the test has power: the other rule's drift is far outside the same band
    other = linear_net(sizes, "rbp" if rule in ("bp", "sbp") else "bp", seeds=(0, 1))
    other_ed = ExpectedDynamics(other, *moment_design(sxx, stx), weight_decay=0.01)
    other_drift = other_ed.rhs(0.0, y0[: other_ed.size])
    n = other_ed.size
    assert np.mean(np.abs(mean[:n] - other_drift) > 5 * se[:n]) > 0.2


def test_bp_flows_to_the_least_squares_map():
    sxx, stx = moments(3, 2)
    net = linear_net((3, 5, 2), "bp")
    ed = ExpectedDynamics(net, *moment_design(sxx, stx))
    traj = ed.solve(400.0, t_eval=[0.0, 400.0])
    assert traj.success
    w = ed.unpack(traj.y[-1])
    P = w["W2"][0] @ w["W1"][0]
    np.testing.assert_allclose(P, stx @ np.linalg.inv(sxx), atol=1e-6)
    np.testing.assert_allclose(w["b2"][0] + w["W2"][0] @ w["b1"][0], 0.0, atol=1e-6)
    assert ed.loss()[0] < ed.loss(traj.y[0])[0]


def test_members_are_independent_systems():
    sxx, stx = moments(3, 2)
    both = ExpectedDynamics(linear_net(seeds=(0, 1)), *moment_design(sxx, stx))
    alone = ExpectedDynamics(linear_net(seeds=(1,)), *moment_design(sxx, stx))
    yb = both.solve(3.0).y[-1]
    ya = alone.solve(3.0).y[-1]
    got = both.unpack(yb)
    for name, value in alone.unpack(ya).items():
        np.testing.assert_allclose(got[name][1:], value, rtol=1e-6, atol=1e-8)


def test_an_euler_step_is_one_full_batch_update_and_leaves_the_state_in_the_net():
    sxx, stx = moments(3, 2)
    net = linear_net()
    X, T = moment_design(sxx, stx)
    ed = ExpectedDynamics(net, X, T)
    y0 = ed.state()
    y1 = ed.step(0.1)
    np.testing.assert_allclose(y1, y0 + 0.1 * ed.rhs(0.0, y0), rtol=1e-10, atol=1e-14)
    ed.set_state(y1)
    assert np.array_equal(ed.unpack(y1)["W1"], net.layers[0].W)


def test_per_layer_weight_decay_decays_only_the_named_array():
    sxx, stx = moments(3, 2)
    net = linear_net(rule="bp")
    plain = ExpectedDynamics(net, *moment_design(sxx, stx))
    decayed = ExpectedDynamics(net, *moment_design(sxx, stx), weight_decay=[0.0, 0.5])
    y = plain.state()
    diff = plain.unpack(decayed.rhs(0.0, y) - plain.rhs(0.0, y))
    w = plain.unpack(y)
    np.testing.assert_allclose(diff["W1"], 0.0, atol=1e-14)
    np.testing.assert_allclose(diff["W2"], -0.5 * w["W2"], rtol=1e-10)
    with pytest.raises(ValueError, match="one per array"):
        net.step(*moment_design(sxx, stx), 1.0, weight_decay=[0.1])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"channel": {"dropout": 0.1}}, "channel.dropout"),
        ({"channel": {"resample": True}}, "channel.resample"),
        ({"channel": {"rule": "node_perturbation"}}, "channel.rule"),
        ({"model": {"dtype": "float32"}}, "model.dtype"),
        (
            {"channel": {"error_format": "log:bits=3,alpha=0.125", "rounding": "stochastic"}},
            "channel.rounding",
        ),
    ],
)
def test_what_has_no_deterministic_dynamics_is_refused_by_field(overrides, field):
    model = {"sizes": [3, 4, 2], "hidden": "linear", "output": "linear", "loss": "squared"}
    model["dtype"] = "float64"
    model.update(overrides.get("model", {}))
    channel = {"rule": "rbp", **overrides.get("channel", {})}
    cfg = C.from_dict(
        C.RunConfig,
        {"data": {"name": "linear-teacher"}, "model": model, "channel": channel},
    )
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        ExpectedDynamics(Network.build(cfg), *moment_design(np.eye(3), np.ones((2, 3))))
