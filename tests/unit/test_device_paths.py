"""The CuPy code path of every rule, channel variant and number format, against numpy.

Each test runs one body on numpy and on a device backend (the CPU stand-in for CuPy on every run,
CuPy itself where a GPU is present) and compares: bit for bit where the computation is
deterministic, by statistics where it draws runtime noise (the two backends have different
random streams). The last tests count device syncs: none inside a training step.
"""

import dataclasses

import numpy as np
import pytest

from lpfa import config as C
from lpfa.alignment import alignment
from lpfa.backend import runtime_rng, to_numpy
from lpfa.network import Network
from lpfa.quant import (
    BF16,
    FP8_E4M3,
    FP8_E5M2,
    FP16,
    DynamicScale,
    FixedPoint,
    LogFormat,
    Minifloat,
    Sign,
    Ternary,
    quantize,
)
from lpfa.training import train
from tests import cupy_standin
from tests.conftest import BACKENDS, batch, small_config

DEVICE = [b for b in BACKENDS if b != "numpy"]


# the device sides of the xp fixture only (the stand-in, and CuPy where present), to compare
# with numpy
on_device = pytest.mark.parametrize("xp", DEVICE, indirect=True)


def with_channel(cfg, **channel):
    return dataclasses.replace(cfg, channel=C.from_dict(C.ChannelConfig, channel))


def weights(net):
    return [to_numpy(a) for layer in net.layers for a in (layer.W, layer.b)]


# Variants whose step is deterministic given the weights: numpy and the device agree to the bit.
DETERMINISTIC = {
    "bp": {"rule": "bp"},
    "rbp": {"rule": "rbp"},
    "srbp": {"rule": "srbp"},
    "sbp": {"rule": "sbp"},
    "pbp": {"rule": "pbp"},
    "mixed": {"rule": "mixed", "skip_layers": [1]},
    "cascade": {"rule": "cascade"},
    "top": {"rule": "top"},
    "sign_signal": {"rule": "rbp", "signal": "sign"},
    "magnitude_signal": {"rule": "srbp", "signal": "magnitude"},
    "per_weight": {"rule": "srbp", "per_weight": True},
    "congruent": {"rule": "rbp", "congruent": True},
    "no_fprime": {"rule": "rbp", "fprime": False},
    "adaptive": {"rule": "rbp", "adapt_lr": 0.5},
    "sparse": {"rule": "srbp", "feedback": "bernoulli", "feedback_nonzeros": 2.0},
    "sign_feedback": {"rule": "rbp", "feedback": "sign", "feedback_mean": 0.1},
    "error_log": {"rule": "rbp", "error_format": "log:bits=3,alpha=0.125"},
    "update_log": {"rule": "srbp", "update_format": "log:bits=3,alpha=0.015625"},
    "update_fixed": {"rule": "bp", "update_format": "fixed:bits=6,step=0.001"},
    "error_toward_zero": {
        "rule": "srbp",
        "error_format": "fixed:bits=4,step=0.01",
        "rounding": "toward_zero",
    },
}
# Variants that draw runtime noise every step (dropout masks, redrawn feedback, perturbations,
# stochastic rounding).
NOISY = {
    "dropout": {"rule": "rbp", "dropout": 0.3},
    "resample": {"rule": "srbp", "resample": True},
    "resample_congruent": {"rule": "rbp", "resample": True, "congruent": True},
    "node_perturbation": {"rule": "node_perturbation", "perturbation": 1e-2},
    "stochastic_error": {
        "rule": "rbp",
        "error_format": "log:bits=3,alpha=0.125",
        "rounding": "stochastic",
    },
    "stochastic_update": {
        "rule": "srbp",
        "update_format": "fixed:bits=8,step=0.0005",
        "rounding": "stochastic",
    },
}
SIZES = (6, 5, 4, 3)


def run_steps(xp, channel, dtype, steps=3, seeds=(0, 1)):
    cfg = with_channel(small_config(SIZES, seeds=seeds, dtype=dtype), **channel)
    net = Network.build(cfg, xp)
    x, t = batch(xp, SIZES, dtype=dtype)
    outs = [to_numpy(net.step(x, t, 0.2)) for _ in range(steps)]
    return net, outs


