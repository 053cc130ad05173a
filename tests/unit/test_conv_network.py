"""Conv nets built from a config: RBP with C = W is BP to the bit through the whole network, BP is
the gradient of the network's loss, members are single runs, a tiny conv net learns with bp, rbp
and srbp, the config says what it refuses, and Baldi et al.'s CIFAR-10 net runs end to end."""

import dataclasses

import numpy as np
import pytest

from lpfa import config as C
from lpfa import data
from lpfa.backend import to_numpy
from lpfa.conv import ConvArray, ConvFeedback, MapFeedback
from lpfa.metrics import loss
from lpfa.network import Network
from lpfa.training import train
from tests.unit.test_cifar import batches, home, put, python_archive  # noqa: F401 (a fixture)

# 1×8×8 → conv 3×3 same (4 ch) → pool 2 → 4×4 → conv 3×3 valid, stride 1 (5 ch) → 2×2, no pool
# → conv 2×2 pad 1, overlapping pool 2 stride 1 "same" → dense 7 → 3
CONV = (
    C.ConvLayerConfig(channels=4, kernel=3, pool_kernel=2),
    C.ConvLayerConfig(channels=5, kernel=3, padding="valid"),
    C.ConvLayerConfig(
        channels=3, kernel=2, padding=1, pool_kernel=2, pool_stride=1, pool_padding="same"
    ),
)
FLAT = 3 * 3 * 3


def conv_config(rule="bp", *, seeds=(0,), dtype="float64", conv=CONV, flat=FLAT, **channel):
    return C.RunConfig(
        seeds=seeds,
        data=C.DataConfig(name="linear-teacher", n_train=64, n_test=16),
        model=C.ModelConfig(input_shape=(1, 8, 8), conv=conv, sizes=(flat, 7, 3), dtype=dtype),
        channel=C.ChannelConfig(rule=C.Rule(rule), **channel),
        train=C.TrainConfig(epochs=1, batch_size=8, lr=0.1, angle_every=None),
    )


def images(xp, n=6, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 64)).astype(dtype)
    t = np.eye(3, dtype=dtype)[rng.integers(0, 3, n)]
    return xp.asarray(x), xp.asarray(t)


def params(net):
    return [to_numpy(a.W).copy() for a in net.layers] + [to_numpy(a.b).copy() for a in net.layers]


def test_config_builds_conv_arrays_with_the_fan_in_of_a_kernel_bank(xp):
    net = Network.build(conv_config(seeds=(0, 1)), xp)
    assert net.n_conv == 3
    assert [type(a) for a in net.layers[:3]] == [ConvArray] * 3
    assert [a.W.shape for a in net.layers] == [(2, 4, 9), (2, 5, 36), (2, 3, 20), (2, 7, 27),
                                               (2, 3, 7)]  # fmt: skip
    assert [a.out_shape for a in net.layers[:3]] == [(4, 8, 8), (5, 2, 2), (3, 3, 3)]
    assert [p and p.out_shape for p in net.pools] == [(4, 4, 4), None, (3, 3, 3)]
    # glorot_normal on (C_out, C_in·k·k): variance 2 / (fan_in + fan_out), as a dense array
    big = conv_config(conv=(C.ConvLayerConfig(channels=64, kernel=5),), flat=64 * 64)
    W = to_numpy(Network.build(big, xp).layers[0].W)
    assert W.std() == pytest.approx(np.sqrt(2 / (25 + 64)), rel=0.05)
    outs = net.forward(images(xp)[0])
    assert [o.shape for o in outs] == [(6, 1, 8, 8), (2, 6, 4, 4, 4), (2, 6, 5, 2, 2),
                                       (2, 6, 3, 3, 3), (2, 6, 7), (2, 6, 3)]  # fmt: skip


