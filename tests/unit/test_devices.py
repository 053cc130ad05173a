"""Device physics on the arrays: ideal when off, reproducible draws, every effect on numpy and on
the CuPy stand-in without a device sync, read noise on every read, drift, stuck devices, presets,
and ``lpfa device-response``."""

import dataclasses

import numpy as np
import pytest

from lpfa import config as C
from lpfa.backend import runtime_rng, to_numpy, uniform16
from lpfa.devices import PRESETS, ArrayDevice, describe, response
from lpfa.network import Network
from tests.conftest import batch, small_config

SIZES = (6, 5, 4, 3)

# every effect alone (device units = weight units here)
EFFECTS = {
    "pulsed": {"dw_min": 0.01},
    "asymmetry": {"dw_min": 0.01, "up_down": 0.3},
    "d2d_step": {"dw_min": 0.01, "dw_min_dtod": 0.3},
    "c2c": {"dw_min": 0.01, "dw_min_std": 0.5},
    "pulse_limit": {"dw_min": 0.001, "max_pulses": 3},
    "bounds": {"w_min": -0.3, "w_max": 0.3, "w_min_dtod": 0.2, "w_max_dtod": 0.2},
    "soft_bounds": {"dw_min": 0.01, "w_min": -0.5, "w_max": 0.5, "gamma_up": 1.0,
                    "gamma_down": 1.0, "gamma_up_dtod": 0.1, "gamma_down_dtod": 0.1},
    "program_noise": {"program_noise": 0.05},
    "read_noise": {"read_noise": 0.05},
    "drift": {"drift_nu": 0.05, "drift_nu_dtod": 0.01},
    "stuck_zero": {"stuck_prob": 0.3},
    "stuck_bound": {"stuck_prob": 0.3, "stuck_at": "bound", "w_min": -0.2, "w_max": 0.2},
}  # fmt: skip


def with_devices(cfg, model=None, channel=None):
    dev = lambda d: None if d is None else C.from_dict(C.DeviceConfig, d)  # noqa: E731
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, device=dev(model)),
        channel=dataclasses.replace(cfg.channel, device=dev(channel)),
    )


def trained_weights(cfg, xp=np, steps=4):
    net = Network.build(cfg, xp)
    x, t = batch(xp, cfg.model.sizes, n=20)
    for _ in range(steps):
        net.step(x, t, 0.1)
    fb = [net.channel.feedback[k].C for k in sorted(net.channel.feedback)]
    return [to_numpy(a) for a in (*[layer.W for layer in net.layers], *fb)]


@pytest.mark.parametrize("rule", ["bp", "rbp", "srbp"])
def test_every_effect_none_is_bit_for_bit_the_ideal_step(rule):
    base = small_config(SIZES, rule, seeds=(0, 1))
    ideal = trained_weights(base)
    for got in (
        trained_weights(with_devices(base, {}, {})),
        trained_weights(with_devices(base, {"scale": 3.0}, {"drift_t0": 5.0})),
    ):
        for a, b in zip(ideal, got, strict=True):
            np.testing.assert_array_equal(a, b)


def test_all_none_adaptive_feedback_is_bit_for_bit():
    base = dataclasses.replace(
        small_config(SIZES, "rbp"), channel=C.ChannelConfig(rule=C.Rule.RBP, adapt_lr=0.1)
    )
    for a, b in zip(trained_weights(base), trained_weights(with_devices(base, {}, {})),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)


def test_each_effect_changes_the_run_and_only_when_set():
    base = small_config(SIZES, "rbp")
    ideal = trained_weights(base)
    for name, eff in EFFECTS.items():
        got = trained_weights(with_devices(base, eff, eff))
        assert any(not np.array_equal(a, b) for a, b in zip(ideal, got, strict=True)), name


def _params(net):
    out = []
    for array in net.devices():
        d = array.device
        for attr in ("a", "lnr", "b_max", "b_min", "nu", "stuck", "stuck_value"):
            v = getattr(d, attr, None)
            if v is not None:
                out += [to_numpy(x) for x in (v if isinstance(v, tuple) else (v,))]
        out.append(to_numpy(array.W if hasattr(array, "W") else array.C))
    return out


