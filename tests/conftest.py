"""Shared fixtures: the ``xp`` backend fixture with three sides (numpy, the CPU stand-in for
CuPy, and CuPy itself, marked ``gpu`` and skipped without CUDA), and the device-sync counter."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lpfa import config as C
from lpfa.backend import cupy_available, device_module
from tests import cupy_standin

BACKENDS = ["numpy", "standin", pytest.param("cupy", marks=pytest.mark.gpu)]


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module under test: numpy; the strict CPU stand-in for CuPy, installed as lpfa's
    device backend for the test (so ``backend="cupy"`` runs on it); CuPy with a CUDA device."""
    if request.param == "cupy":
        if not cupy_available():
            pytest.skip("CuPy with a CUDA device is not available on this machine")
        import cupy

        yield cupy
    elif request.param == "standin":
        with device_module(cupy_standin):
            yield cupy_standin
    else:
        yield np


@pytest.fixture
def standin():
    """The CPU stand-in for CuPy, installed as lpfa's device backend, its counters at zero."""
    with device_module(cupy_standin):
        cupy_standin.counter.reset()
        yield cupy_standin


def device_syncs(fn, *args, **kwargs):
    """Run ``fn`` on the stand-in and return (its result, the device syncs it caused by reason)."""
    cupy_standin.counter.reset()
    result = fn(*args, **kwargs)
    return result, dict(cupy_standin.counter.reasons)


def small_config(
    sizes=(6, 5, 4, 3),
    rule="bp",
    *,
    seeds=(0,),
    hidden="tanh",
    output="softmax",
    loss="cross_entropy",
    dtype="float64",
    **train,
) -> C.RunConfig:
    """A tiny run config on synthetic data, for unit tests."""
    return C.RunConfig(
        seeds=seeds,
        data=C.DataConfig(name="linear-teacher", n_train=200, n_test=50),
        model=C.ModelConfig(
            sizes=sizes,
            hidden=C.Activation(hidden),
            output=C.Activation(output),
            loss=C.Loss(loss),
            dtype=dtype,
        ),
        channel=C.ChannelConfig(rule=C.Rule(rule)),
        train=C.TrainConfig(**{"epochs": 2, "batch_size": 20, "lr": 0.1, **train}),
    )


def batch(xp, sizes, n=7, seed=0, dtype="float64", onehot=True):
    """Random inputs (n, N_0) and targets (n, N_L): one-hot labels or N(0, 1) values."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, sizes[0])).astype(dtype)
    if onehot:
        t = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    else:
        t = rng.standard_normal((n, sizes[-1])).astype(dtype)
    return xp.asarray(x), xp.asarray(t)


def experiment_script(script: str | Path):
    """An experiment script imported as a module: ``experiments/<script>.py``, or the path."""
    path = Path(script)
    if path.suffix != ".py":
        path = Path(__file__).resolve().parents[1] / "experiments" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_concurrently(target, arg_lists, timeout=60):
    """Run ``target(*args)`` for each args in forked processes at once; assert all exit 0."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=target, args=args) for args in arg_lists]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def tiny_toml(n_train: int = 100, n_test: int = 40) -> str:
    """A run config of a few milliseconds (linear teacher, 30-8-10, RBP, 2 seeds, 2 epochs), as
    TOML text for the command-line tests."""
    return f"""
name = "tiny"
seeds = [0, 1]
[data]
name = "linear-teacher"
n_train = {n_train}
n_test = {n_test}
[model]
sizes = [30, 8, 10]
hidden = "tanh"
output = "linear"
loss = "squared"
[channel]
rule = "rbp"
[train]
epochs = 2
batch_size = 10
lr = 0.01
"""