def copy_weights_into_feedback(net):
    """C = W for every connection of an RBP channel (a kernel bank for a conv sender)."""
    for (k, h), fb in net.channel.feedback.items():
        if h <= net.n_conv:
            assert isinstance(fb, ConvFeedback if k <= net.n_conv else MapFeedback)
        fb.C[...] = net.layers[k - 1].W


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv_rbp_with_feedback_equal_to_forward_weights_is_bp_bit_for_bit(xp, dtype):
    bp = Network.build(conv_config("bp", seeds=(0, 1), dtype=dtype), xp)
    fa = Network.build(conv_config("rbp", seeds=(0, 1), dtype=dtype), xp)
    x, t = images(xp, dtype=dtype)
    for _ in range(3):  # stays equal step after step
        copy_weights_into_feedback(fa)
        bp.step(x, t, 0.1, momentum=0.5)
        fa.step(x, t, 0.1, momentum=0.5)
    for a, b in zip(params(bp), params(fa), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(params(bp)[0], to_numpy(Network.build(conv_config(), xp).layers[0].W))


@pytest.mark.parametrize("hidden", ["tanh", "relu"])
def test_conv_bp_equals_finite_differences_of_the_network_loss(xp, hidden):
    cfg = conv_config()
    model = dataclasses.replace(cfg.model, hidden=C.Activation(hidden))
    cfg = dataclasses.replace(cfg, model=model)
    net = Network.build(cfg, xp)
    x, t = images(xp)
    rng = np.random.default_rng(42)
    ps = [a.W for a in net.layers] + [a.b for a in net.layers]
    direction = [xp.asarray(rng.standard_normal(p.shape)) for p in ps]

    def objective(eps):
        for p, d in zip(ps, direction, strict=True):
            p += eps * d
        value = float(to_numpy(loss(net.forward(x)[-1], t, C.Loss.CROSS_ENTROPY))[0])
        for p, d in zip(ps, direction, strict=True):
            p -= eps * d
        return value

    eps = 1e-6
    numeric = (objective(eps) - objective(-eps)) / (2 * eps)
    before = [to_numpy(p).copy() for p in ps]
    lr = 1e-3
    net.step(x, t, lr)
    analytic = (
        -sum(
            float(((to_numpy(p) - b) * to_numpy(d)).sum())
            for p, b, d in zip(ps, before, direction, strict=True)
        )
        / lr
    )
    assert abs(numeric) > 1e-3
    assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("rule", ["bp", "rbp", "srbp"])
def test_members_are_single_runs(xp, rule):
    both = Network.build(conv_config(rule, seeds=(3, 4)), xp)
    one = Network.build(conv_config(rule, seeds=(4,)), xp)
    x, t = images(xp)
    for _ in range(2):
        both.step(x, t, 0.1)
        one.step(x, t, 0.1)
    for a, b in zip(params(both), params(one), strict=True):
        np.testing.assert_allclose(a[1], b[0], rtol=1e-12, atol=1e-14)


def test_srbp_sends_the_output_error_onto_each_conv_layers_pooled_maps(xp):
    net = Network.build(conv_config("srbp", seeds=(0, 1)), xp)
    fb = net.channel.feedback
    assert sorted(fb) == [(5, 1), (5, 2), (5, 3), (5, 4)]
    assert fb[(5, 1)].C.shape == (2, 3, 4 * 4 * 4)  # post-pool: 4 channels of 4×4
    assert fb[(5, 2)].C.shape == (2, 3, 5 * 2 * 2)
    assert all(isinstance(fb[(5, h)], MapFeedback) for h in (1, 2, 3))
    # R^1 by hand: e C onto the pooled maps, routed to each window's maximum, times f′
    x, t = images(xp)
    outs = net.forward(x)
    deltas = net.deltas(outs, t)
    e = t - outs[-1]
    J = net.to_maps(1, e @ fb[(5, 1)].C)
    _, arg = net._pooling(1, outs[1])
    A = net._pooling(1, outs[1])[0]
    ref = net.pools[0].backward(J, arg) * (1 - A * A)
    np.testing.assert_allclose(to_numpy(deltas[0]), to_numpy(ref), rtol=1e-12)
    assert deltas[0].shape == (2, 6, 4, 8, 8)


@pytest.mark.parametrize("rule", ["bp", "rbp", "srbp"])
def test_a_tiny_conv_net_learns(xp, rule):
    cfg = conv_config(rule, seeds=(0, 1))
    net = Network.build(cfg, xp)
    x, t = images(xp, n=16, seed=1)
    first = to_numpy(net.example_loss(net.forward(x)[-1], t).mean(axis=1))
    for _ in range(60):
        net.step(x, t, 0.3)
    last = to_numpy(net.example_loss(net.forward(x)[-1], t).mean(axis=1))
    assert (last < 0.5 * first).all()


@pytest.mark.parametrize(
    "channel",
    [
        {"fprime": False},
        {"dropout": 0.3},
        {"error_format": "log:bits=3,alpha=0.125"},
        {"backward": "tanh"},
        {"feedback": "bernoulli", "feedback_nonzeros": 2.0},
        {"adapt_lr": 0.1},
        {"congruent": True},
    ],
)
def test_channel_variants_run_through_conv_layers(xp, channel):
    kw = {k: (C.Backward(v) if k == "backward" else C.Dist(v) if k == "feedback" else v)
          for k, v in channel.items()}  # fmt: skip
    for rule in ("rbp",) if "congruent" in channel else ("rbp", "srbp"):
        net = Network.build(conv_config(rule, seeds=(0, 1), **kw), xp)
        x, t = images(xp)
        before = params(net)
        net.step(x, t, 0.1)
        after = params(net)
        assert all(np.isfinite(a).all() for a in after)
        assert not np.array_equal(before[0], after[0])  # the lowest conv layer learned


def test_no_fprime_leaves_the_routed_signal_unscaled(xp):
    net = Network.build(conv_config("srbp", fprime=False), xp)
    x, t = images(xp)
    outs = net.forward(x)
    d = net.deltas(outs, t)[0]
    e = t - outs[-1]
    J = net.to_maps(1, e @ net.channel.feedback[(5, 1)].C)
    _, arg = net._pooling(1, outs[1])
    np.testing.assert_allclose(to_numpy(d), to_numpy(net.pools[0].backward(J, arg)), rtol=1e-12)


@pytest.mark.parametrize(
    ("model", "field", "words"),
    [
        ({"conv": CONV}, "input_shape", "conv layers need the input's (C, H, W)"),
        ({"input_shape": (1, 8), "conv": CONV}, "input_shape", "must be (C, H, W)"),
        ({"input_shape": (1, 8, 8), "conv": CONV, "sizes": (30, 3)}, "sizes", f"= {FLAT} of"),
        ({"input_shape": (1, 8, 8), "sizes": (60, 3)}, "sizes", "= 64 of input_shape"),
        (
            {
                "input_shape": (1, 4, 4),
                "conv": (C.ConvLayerConfig(channels=2, kernel=5, padding="valid"),),
            },
            "conv[0].kernel",
            "does not fit the 4x4 maps",
        ),
    ],
)
def test_model_config_errors_name_the_field_and_the_right_number(model, field, words):
    with pytest.raises(C.ConfigError) as err:
        C.ModelConfig(**{"sizes": (27, 3), **model})
    assert err.value.path == field
    assert words in str(err.value)


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"channels": 0, "kernel": 3}, "channels"),
        ({"channels": 2, "kernel": 3, "padding": "full"}, "padding"),
        ({"channels": 2, "kernel": 3, "padding": -1}, "padding"),
        ({"channels": 2, "kernel": 3, "pool_stride": 2}, "pool_stride"),
        ({"channels": 2, "kernel": 3, "pool_kernel": 2, "pool_padding": "x"}, "pool_padding"),
    ],
)
def test_conv_layer_table_errors(table, field):
    with pytest.raises(C.ConfigError) as err:
        C.from_dict(C.ModelConfig, {"input_shape": [1, 8, 8], "sizes": [4, 3], "conv": [table]})
    assert err.value.path == f"conv[0].{field}"