@on_device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", sorted(DETERMINISTIC))
def test_deterministic_variants_train_bit_for_bit_as_on_numpy(xp, variant, dtype):
    host, host_out = run_steps(np, DETERMINISTIC[variant], dtype)
    net, out = run_steps(xp, DETERMINISTIC[variant], dtype)
    assert type(net.layers[0].W) is xp.ndarray
    for a, b in zip(weights(host), weights(net), strict=True):
        if variant == "pbp" and xp is not cupy_standin:  # cuSOLVER's SVD is not LAPACK's
            np.testing.assert_allclose(b, a, rtol=1e-4 if dtype == "float32" else 1e-10)
        else:
            np.testing.assert_array_equal(b, a)
    for a, b in zip(host_out, out, strict=True):
        assert b.dtype == a.dtype == np.dtype(dtype)


@on_device
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", sorted(NOISY))
def test_noisy_variants_draw_on_the_device_and_repeat_with_the_seed(xp, variant, dtype):
    first, _ = run_steps(xp, NOISY[variant], dtype)
    again, _ = run_steps(xp, NOISY[variant], dtype)
    start = run_steps(xp, NOISY[variant], dtype, steps=0)[0]
    assert type(first.layers[0].W) is xp.ndarray
    for a, b in zip(weights(first), weights(again), strict=True):
        np.testing.assert_array_equal(a, b)  # same seeds, same run
        assert a.dtype == np.dtype(dtype)
        assert np.isfinite(a).all()
    assert not np.array_equal(weights(first)[0], weights(start)[0])  # the first layer learned


@on_device
@pytest.mark.parametrize("variant", sorted(NOISY))
def test_noisy_variants_learn_like_numpy_on_average(xp, variant):
    # the streams differ, so compare the mean first-layer change over many members with numpy's
    seeds = tuple(range(24))
    changes = []
    for mod in (np, xp):
        cfg = with_channel(small_config(SIZES, seeds=seeds), **NOISY[variant])
        net = Network.build(cfg, mod)
        w0 = to_numpy(net.layers[0].W).copy()
        x, t = batch(mod, SIZES, n=20)
        net.step(x, t, 0.2)
        changes.append(to_numpy(net.layers[0].W) - w0)  # (E, N_1, N_0)
    host, device = changes
    spread = np.abs(host).mean()
    assert spread > 0
    # the mean over 24 members of each synapse's change: a difference of a few spreads / √24
    assert np.abs(host.mean(0) - device.mean(0)).mean() < 0.6 * spread


def test_dropout_on_the_device_keeps_the_documented_fraction(standin):
    p = 0.3
    cfg = with_channel(small_config((6, 40, 3), seeds=(0, 1, 2)), rule="srbp", dropout=p)
    net = Network.build(cfg, standin)
    x, t = batch(standin, (6, 40, 3), n=200)
    r = to_numpy(net.deltas(net.forward(x), t)[0])
    dropped = np.mean(r == 0)
    assert abs(dropped - p) < 4 * np.sqrt(p * (1 - p) / r.size)


# --- every format x rounding x dtype of lpfa.quant ----------------------------------------------

FORMATS = {
    "log": LogFormat(bits=4, alpha=0.5),
    "log_flush": LogFormat(bits=3, alpha=0.25, flush_to_zero=True),
    "log_odd_alpha": LogFormat(bits=3, alpha=0.3),
    "log_per_row": LogFormat(bits=3, alpha=DynamicScale.PER_ROW),
    "log_per_tensor": LogFormat(bits=3, alpha=DynamicScale.PER_TENSOR),
    "fixed": FixedPoint(bits=5, step=0.125),
    "fixed_unsigned": FixedPoint(bits=4, full_scale=1.5, signed=False),
    "fixed_per_row": FixedPoint(bits=6, full_scale=DynamicScale.PER_ROW),
    "sign": Sign(scale=0.5),
    "ternary": Ternary(threshold=0.3, scale=0.75),
    "ternary_per_tensor": Ternary(scale=DynamicScale.PER_TENSOR),
    "minifloat_nosub": Minifloat(exp_bits=3, man_bits=2, subnormals=False),
    "minifloat_scaled": Minifloat(exp_bits=4, man_bits=3, scale=DynamicScale.PER_ROW),
    "fp8_e4m3": FP8_E4M3,
    "fp8_e5m2": FP8_E5M2,
    "fp16": FP16,
    "bf16": BF16,
}


