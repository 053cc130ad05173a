"""Bounded memory of a run: evaluation in chunks sized from a byte budget, stored pixel bytes
converted per batch, and the memory estimate that accounts for both."""

import dataclasses
import tracemalloc

import numpy as np
import pytest

from lpfa import config as C
from lpfa import training
from lpfa.backend import to_numpy
from lpfa.data import Dataset
from lpfa.network import Network
from lpfa.training import EVAL_MEMORY, eval_chunk, evaluate, memory_estimate, train


def run_config(sizes=(30, 20, 10), seeds=(0, 1), **train_fields) -> C.RunConfig:
    """A small classification run (the data is passed in by the tests)."""
    return C.RunConfig(
        seeds=seeds,
        data=C.DataConfig(name="linear-teacher", n_train=120, n_test=45),
        model=C.ModelConfig(
            sizes=sizes,
            hidden=C.Activation.LOGISTIC,
            output=C.Activation.SOFTMAX,
            loss=C.Loss.CROSS_ENTROPY,
        ),
        channel=C.ChannelConfig(rule=C.Rule.RBP),
        train=C.TrainConfig(
            **{"epochs": 2, "batch_size": 20, "lr": 0.5, "angle_every": 1, **train_fields}
        ),
    )


def pixel_sets(n_in=30, n_out=10, n_train=120, n_test=45, dtype="float32"):
    """The same random image-like set twice: as bytes with a scale, and as the floats a
    whole-set cast gives (the way the image sets were stored before)."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(n_train + n_test, n_in), dtype=np.uint8)
    y = rng.integers(0, n_out, size=n_train + n_test)
    t = np.eye(n_out, dtype=dtype)[y]
    floats = x.astype(dtype) * np.asarray(1.0 / 255.0, dtype=dtype)
    tr, te = slice(0, n_train), slice(n_train, None)

    def dataset(xs, scale):
        return Dataset("pixels", xs[tr], t[tr], y[tr], xs[te], t[te], y[te], scale=scale)

    return dataset(x, 1.0 / 255.0), dataset(floats, None)


def test_a_chunk_is_the_most_examples_that_fit_the_budget():
    m = C.ModelConfig(sizes=(784, 1000, 10))
    per = training._eval_bytes_per_example(m, 32)
    # at least the 32 members' hidden outputs and the shared input row, in float32
    assert per >= (784 + 32 * 1010) * 4
    chunk = eval_chunk(m, 32)
    assert chunk * per <= EVAL_MEMORY < (chunk + 1) * per
    assert chunk < 10_000  # the whole MNIST test set at once would be 1.3 GB of hidden units
    assert eval_chunk(m, 32, budget=3 * per + 1) == 3
    assert eval_chunk(m, 32, budget=1) == 1  # never zero
    assert eval_chunk(C.ModelConfig(sizes=(30, 20, 10)), 2) == 10_000  # small nets: as before
    # more members or wider layers: fewer examples per pass
    assert eval_chunk(m, 64) < chunk
    assert eval_chunk(dataclasses.replace(m, sizes=(784, 4000, 10)), 32) < chunk


def test_chunked_evaluation_counts_accuracy_exactly_and_sums_losses_to_rounding(xp):
    cfg = dataclasses.replace(run_config(seeds=(0, 1, 2)), model=dataclasses.replace(
        run_config().model, dtype="float64"))  # fmt: skip
    net = Network.build(cfg, xp)
    bytes_, floats = pixel_sets(n_test=101, dtype="float64")
    x, t, y = (xp.asarray(a) for a in (floats.x_test, floats.t_test, floats.y_test))
    whole = evaluate(net, x, t, y, cfg.model.loss, chunk=101)
    for chunk in (1, 7, 50):
        parts = evaluate(net, x, t, y, cfg.model.loss, chunk=chunk)
        np.testing.assert_array_equal(parts["acc"], whole["acc"])  # a count: exact
        # per-chunk sums added up: float rounding only (float64)
        np.testing.assert_allclose(parts["loss"], whole["loss"], rtol=1e-12)
        np.testing.assert_allclose(parts["nse"], whole["nse"], rtol=1e-12)
    # stored bytes with their scale are converted per chunk to the very inputs of the float set
    xb = xp.asarray(bytes_.x_test)
    for chunk in (7, 101):
        a = evaluate(net, xb, t, y, cfg.model.loss, chunk=chunk, scale=bytes_.scale)
        b = evaluate(net, x, t, y, cfg.model.loss, chunk=chunk)
        for key in a:
            assert to_numpy(a[key]).tobytes() == to_numpy(b[key]).tobytes()


def test_evaluation_memory_stays_under_the_budget_whatever_the_test_set(monkeypatch):
    budget = 2**20
    monkeypatch.setattr(training, "EVAL_MEMORY", budget)
    cfg = run_config(sizes=(30, 500, 10), seeds=(0, 1, 2, 3))
    net = Network.build(cfg)
    _, floats = pixel_sets(n_test=4000)
    args = (floats.x_test, floats.t_test, floats.y_test, cfg.model.loss)
    whole = 4 * 4000 * 510 * 4  # the members' outputs on the whole set at once: 33 MB
    tracemalloc.start()
    try:
        evaluate(net, *args)  # default chunk: from the (patched) budget
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 2 * budget < whole  # the budget and small change, not the whole set


def test_training_on_stored_bytes_equals_training_on_the_float_set_bit_for_bit(xp):
    backend = "numpy" if xp is np else "cupy"
    cfg = dataclasses.replace(run_config(angle_examples=50), backend=backend)
    bytes_, floats = pixel_sets()
    a, b = (train(cfg, data=d, progress=False) for d in (bytes_, floats))
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert a.history[-1]["angle_1"] is not None  # the alignment probe ran on converted rows
    for la, lb in zip(a.network.layers, b.network.layers, strict=True):
        assert to_numpy(la.W).tobytes() == to_numpy(lb.W).tobytes()


def test_the_memory_estimate_counts_one_evaluation_chunk_not_the_test_set():
    cfg = C.load(
        "configs/lillicrap2016_mnist.toml", ["seeds=[" + ",".join(map(str, range(32))) + "]"]
    )
    need = memory_estimate(cfg)
    m = cfg.model
    step = (4 * 32 * 1010 + 784) * 100 * 4  # the minibatch's signals
    chunk = eval_chunk(m, 32)
    assert need["activations"] == step + chunk * training._eval_bytes_per_example(m, 32)
    assert need["activations"] <= step + EVAL_MEMORY
    fewer = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, n_test=5000))
    assert memory_estimate(fewer)["activations"] == need["activations"]  # chunk < 5000
    # the pixels are bytes: less than the float32 inputs of 70 000 images
    assert need["data"] < 70_000 * 784 * 4
    assert need["data"] >= 70_000 * 785 + 70_000 * 10 * 4  # the file's bytes, one-hot targets


@pytest.mark.parametrize("name", ["linear-teacher", "tanh-teacher"])
def test_synthetic_data_is_estimated_as_floats_as_before(name):
    cfg = run_config()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name=name))
    if name == "tanh-teacher":
        cfg = dataclasses.replace(
            cfg, data=dataclasses.replace(cfg.data, teacher_sizes=(30, 20, 10))
        )
    assert memory_estimate(cfg)["data"] == 2 * (120 + 45) * (30 + 10) * 4