@pytest.mark.parametrize(
    ("channel", "field"),
    [
        ({"rule": C.Rule.PBP}, "channel.rule"),
        ({"rule": C.Rule.NODE_PERTURBATION}, "channel.rule"),
        ({"rule": C.Rule.SBP}, "channel.rule"),
        ({"rule": C.Rule.SRBP, "per_weight": True}, "channel.per_weight"),
        ({"rule": C.Rule.RBP, "feedback_rank": 2}, "channel.feedback_rank"),
        ({"rule": C.Rule.RBP, "resample": True}, "channel.resample"),
        ({"rule": C.Rule.BP, "update_format": "log:bits=3,alpha=0.01"}, "channel.update_format"),
    ],
)
def test_what_does_not_apply_to_conv_layers_is_refused(channel, field):
    cfg = conv_config()
    with pytest.raises(C.ConfigError) as err:
        dataclasses.replace(cfg, channel=C.ChannelConfig(**channel))
    assert err.value.path == field
    assert "conv" in str(err.value)


def test_padding_is_written_as_a_word_or_an_integer_in_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[data]\nname = "linear-teacher"\n[model]\ninput_shape = [1, 8, 8]\nsizes = [27, 7, 3]\n'
        "[[model.conv]]\nchannels = 4\nkernel = 3\npool_kernel = 2\n"
        '[[model.conv]]\nchannels = 5\nkernel = 3\npadding = "valid"\n'
        "[[model.conv]]\nchannels = 3\nkernel = 2\npadding = 1\npool_kernel = 2\npool_stride = 1\n"
        'pool_padding = "same"\n'
    )
    assert C.load(path).model.conv == CONV


