"""The training loop: reproducibility, schedules, divergence stop, history contents."""

import dataclasses

import numpy as np
import pytest

from lpfa import config as C
from lpfa.training import DivergenceError, learning_rate, train
from tests.conftest import small_config


def regression(rule="rbp", **kw):
    return small_config((30, 20, 10), rule, hidden="linear", output="linear", loss="squared", **kw)


def test_same_seed_same_numbers():
    cfg = regression(seeds=(0, 1))
    a, b = train(cfg, progress=False), train(cfg, progress=False)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    c = train(dataclasses.replace(cfg, seeds=(0, 2)), progress=False)
    metrics_of = lambda h, m: [  # noqa: E731
        {k: v for k, v in r.items() if k not in ("time_s", "seed")} for r in h if r["member"] == m
    ]
    assert metrics_of(c.history, 0) == metrics_of(a.history, 0)  # seed 0 is seed 0 anywhere
    assert metrics_of(c.history, 1) != metrics_of(a.history, 1)  # another seed, other numbers
    assert [r["test_loss"] for r in c.history if r["member"] == 1] != [
        r["test_loss"] for r in a.history if r["member"] == 1
    ]


def test_members_equal_single_runs_through_the_loop(xp):
    backend = "numpy" if xp is np else "cupy"
    cfg = dataclasses.replace(regression(seeds=(5, 6, 7)), backend=backend)
    ens = train(cfg, progress=False)
    for m, seed in enumerate(cfg.seeds):
        one = train(dataclasses.replace(cfg, seeds=(seed,)), progress=False)
        for key in ("train_loss", "test_nse", "angle_1"):
            np.testing.assert_allclose(ens.final(key)[m], one.final(key)[0], rtol=1e-9)


def test_history_has_a_row_per_epoch_and_member_and_a_summary():
    cfg = regression(seeds=(0, 1), epochs=3)
    res = train(cfg, progress=False)
    assert [(r["epoch"], r["member"]) for r in res.history] == [
        (e, m) for e in range(4) for m in range(2)
    ]
    assert res.history[0]["train_loss"] is None  # epoch 0 is the measurement before training
    assert res.history[-1]["step"] == 3 * (200 // 20)
    s = res.summary
    assert s["epoch"] == 3
    assert len(s["members"]) == 2
    assert s["test_nse_mean"] == pytest.approx(np.mean(res.final("test_nse")))
    assert s["test_nse_std"] == pytest.approx(np.std(res.final("test_nse"), ddof=1))
    assert res.history[-1]["test_acc"] is None  # regression: no accuracy


def test_keras_decay_schedule():
    assert learning_rate(0.1, 1e-6, 0) == 0.1
    assert learning_rate(0.1, 1e-6, 60000) == pytest.approx(0.1 / 1.06)


def test_fa_angle_starts_near_90_and_learning_lowers_the_error():
    cfg = dataclasses.replace(
        regression(seeds=(0, 1, 2), epochs=5), train=C.TrainConfig(epochs=5, batch_size=10, lr=0.01)
    )
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, init=C.Dist.UNIFORM, init_scale=0.01),
        channel=C.ChannelConfig(rule=C.Rule.RBP, feedback=C.Dist.UNIFORM, feedback_scale=0.5),
    )
    res = train(cfg, progress=False)
    first = [r["angle_1"] for r in res.history if r["epoch"] == 0]
    assert all(60 < a < 120 for a in first)
    assert np.all(res.final("angle_1") < 60)
    assert np.all(res.final("test_nse") < 0.1)


def test_divergence_stops_with_member_and_epoch_and_keeps_history():
    cfg = small_config(
        (30, 20, 10),
        "bp",
        seeds=(0, 1),
        hidden="relu",
        output="linear",
        loss="squared",
        lr=50.0,
        epochs=5,
    )
    with pytest.raises(
        DivergenceError,
        match=r"member 0 \(seed 0\) diverged in epoch 1: training loss is (nan|inf)",
    ) as err:
        train(cfg, progress=False)
    assert err.value.epoch == 1
    assert err.value.history


def test_data_model_mismatch_is_refused():
    cfg = regression()
    from lpfa.data import load

    ds = load(dataclasses.replace(cfg.data), (30, 20, 5))
    with pytest.raises(
        ValueError,
        match=r"model.sizes=\(30, 20, 10\): data linear-teacher has 30 inputs and 5 outputs",
    ):
        train(cfg, data=ds, progress=False)