FULL = {**EFFECTS["soft_bounds"], "dw_min_dtod": 0.3, "up_down": 0.1, "up_down_dtod": 0.05,
        "w_min_dtod": 0.2, "w_max_dtod": 0.2, "program_noise": 0.02, "drift_nu": 0.05,
        "drift_nu_dtod": 0.01, "stuck_prob": 0.1, "stuck_at": "bound"}  # fmt: skip


def test_same_seed_same_device_draws():
    cfg = with_devices(small_config(SIZES, "rbp", seeds=(3, 4)), FULL, FULL)
    a, b = _params(Network.build(cfg, np)), _params(Network.build(cfg, np))
    assert len(a) > 10
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_members_devices_do_not_depend_on_its_ensemble():
    cfg = with_devices(small_config(SIZES, "rbp", seeds=(0, 1)), FULL, FULL)
    alone = _params(Network.build(dataclasses.replace(cfg, seeds=(1,)), np))
    shared = _params(Network.build(dataclasses.replace(cfg, seeds=(7, 1)), np))
    for x, y in zip(alone, shared, strict=True):
        np.testing.assert_array_equal(x[0], y[1])


def test_switching_one_effect_on_leaves_the_other_draws():
    base = small_config(SIZES, "rbp")
    one = Network.build(with_devices(base, {"dw_min": 0.01, "dw_min_dtod": 0.3}), np)
    more = {"dw_min": 0.01, "dw_min_dtod": 0.3, "program_noise": 0.1, "stuck_prob": 0.2}
    two = Network.build(with_devices(base, more), np)
    for la, lb in zip(one.layers, two.layers, strict=True):
        np.testing.assert_array_equal(la.device.a[0], lb.device.a[0])