def test_cifar10_data_needs_3072_inputs_as_3x32x32():
    model = C.ModelConfig(input_shape=(1, 8, 8), conv=CONV, sizes=(FLAT, 7, 10))
    with pytest.raises(C.ConfigError) as err:
        C.RunConfig(data=C.DataConfig(name="cifar10"), model=model)
    assert err.value.path == "model.input_shape"
    assert "(3, 32, 32)" in str(err.value)
    with pytest.raises(C.ConfigError) as err:
        C.RunConfig(data=C.DataConfig(name="cifar10"), model=C.ModelConfig(sizes=(784, 10)))
    assert "3072 inputs" in str(err.value)
    C.RunConfig(data=C.DataConfig(name="cifar10"), model=C.ModelConfig(sizes=(3072, 10)))


def test_baldis_cifar10_net_runs_end_to_end_on_generated_archives(home, monkeypatch):  # noqa: F811
    put(home, monkeypatch, "cifar-10-python.tar.gz", python_archive(batches(n=2)))
    cfg = C.load("configs/baldi2018_cifar10.toml")
    assert cfg.model.layer_sizes == (3072, 64 * 16 * 16, 64 * 8 * 8, 1024, 1024, 10)
    tc = cfg.train
    assert (tc.batch_size, tc.momentum, tc.lr, tc.lr_decay, tc.augment_shift, tc.augment_flip) == (
        128, 0.9, 0.01, 1e-5, 0.1, True
    )  # fmt: skip
    for rule in ("bp", "srbp"):
        small = dataclasses.replace(
            cfg,
            seeds=(0,),
            channel=dataclasses.replace(cfg.channel, rule=C.Rule(rule)),
            train=dataclasses.replace(cfg.train, epochs=1, batch_size=4),
        )
        result = train(small, progress=False)
        rows = [r for r in result.history if r["epoch"] == 1]
        assert np.isfinite(rows[0]["train_loss"])
        assert np.isfinite(rows[0]["test_loss"])
        assert result.network.layers[0].W.shape == (1, 64, 75)


def test_the_fashion_mnist_conv_config_is_valid():
    cfg = C.load("configs/conv_fashion_mnist.toml")
    assert cfg.model.layer_sizes == (784, 16 * 14 * 14, 32 * 7 * 7, 100, 10)
    assert data.split_sizes(cfg.data) == (60_000, 10_000)