def sample(dtype, shape=(3, 5, 7), seed=0):
    x = (np.random.default_rng(seed).standard_normal(shape) * 2.0).astype(dtype)
    x.flat[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 6e4]
    return x


@on_device
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("rounding", ["nearest", "toward_zero"])
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_and_deterministic_rounding_is_bit_equal_on_the_device(
    xp, name, rounding, dtype
):
    fmt = FORMATS[name]
    if isinstance(fmt, Sign) and rounding == "toward_zero":
        pytest.skip("Sign has no toward-zero rounding (refused on every backend)")
    x = sample(dtype)
    try:
        want = quantize(x, fmt, rounding=rounding)
    except ValueError:  # a format this dtype cannot hold: refused the same way on the device
        with pytest.raises(ValueError, match="dtype"):
            quantize(xp.asarray(x), fmt, rounding=rounding)
        return
    got = quantize(xp.asarray(x), fmt, rounding=rounding)
    assert type(got) is xp.ndarray
    assert got.dtype == x.dtype
    assert got.shape == x.shape
    np.testing.assert_array_equal(to_numpy(got), want)


@on_device
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_rounds_stochastically_on_the_device_onto_the_same_neighbours(xp, name, dtype):
    fmt = FORMATS[name]
    x = sample(dtype, shape=(4, 2000))
    rng_host, rng_dev = runtime_rng(0, np), runtime_rng(0, xp)
    try:
        want = quantize(x, fmt, rounding="stochastic", rng=rng_host)
    except ValueError:
        with pytest.raises(ValueError, match="dtype"):
            quantize(xp.asarray(x), fmt, rounding="stochastic", rng=rng_dev)
        return
    got = to_numpy(quantize(xp.asarray(x), fmt, rounding="stochastic", rng=rng_dev))
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    if not any(isinstance(getattr(fmt, f, None), DynamicScale) for f in ("alpha", "scale")) and (
        getattr(fmt, "full_scale", None) is None
    ):  # a fixed grid: every device value is on it
        ok = np.isfinite(got)
        np.testing.assert_array_equal(quantize(got[ok], fmt), got[ok])
    # the same distribution as numpy's (other streams): each difference is within one step, so
    # their mean is 0 within a few standard errors
    ok = np.isfinite(want) & np.isfinite(got)
    d = got[ok].astype(np.float64) - want[ok].astype(np.float64)
    assert abs(d.mean()) <= 5 * d.std() / np.sqrt(d.size) + 1e-12


def test_stochastic_rounding_draws_its_uniforms_on_the_device(standin):
    x = standin.asarray(sample(np.float32, (64, 64)))
    rng = runtime_rng(0, standin)
    standin.counter.reset()
    quantize(x, FixedPoint(bits=5, step=0.125), rounding="stochastic", rng=rng)
    assert standin.counter.to_device == 0  # no host draws copied over
    assert standin.counter.syncs == 0
    with pytest.raises(TypeError, match=r"draws numpy arrays but x is a tests\.cupy_standin"):
        quantize(x, FixedPoint(bits=5, step=0.125), rounding="stochastic", rng=runtime_rng(0, np))


# --- alignment diagnostics ----------------------------------------------------------------------


@on_device
@pytest.mark.parametrize("variant", ["bp", "rbp", "srbp", "cascade", "per_weight", "top", "pbp"])
def test_alignment_diagnostics_agree_with_numpy(xp, variant):
    channel = DETERMINISTIC[variant]
    diags = []
    for mod in (np, xp):
        cfg = with_channel(small_config(SIZES, seeds=(0, 1, 2)), **channel)
        net = Network.build(cfg, mod)
        x, t = batch(mod, SIZES, n=30)
        net.step(x, t, 0.2)
        diags.append(alignment(net, x, t))
    host, device = diags
    assert host.keys() == device.keys()
    for key in host:
        assert isinstance(device[key], np.ndarray)
        np.testing.assert_allclose(device[key], host[key], rtol=1e-9, atol=1e-9, equal_nan=True)