@pytest.mark.parametrize("effect", sorted(EFFECTS))
def test_every_effect_runs_on_every_backend(xp, effect):
    """numpy and the CuPy stand-in (and CuPy on a GPU): the same device draws (host streams)
    and finite weights after training."""
    cfg = with_devices(small_config(SIZES, "rbp", seeds=(0, 1)), EFFECTS[effect],
                       EFFECTS[effect])  # fmt: skip
    net = Network.build(cfg, xp)
    ref = Network.build(cfg, np)
    for a, b in zip(_params(net), _params(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    got = trained_weights(cfg, xp)
    assert all(np.isfinite(w).all() for w in got)


@pytest.mark.parametrize("effect", sorted(EFFECTS))
@pytest.mark.parametrize("rule", ["bp", "rbp"])
def test_a_step_with_devices_makes_no_device_sync(standin, effect, rule):
    cfg = with_devices(small_config(SIZES, rule, seeds=(0, 1), dtype="float32"),
                       EFFECTS[effect], EFFECTS[effect])  # fmt: skip
    net = Network.build(cfg, standin)
    x, t = batch(standin, SIZES, n=20, dtype="float32")
    net.step(x, t, 0.1)
    standin.counter.reset()
    for _ in range(3):
        net.step(x, t, 0.1, momentum=0.5)
    assert dict(standin.counter.reasons) == {}
    assert standin.counter.to_device == 0


def _noise_var(xp, read):
    """Sample variance of read − ideal read, over many reads."""
    samples = xp.stack([read() for _ in range(400)])
    return float(to_numpy(samples.var(axis=0)).mean())


@pytest.mark.parametrize("kind", ["forward", "transport", "feedback"])
def test_read_noise_on_every_read_has_the_variance_of_noisy_synapses(xp, kind):
    """W + σξ read with x: Var = σ² ‖x‖² on the forward, transposed and feedback reads."""
    sigma = 0.1
    cfg = with_devices(small_config(SIZES, "rbp"), {"read_noise": sigma}, {"read_noise": sigma})
    net = Network.build(cfg, xp)
    rng = np.random.default_rng(0)
    layer, fb = net.layers[1], net.channel.feedback[(2, 1)]
    if kind == "forward":
        x = xp.asarray(rng.standard_normal((1, 3, SIZES[1])))
        ideal = xp.matmul(x, layer.W.transpose(0, 2, 1)) + layer.b[:, None, :]
        var = _noise_var(xp, lambda: layer.read(x) - ideal)
    elif kind == "transport":
        x = xp.asarray(rng.standard_normal((1, 3, SIZES[2])))
        var = _noise_var(xp, lambda: layer.transport(x) - xp.matmul(x, layer.W))
    else:
        x = xp.asarray(rng.standard_normal((1, 3, SIZES[2])))
        var = _noise_var(xp, lambda: fb.read(x) - x @ fb.C)
    want = sigma**2 * float((to_numpy(x) ** 2).sum(axis=-1).mean())
    # the mean of 3 rows' sample variances of 400 reads: relative sd about sqrt(2/400/3)
    assert abs(var - want) <= 4 * want * np.sqrt(2 / 400 / 3) * 2


def test_observing_does_not_consume_the_read_noise_stream():
    cfg = with_devices(small_config(SIZES, "rbp"), {"read_noise": 0.1, "dw_min": 0.01},
                       {"read_noise": 0.1})  # fmt: skip
    x, t = batch(np, SIZES, n=20)
    a, b = Network.build(cfg, np), Network.build(cfg, np)
    with b.observing():
        b.forward(x)
    a.step(x, t, 0.1)
    b.step(x, t, 0.1)
    for la, lb in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(la.W, lb.W)


def test_drift_follows_the_power_law():
    nu, t0 = 0.1, 2.0
    cfg = with_devices(small_config(SIZES, "rbp"), {"drift_nu": nu, "drift_t0": t0})
    net = Network.build(cfg, np)
    W0 = [layer.W.copy() for layer in net.layers]
    x, t = batch(np, SIZES, n=20)
    steps = 10
    for _ in range(steps):
        net.step(x, t, 1e-300)  # no learning to speak of: the drift alone
    for w0, layer in zip(W0, net.layers, strict=True):
        np.testing.assert_allclose(layer.W, w0 * ((steps + t0) / t0) ** -nu, rtol=1e-9)


@pytest.mark.parametrize("where", ["zero", "bound"])
def test_stuck_devices_never_move(where):
    eff = {"stuck_prob": 0.4, "stuck_at": where, "w_min": -0.2, "w_max": 0.3}
    net = Network.build(with_devices(small_config(SIZES, "rbp"), eff, eff), np)
    stuck = [to_numpy(layer.device.stuck).astype(bool) for layer in net.layers]
    values = [to_numpy(layer.device.stuck_value) for layer in net.layers]
    frac = np.mean(np.concatenate([s.ravel() for s in stuck]))
    assert 0.25 < frac < 0.55  # 77 devices at p = 0.4
    x, t = batch(np, SIZES, n=20)
    for _ in range(5):
        net.step(x, t, 0.5)
    for layer, s, v in zip(net.layers, stuck, values, strict=True):
        np.testing.assert_array_equal(layer.W[s], v[s])
        if where == "bound":
            assert set(np.unique(np.round(v[s], 12))) <= {-0.2, 0.3}


def test_programming_noise_has_its_standard_deviation():
    cfg = with_devices(small_config((300, 200, 3), "bp"), {"program_noise": 0.05})
    noisy = Network.build(cfg, np).layers[0].W
    ideal = Network.build(small_config((300, 200, 3), "bp"), np).layers[0].W
    sd = float((noisy - ideal).std())
    assert abs(sd - 0.05) < 5 * 0.05 / np.sqrt(2 * noisy.size)


def test_presets_cite_their_source_and_print_their_states():
    for name, p in PRESETS.items():
        assert len(p["source"]) > 40, name
        cfg = C.DeviceConfig(preset=name)
        assert cfg.states == pytest.approx((cfg.w_max - cfg.w_min) / cfg.dw_min)
        assert f"{cfg.states:.0f} states" in describe(cfg)
    gv = C.DeviceConfig(preset="gokmen2016_rpu")
    assert 1000 <= gv.states <= 1300
    assert gv.dw_min_dtod == 0.3
    assert C.DeviceConfig(preset="gokmen2016_rpu", dw_min=0.01).dw_min == 0.01  # fields win


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"dw_min_std": 0.3}, "dw_min_std"),
        ({"w_max": 1.0}, "w_min"),
        ({"dw_min": 0.01, "gamma_up": 1.0, "gamma_down": 1.0}, "gamma_up"),
        ({"stuck_prob": 0.1, "stuck_at": "bound"}, "stuck_at"),
        ({"preset": "nope"}, "preset"),
        ({"dw_min": -1.0}, "dw_min"),
        ({"stuck_prob": 1.5}, "stuck_prob"),
    ],
)
def test_config_errors_name_the_field(fields, path):
    with pytest.raises(C.ConfigError, match=rf"^model\.device\.{path}="):
        C.from_dict(C.RunConfig, {"model": {"device": fields}})