def test_the_audit_sees_weight_transport_through_conv_and_counts_every_position():
    from hwmodels import audit

    conv = (C.ConvLayerConfig(channels=2, kernel=3, pool_kernel=2),
            C.ConvLayerConfig(channels=3, kernel=3))  # fmt: skip
    # 1×8×8 → 2×8×8 → pool → 2×4×4 → 3×4×4 (48) → 5 → 3
    base = conv_config(conv=conv, flat=48)
    runs = {}
    for rule in ("bp", "rbp", "srbp"):
        cfg = dataclasses.replace(base, channel=C.ChannelConfig(rule=C.Rule(rule)))
        runs[rule] = audit(cfg, rule, source="random")
    assert runs["bp"].verdict == "non-local"
    assert "weight transport" in runs["bp"].offenses[0]
    assert runs["rbp"].verdict == runs["srbp"].verdict == "local"
    # the forward read: every kernel at every position (2·9·64 + 3·18·16), then 48·7 + 7·3
    per_example = 2 * 9 * 64 + 3 * 18 * 16 + 48 * 7 + 7 * 3
    assert runs["bp"].ops["forward"]["macs"] == per_example * base.train.batch_size
    # RBP's channel: the kernel bank C^{2→1} read back at each of the 16 positions of conv 2,
    # C^{3→2} (7 × 48) and C^{4→3} (3 × 7); its synapses are the kernel bank's 3·18
    assert runs["rbp"].channel_macs_per_example == 3 * 18 * 16 + 7 * 48 + 3 * 7
    assert runs["rbp"].channel.synapses == 3 * 18 + 7 * 48 + 3 * 7
    # SRBP: the output's 3 units onto the pooled maps of each layer (32, 48, 7 units)
    assert runs["srbp"].channel.synapses == 3 * (32 + 48 + 7)


def test_augmentation_moves_by_whole_pixels_repeating_the_edge_and_flips(xp):
    from lpfa.training import augment

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2 * 5 * 10))
    img = x.reshape(40, 2, 5, 10)

    class Draws:  # records the uniforms the augmentation asked for
        def __init__(self):
            self.g, self.drawn = np.random.default_rng(1), []

        def random(self, n):
            self.drawn.append(self.g.random(n))
            return xp.asarray(self.drawn[-1])

    draws = Draws()
    out = to_numpy(augment(xp.asarray(x), (2, 5, 10), 0.2, True, draws)).reshape(40, 2, 5, 10)
    dy = np.floor(draws.drawn[0] * 3).astype(int) - 1  # ⌊0.2·5⌋ = 1 row
    dx = np.floor(draws.drawn[1] * 5).astype(int) - 2  # ⌊0.2·10⌋ = 2 columns
    flipped = draws.drawn[2] < 0.5
    assert set(dy) == {-1, 0, 1}
    assert set(dx) == {-2, -1, 0, 1, 2}
    assert 0 < flipped.sum() < 40
    for b in range(40):
        rows = np.clip(np.arange(5) - dy[b], 0, 4)
        cols = np.clip(np.arange(10) - dx[b], 0, 9)
        ref = img[b][:, rows][:, :, cols]
        np.testing.assert_array_equal(out[b], ref[:, :, ::-1] if flipped[b] else ref)
    same = augment(xp.asarray(x), (2, 5, 10), 0.0, False, None)
    np.testing.assert_array_equal(to_numpy(same), x)


def test_augmentation_needs_images_and_runs_in_the_loop():
    cfg = conv_config()
    with pytest.raises(C.ConfigError) as err:
        C.RunConfig(train=C.TrainConfig(augment_flip=True))
    assert err.value.path == "train.augment_flip"
    aug = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, augment_shift=0.1,
                                                             augment_flip=True))  # fmt: skip
    ds = data.Dataset("images", *images(np, n=16), None, *images(np, n=8, seed=2), None)
    a, b, plain = (train(c, data=ds, progress=False) for c in (aug, aug, cfg))
    wa, wb, wp = (params(r.network) for r in (a, b, plain))
    assert all(np.array_equal(p, q) for p, q in zip(wa, wb, strict=True))  # from the run's seeds
    assert not np.array_equal(wa[0], wp[0])  # the images moved