# --- device syncs -------------------------------------------------------------------------------

BALDI = (784, 32, 32, 32, 32, 10)  # Baldi et al.'s depth, narrower for speed
QUICKSTART = (784, 100, 10)  # configs/quickstart.toml
STEP_VARIANTS = {
    "bp": {"rule": "bp"},
    "rbp": {"rule": "rbp"},
    "srbp": {"rule": "srbp"},
    "dropout": {"rule": "rbp", "dropout": 0.2},
    "resample": {"rule": "srbp", "resample": True},
    "error_q": {"rule": "rbp", "error_format": "log:bits=3,alpha=0.125"},
    "update_q": {"rule": "srbp", "update_format": "log:bits=3,alpha=0.015625"},
    "both_q_stochastic": {
        "rule": "rbp",
        "error_format": "log:bits=3,alpha=0.125",
        "update_format": "fixed:bits=8,step=0.0005",
        "rounding": "stochastic",
    },
}


def mnist_like_batch(xp, sizes, n=50):
    """Inputs with MNIST's many exact zeros (the pruned columns of the update sum)."""
    rng = np.random.default_rng(1)
    x = rng.random((n, sizes[0])) * (rng.random((n, sizes[0])) < 0.2)
    t = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]
    return xp.asarray(x.astype("float32")), xp.asarray(t.astype("float32"))


@pytest.mark.parametrize("net_sizes", [BALDI, QUICKSTART], ids=["baldi", "quickstart"])
@pytest.mark.parametrize("variant", sorted(STEP_VARIANTS))
def test_a_training_step_makes_no_device_sync(standin, net_sizes, variant):
    cfg = with_channel(
        small_config(net_sizes, seeds=(0, 1), hidden="tanh", dtype="float32"),
        **STEP_VARIANTS[variant],
    )
    net = Network.build(cfg, standin)
    x, t = mnist_like_batch(standin, net_sizes)
    net.step(x, t, 0.1)  # first step: buffers allocated
    standin.counter.reset()
    for _ in range(3):
        net.step(x, t, 0.1, momentum=0.5, weight_decay=1e-4)
    assert dict(standin.counter.reasons) == {}
    assert standin.counter.to_device == 0


def test_pseudobackprop_syncs_once_per_hidden_layer_per_step(standin):
    cfg = small_config(BALDI, "pbp", dtype="float32")
    net = Network.build(cfg, standin)
    x, t = mnist_like_batch(standin, BALDI)
    standin.counter.reset()
    net.step(x, t, 0.1)
    assert dict(standin.counter.reasons) == {"linalg.pinv": len(BALDI) - 2}


def epoch_syncs(standin, epochs, n_train, **channel):
    cfg = with_channel(small_config((6, 5, 4, 3), seeds=(0, 1)), **channel)
    cfg = dataclasses.replace(
        cfg,
        backend="cupy",
        data=dataclasses.replace(cfg.data, n_train=n_train),
        train=dataclasses.replace(cfg.train, epochs=epochs, batch_size=10, angle_every=1),
    )
    standin.counter.reset()
    train(cfg, progress=False)
    return standin.counter.syncs


@pytest.mark.parametrize("rule", ["rbp", "bp"])
def test_syncs_per_epoch_are_bounded_and_do_not_grow_with_the_batches(standin, rule):
    one = epoch_syncs(standin, 1, 100, rule=rule)
    two = epoch_syncs(standin, 2, 100, rule=rule)
    per_epoch = two - one
    # twice the batches per epoch: the same syncs (they are per epoch, not per step)
    assert epoch_syncs(standin, 2, 200, rule=rule) - epoch_syncs(standin, 1, 200, rule=rule) == (
        per_epoch
    )
    # the per-epoch list in docs/index.md: train loss and accuracy, test loss, NSE, accuracy and
    # its normaliser, the diagnostics (3 per hidden layer + ewbe), pinv for angle_pbp per layer
    assert 0 < per_epoch <= 20