def test_device_config_round_trips_through_toml_dict():
    cfg = with_devices(small_config(SIZES, "rbp"), FULL, {"read_noise": 0.01})
    again = C.from_dict(C.RunConfig, C.to_dict(cfg))
    assert again == cfg


def test_response_curve_saturates_with_soft_bounds():
    cfg = C.DeviceConfig(preset="reram_gong2018", dw_min_std=0.0, dw_min_dtod=0.0,
                         w_min_dtod=0.0, w_max_dtod=0.0, up_down_dtod=0.0)  # fmt: skip
    w = response(cfg, n_pulses=3000, n_devices=2)
    assert w.shape == (6001, 2)
    assert w[3000].max() == pytest.approx(1.25, rel=0.02)  # up to the soft bound
    assert w[-1].min() == pytest.approx(-0.75, rel=0.02)
    assert np.all(np.diff(w[:3001], axis=0) >= 0)


def test_runtime_rng_feeds_the_pulse_rounding():
    dev = ArrayDevice(C.DeviceConfig(dw_min=1.0), (1, 1, 5), [0], (0, 1), "float64", np,
                      runtime_rng(0, np))  # fmt: skip
    W = np.zeros((1, 1, 5))
    dev.write(W, np.full_like(W, 0.5))
    want = np.floor(0.5 + uniform16(runtime_rng(0, np), (1, 1, 5), np.float64, np))
    np.testing.assert_array_equal(W, want)


def test_the_audit_counts_pulses_and_prices_them():
    from hwmodels.audit import audit
    from hwmodels.energy import TechTable

    base = small_config((20, 8, 6, 4), "rbp", dtype="float32")
    pulsed = with_devices(base, {"dw_min": 0.001}, {"dw_min": 0.001, "read_noise": 0.01})
    pulsed = dataclasses.replace(pulsed, channel=dataclasses.replace(pulsed.channel, adapt_lr=0.5))
    ideal, got = audit(base, source="random"), audit(pulsed, source="random")
    assert ideal.pulses_per_step == {}
    assert set(got.pulses_per_step) == {"W1", "W2", "W3", "C2→1", "C3→2"}
    assert all(n > 0 for n in got.pulses_per_step.values())
    pj = TechTable.load().entries["device.pj_per_pulse"]
    w = sum(n for k, n in got.pulses_per_step.items() if k.startswith("W"))
    assert got.energy_terms["update"]["device.pj_per_pulse"] == w
    doubled = audit(pulsed, source="random", tech=TechTable.load().replace(
        device__pj_per_pulse=2 * pj))  # fmt: skip
    total = sum(got.pulses_per_step.values())
    assert doubled.energy_per_step["total"] - got.energy_per_step["total"] == pytest.approx(
        total * pj * 1e-12, rel=1e-6
    )