def test_feedback_from_init_is_the_initial_kernel_bank_so_the_first_step_is_bp(xp):
    fa = Network.build(conv_config("rbp", seeds=(0, 1), feedback_from_init=True), xp)
    bp = Network.build(conv_config("bp", seeds=(0, 1)), xp)
    for (k, _h), fb in fa.channel.feedback.items():
        np.testing.assert_array_equal(to_numpy(fb.C), to_numpy(fa.layers[k - 1].W))
    x, t = images(xp)
    fa.step(x, t, 0.1)
    bp.step(x, t, 0.1)
    for a, b in zip(params(fa), params(bp), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("rule", "channel"),
    [
        ("rbp", {"track_signs": True}),
        ("rbp", {"adapt_lr": 1.0, "feedback_decay": 0.01}),
        ("mixed", {"skip_layers": (1,)}),
        ("srbp", {"top_feedback": True}),
        ("drtp", {}),
        ("srbp", {"error_signal": C.Signal.SIGN}),
    ],
)
def test_more_channel_settings_run_through_conv_layers(rule, channel):
    net = Network.build(conv_config(rule, seeds=(0, 1), **channel), np)
    x, t = images(np)
    before = params(net)
    net.step(x, t, 0.1)
    assert all(not np.array_equal(a, b) for a, b in zip(before, params(net), strict=True))
    if channel.get("track_signs"):  # C took the signs W^k had before the step
        fb = net.channel.feedback[(2, 1)]
        nz = fb.C != 0
        np.testing.assert_array_equal(np.sign(fb.C)[nz], np.sign(before[1])[nz])
    if rule == "mixed":  # layer 1 hears the output through its maps, layer 2 the chain
        assert isinstance(net.channel.feedback[(5, 1)], MapFeedback)
        assert isinstance(net.channel.feedback[(3, 2)], ConvFeedback)


def test_device_physics_on_conv_arrays_and_their_feedback():
    d = C.DeviceConfig(preset="gokmen2016_rpu")
    cfg = conv_config("rbp", seeds=(0, 1))
    for which in ("model", "channel"):
        part = dataclasses.replace(getattr(cfg, which), device=d)
        net = Network.build(dataclasses.replace(cfg, **{which: part}), np)
        assert net.devices()  # the arrays carry their devices
        x, t = images(np)
        before = params(net)
        net.step(x, t, 0.1)
        assert all(np.isfinite(a).all() for a in params(net))
        assert not np.array_equal(before[0], params(net)[0])


def test_a_conv_net_is_evaluated_in_chunks_that_bound_its_feature_maps():
    from lpfa.training import EVAL_MEMORY, _eval_chunk, evaluate

    cifar = C.load("configs/baldi2018_cifar10.toml")  # 5 members, 64 × 32 × 32 maps
    m = cifar.model
    small = dataclasses.replace(m, conv=m.conv[:1], input_shape=m.input_shape, sizes=(16384, 10))
    net = Network.build(dataclasses.replace(cifar, model=small))
    chunk = _eval_chunk(net)
    assert chunk >= 1
    assert chunk * 5 * 64 * 32 * 32 * 4 <= EVAL_MEMORY  # the 5 members' unpooled maps fit
    tiny = Network.build(conv_config(seeds=(0, 1)))
    x, t = images(np, n=10)
    labels = t.argmax(axis=1)
    whole = evaluate(tiny, x, t, labels, C.Loss.CROSS_ENTROPY)
    parts = evaluate(tiny, x, t, labels, C.Loss.CROSS_ENTROPY, chunk=3)
    for key in whole:
        np.testing.assert_allclose(parts[key], whole[key], rtol=1e-12)
