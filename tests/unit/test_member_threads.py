"""Member threads: sub-ensembles stepped at once on views of one network's arrays."""

import dataclasses
import json

import numpy as np
import pytest

from lpfa import config as C
from lpfa.cli import main
from lpfa.network import MemberThreads, Network
from lpfa.training import train
from tests.conftest import batch, small_config, tiny_toml

SIZES = (12, 9, 7, 4)
SEEDS = (0, 1, 2, 3, 4)


def config(rule="rbp", model=None, **channel):
    cfg = small_config(SIZES, rule, seeds=SEEDS, dtype="float32")
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, **(model or {})),
        channel=dataclasses.replace(cfg.channel, **channel),
    )


def state(net: Network) -> list[np.ndarray]:
    arrays = [a for layer in net.layers for a in (layer.W, layer.b)]
    return arrays + [fb.C for _, fb in sorted(net.channel.feedback.items())]


def steps(stepper, xp, n=4, **kw):
    outs = []
    for i in range(n):
        x, t = batch(xp, SIZES, n=10, seed=i, dtype="float32")
        outs.append(stepper.step(x, t, 0.1, **kw))
    return outs


DETERMINISTIC = {
    "bp": config("bp"),
    "rbp": config(),
    "srbp": config("srbp"),
    "quantized error": config("srbp", error_format="log:bits=3,alpha=0.125"),
    "1-bit update": config(update_format="log:bits=1,alpha=0.015625"),
    "3-bit update, sum": config(update_format="log:bits=3,alpha=0.015625", update_sum=True),
    "adaptive": config(adapt_lr=0.1),
    "low rank": config(feedback_rank=2),
    "sparse arrays": config(model={"weight_keep": 0.5}),
    "weight format": config(model={"weight_format": "fixed:bits=8,step=0.03125"}),
}


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
@pytest.mark.parametrize("kw", [{}, {"weight_decay": 1e-3, "momentum": 0.5}], ids=["sgd", "mom"])
def test_threads_train_every_member_as_the_whole_ensemble_does(name, kw):
    cfg = DETERMINISTIC[name]
    whole, split = Network.build(cfg), Network.build(cfg)
    with MemberThreads(split, 2) as parallel:
        a, b = steps(whole, np, **kw), steps(parallel, np, **kw)
        assert (parallel.parts, parallel.reason) == (2, None)
        assert parallel._views is not None  # steps 2-4 ran in the threads
    # the first layer's shared-input product over 3 and 2 members instead of 5 may round its
    # sums in another order: float32 rounding, not another computation
    for u, v in zip(state(whole), state(split), strict=True):
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-6)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(state(whole)[0], Network.build(cfg).layers[0].W)  # it learned


@pytest.mark.parametrize(
    "cfg",
    [
        config(dropout=0.3),
        config(error_format="log:bits=3,alpha=0.125", rounding=C.Rounding.STOCHASTIC),
        config("node_perturbation"),
        config(resample=True),
    ],
    ids=["dropout", "stochastic rounding", "perturbation", "resample"],
)
def test_a_step_that_draws_runs_whole_and_bit_for_bit(cfg):
    whole, split = Network.build(cfg), Network.build(cfg)
    with MemberThreads(split, 2) as parallel:
        a, b = steps(whole, np), steps(parallel, np)
    assert parallel.parts == 1
    assert parallel.reason == "the step draws from the runtime stream"
    for u, v in zip(state(whole) + a, state(split) + b, strict=True):
        np.testing.assert_array_equal(v, u)


def reason(cfg, parts=2):
    with MemberThreads(Network.build(cfg), parts) as parallel:
        return parallel.reason, parallel.parts


def test_runs_without_member_views_say_why():
    dev = config(model={"device": C.DeviceConfig(preset="gokmen2016_rpu")})
    assert reason(dev)[0].startswith("conv arrays and device")
    one = small_config(SIZES, "rbp", seeds=(3,), dtype="float32")
    assert reason(one, 4) == ("one member", 1)
    assert reason(config(), 1) == ("one thread asked for", 1)
    assert reason(config(), 9) == (None, len(SEEDS))  # one thread per member at most
    # a mirror phase every 4th step: the first step draws nothing, the fourth does
    mirror = config(adapt_lr=0.1, mirror_ratio=0.25)
    assert reason(mirror)[0].startswith("weight mirror")


def test_blas_runs_one_thread_in_the_threads_and_comes_back_after():
    from threadpoolctl import ThreadpoolController, threadpool_limits

    def blas():
        return {i["num_threads"] for i in ThreadpoolController().info() if i["user_api"] == "blas"}

    with threadpool_limits(limits=1, user_api="blas"):
        with MemberThreads(Network.build(config()), 2) as parallel:
            assert blas() == {2}  # the whole network's first step and measurements
            steps(parallel, np, n=2)
            assert blas() == {1}  # one per member thread
        assert blas() == {1}
        with MemberThreads(Network.build(config(dropout=0.3)), 2) as parallel:
            steps(parallel, np, n=2)
            assert blas() == {2}  # stepping whole, as many as asked for
        assert blas() == {1}


def test_views_share_the_arrays_they_train():
    net = Network.build(config(adapt_lr=0.1))
    view = net.members(slice(1, 3))
    assert view.n_members == 2
    for whole, part in zip(state(net), state(view), strict=True):
        assert np.shares_memory(whole, part)
        np.testing.assert_array_equal(part, whole[1:3])


def test_a_draw_after_the_check_is_an_error_not_other_numbers(monkeypatch):
    net = Network.build(config())
    with MemberThreads(net, 2) as parallel:
        steps(parallel, np, n=2)
        deliver = parallel._views[0].channel.deliver

        def drawing(*args, **kwargs):
            net.random.random(1)
            return deliver(*args, **kwargs)

        monkeypatch.setattr(parallel._views[0].channel, "deliver", drawing)
        with pytest.raises(RuntimeError, match="drew from the runtime stream"):
            steps(parallel, np, n=1)


def test_train_with_member_threads_agrees_with_one_ensemble(xp):
    cfg = dataclasses.replace(config(), backend="numpy" if xp is np else "cupy")
    whole = train(cfg, progress=False)
    split = train(cfg, progress=False, member_threads=2)
    used = 2 if xp is np else 1
    assert split.meta["member_threads"]["threads"] == used
    assert whole.meta["member_threads"] == {"threads": 1, "whole_because": "one thread asked for"}
    for r, s in zip(whole.history, split.history, strict=True):
        assert (r["epoch"], r["member"]) == (s["epoch"], s["member"])
        assert s["test_loss"] == pytest.approx(r["test_loss"], rel=1e-4)


def test_cli_member_threads(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_toml())
    out = tmp_path / "o"
    assert main(["train", str(path), "--out", str(out), "--quiet", "--member-threads", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --member-threads='0': must be a positive integer (threads over members)"]
    assert not out.exists()
    assert main(["train", str(path), "--out", str(out), "--quiet", "--member-threads", "2"]) == 0
    meta = json.loads((out / "summary.json").read_text())["meta"]
    assert meta["member_threads"] == {"threads": 2, "whole_because": None}
