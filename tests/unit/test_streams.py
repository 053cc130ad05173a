"""Random streams: each draw comes from the stream the docs name, and observing never perturbs."""

import dataclasses

import numpy as np
import pytest

from lpfa import config as C
from lpfa.backend import STREAM_FEEDBACK, member_rng, runtime_rng
from lpfa.network import Network
from lpfa.training import train
from tests.conftest import batch, small_config

# every column a diagnostic writes; the rest of a history row is what training did
DIAG = ("angle", "ewbe_pos", "time_s")


def _with(cfg: C.RunConfig, **channel) -> C.RunConfig:
    return dataclasses.replace(cfg, channel=dataclasses.replace(cfg.channel, **channel))


def _trained(cfg: C.RunConfig) -> list[dict]:
    return [
        {k: v for k, v in row.items() if not k.startswith(DIAG)}
        for row in train(cfg, progress=False).history
    ]


def test_channel_draws_from_the_runtime_stream_of_all_member_seeds():
    """Dropout, redrawn feedback and rounding draw from runtime_rng(seeds), not feedback streams."""
    cfg = _with(small_config(rule="rbp", seeds=(0, 1)), dropout=0.3)
    net = Network.build(cfg, np)
    assert net.channel.rng is net.random  # one runtime source for channel and forward path
    want = runtime_rng([0, 1], np).random(8)
    np.testing.assert_array_equal(net.channel.rng.random(8), want)
    last_feedback = member_rng(1, STREAM_FEEDBACK).random(8)
    assert not np.array_equal(want, last_feedback)


@pytest.mark.parametrize("rule", ["rbp", "srbp"])
def test_a_member_keeps_its_parameters_whatever_ensemble_it_is_in(rule):
    """Seed 1's weights and feedback are its own; with dropout its masks follow the ensemble's
    runtime stream (seeded by all members), so its training differs between (0, 1) and (5, 1)."""
    base = small_config(rule=rule, seeds=(0, 1), epochs=1)
    a = Network.build(base, np)
    b = Network.build(dataclasses.replace(base, seeds=(5, 1)), np)
    for la, lb in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(la.W[1], lb.W[1])
    for key, fb in a.channel.feedback.items():
        np.testing.assert_array_equal(fb.C[1], b.channel.feedback[key].C[1])

    def member1(cfg):
        return [r["test_loss"] for r in train(cfg, progress=False).history if r["member"] == 1]

    assert member1(base) == member1(dataclasses.replace(base, seeds=(5, 1)))
    drop = _with(base, dropout=0.3)
    assert member1(drop) != member1(dataclasses.replace(drop, seeds=(5, 1)))
    assert member1(drop) == member1(drop)  # and the runtime stream is reproducible


VARIANTS = {
    "dropout": {"dropout": 0.3},
    "resample": {"resample": True},
    "stochastic_error": {"error_format": "log:bits=3,alpha=0.125", "rounding": "stochastic"},
    "stochastic_update": {"update_format": "fixed:bits=4,step=0.001", "rounding": "stochastic"},
    "adaptive": {"adapt_lr": 0.5},
    "congruent": {"congruent": True},
    "per_weight": {"per_weight": True},
    "sign": {"signal": C.Signal.SIGN},
    "no_fprime": {"fprime": False},
    "sparse": {"feedback": C.Dist.BERNOULLI, "feedback_nonzeros": 2.0},
}


def _valid(rule: str, variant: dict) -> bool:
    try:
        C.ChannelConfig(rule=C.Rule(rule), **variant)
    except C.ConfigError:  # a combination the config refuses, with its reason
        return False
    return True


RULE_CASES = [(r.value, "plain", {}) for r in C.Rule] + [
    (rule, name, kw)
    for rule in ("bp", "rbp", "srbp", "sbp", "cascade", "node_perturbation")
    for name, kw in VARIANTS.items()
    if _valid(rule, kw)
]


@pytest.mark.parametrize(
    ("rule", "variant"),
    [(r, kw) for r, _, kw in RULE_CASES],
    ids=[f"{r}-{name}" for r, name, _ in RULE_CASES],
)
def test_measuring_angles_does_not_change_training(rule, variant):
    """angle_every=1 and None give bit-identical histories, for every rule and channel variant."""
    cfg = small_config(rule=rule, seeds=(0, 1), epochs=2)
    if rule == "mixed":
        cfg = _with(cfg, skip_layers=(1,))
    cfg = _with(cfg, **variant)
    measured = _trained(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, angle_every=1))
    )
    unmeasured = _trained(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, angle_every=None))
    )
    assert measured == unmeasured


def test_evaluation_does_not_draw_from_the_run_on_stochastic_forward_formats():
    """A step after an evaluation equals the step without it (forward-path stochastic rounding)."""
    from lpfa.training import evaluate

    cfg = small_config(rule="rbp", seeds=(0, 1))
    model = dataclasses.replace(
        cfg.model, input_format="fixed:bits=6,step=0.05", rounding="stochastic"
    )
    cfg = dataclasses.replace(cfg, model=model)
    x, t = batch(np, cfg.model.sizes, n=20)
    plain, measured = Network.build(cfg, np), Network.build(cfg, np)
    evaluate(measured, x, t, None, cfg.model.loss)
    plain.step(x, t, 0.1)
    measured.step(x, t, 0.1)
    for a, b in zip(plain.layers, measured.layers, strict=True):
        np.testing.assert_array_equal(a.W, b.W)
