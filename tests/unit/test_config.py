"""Configs: TOML presets load, every bad value is refused naming the field, value and rule."""

import dataclasses
import math
from pathlib import Path

import pytest

from lpfa import config as C

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip(path):
    cfg = C.load(path)
    assert C.from_dict(C.RunConfig, C.to_dict(cfg)) == cfg


def test_required_presets_exist():
    names = {p.name for p in CONFIGS}
    assert {"baldi2018_mnist.toml", "lillicrap2016_linear.toml"} <= names


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": {"lr": -1}}, r"train.lr=-1.0: must be finite and > 0"),
        ({"train": {"lr": "fast"}}, r"train.lr='fast': must be a number"),
        ({"train": {"epochs": 0}}, r"train.epochs=0: must be an integer >= 1"),
        ({"train": {"epochs": 2.5}}, r"train.epochs=2.5: must be an integer"),
        ({"train": {"momentum": 1.0}}, r"train.momentum=1.0: must be in \[0, 1\)"),
        ({"train": {"speed": 1}}, r"train.speed=1: unknown field; allowed: epochs, batch_size"),
        ({"model": {"hidden": "softmax"}}, r"model.hidden='softmax': softmax is for the output"),
        (
            {"model": {"loss": "cross_entropy", "output": "tanh"}},
            r"model.output='tanh': loss=cross_entropy",
        ),
        ({"model": {"sizes": [784]}}, r"model.sizes=\(784,\): must list at least"),
        ({"model": {"sizes": [784, "a"]}}, r"model.sizes\[1\]='a': must be an integer"),
        (
            {"model": {"dtype": "float16"}},
            r"model.dtype='float16': must be one of float32, float64",
        ),
        (
            {"channel": {"rule": "magic"}},
            r"channel.rule=.magic.: must be one of bp, rbp, srbp, sbp, mixed, cascade, pbp",
        ),
        ({"channel": {"feedback_scale": 0}}, r"channel.feedback_scale=0.0: must be finite and > 0"),
        ({"data": {"name": "cifar100"}}, r"data.name='cifar100': must be one of mnist"),
        (
            {"model": {"sizes": [30, 10]}},
            r"model.sizes=\(30, 10\): data.name=mnist needs 784 inputs",
        ),
        ({"seeds": [1, 1]}, r"seeds=\(1, 1\): must not repeat"),
        ({"seeds": []}, r"seeds=\(\): must list at least one seed"),
        ({"backend": "tpu"}, r"backend='tpu': must be one of numpy, cupy, auto"),
        (
            {"model": {"sizes": [784, 10]}, "channel": {"rule": "rbp"}},
            r"channel.rule='rbp': a network without hidden layers has no learning channel",
        ),
        ({"train": 3}, r"train=3: must be a table of TrainConfig fields"),
    ],
)
def test_bad_values_name_field_value_and_what_is_allowed(data, message):
    with pytest.raises(C.ConfigError, match=message):
        C.from_dict(C.RunConfig, data)


def test_rule_aliases_and_case():
    assert C.from_dict(C.ChannelConfig, {"rule": "FA"}).rule is C.Rule.RBP
    assert C.from_dict(C.ChannelConfig, {"rule": "dfa"}).rule is C.Rule.SRBP
    assert C.from_dict(C.ChannelConfig, {"rule": "top-layer-only"}).rule is C.Rule.TOP


def test_configs_are_frozen_and_vary_by_replace():
    cfg = C.RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]
    assert dataclasses.replace(cfg.train, lr=0.5).lr == 0.5
    with pytest.raises(C.ConfigError, match=r"lr=-0\.5"):
        dataclasses.replace(cfg.train, lr=-0.5)


def test_overrides_parse_toml_values_and_bare_strings():
    raw = C.apply_overrides(
        {"train": {"lr": 0.1}},
        ["train.lr=0.05", "model.sizes=[784, 10]", "channel.rule=srbp", "train.angle_every=none"],
    )
    assert raw == {
        "train": {"lr": 0.05, "angle_every": "none"},
        "model": {"sizes": [784, 10]},
        "channel": {"rule": "srbp"},
    }
    cfg = C.from_dict(C.RunConfig, {"train": raw["train"]})
    assert cfg.train.angle_every is None
    with pytest.raises(C.ConfigError, match=r"--set='lr': must look like section\.field=value"):
        C.apply_overrides({}, ["lr"])


def test_load_reports_missing_and_broken_files(tmp_path):
    with pytest.raises(C.ConfigError, match="file not found"):
        C.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seeds = [\n")
    with pytest.raises(C.ConfigError, match="is not valid TOML"):
        C.load(bad)
    ok = tmp_path / "ok.toml"
    ok.write_text("[train]\nepochs = 3\n")
    cfg = C.load(ok, ["train.lr=0.2"])
    assert (cfg.name, cfg.train.epochs, cfg.train.lr) == ("ok", 3, 0.2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"model": {"output": "softmax", "loss": "squared"}},
            r"model.output='softmax': output=softmax is implemented with loss=cross_entropy only",
        ),
        (
            {"channel": {"feedback": "bernoulli", "feedback_nonzeros": math.inf}},
            r"channel.feedback_nonzeros=inf: feedback=bernoulli needs .* a finite number >= 0",
        ),
        (
            {"channel": {"feedback": "bernoulli", "feedback_nonzeros": -1}},
            r"channel.feedback_nonzeros=-1.0: feedback=bernoulli needs",
        ),
        (
            {
                "channel": {
                    "feedback": "bernoulli",
                    "feedback_nonzeros": 0,
                    "feedback_normalize": True,
                }
            },
            r"channel.feedback_normalize=True: scales by 1/sqrt\(feedback_nonzeros\)",
        ),
        (
            {"channel": {"feedback": "bernoulli", "feedback_nonzeros": math.nan}},
            r"channel.feedback_nonzeros=nan: feedback=bernoulli needs",
        ),
        (
            {"model": {"sizes": [784, 100, 10]}, "channel": {"rule": "mixed", "skip_layers": [2]}},
            r"channel.skip_layers=\(2,\): names hidden layer 2, but model.sizes=\(784, 100, 10\) "
            r"has hidden layers 1..1",
        ),
        ({"name": "../../x"}, r"name='../../x': is used as a folder name: must not contain '/'"),
        ({"name": "a\\b"}, r"name='a\\\\b': is used as a folder name"),
        ({"name": ".."}, r"name='..': is used as a folder name"),
        ({"name": "."}, r"name='.': is used as a folder name"),
    ],
)
def test_settings_that_mean_nothing_are_refused(data, message):
    with pytest.raises(C.ConfigError, match=message):
        C.from_dict(C.RunConfig, data)


def test_names_and_skip_layers_that_are_fine_still_load():
    cfg = C.from_dict(
        C.RunConfig,
        {
            "name": "fa..v2 (lr 0.1)",
            "model": {"sizes": [784, 50, 40, 10]},
            "channel": {"rule": "mixed", "skip_layers": [1, 2]},
        },
    )
    assert cfg.channel.skip_layers == (1, 2)


def test_load_refuses_a_folder_and_non_utf8_in_one_error(tmp_path):
    with pytest.raises(C.ConfigError, match=r"config='.*': is a folder; give a \.toml file"):
        C.load(tmp_path)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(
        C.ConfigError, match=r"config='.*latin.toml': is not UTF-8 text \(byte 11\)"
    ):
        C.load(latin)


def test_memory_estimate_counts_each_part_and_check_memory_refuses_with_the_figure():
    from lpfa.training import check_memory, memory_estimate

    cfg = C.from_dict(
        C.RunConfig,
        {
            "seeds": [0, 1],
            "data": {"name": "linear-teacher", "n_train": 100, "n_test": 40},
            "model": {"sizes": [30, 8, 10], "output": "linear", "loss": "squared"},
            "train": {"batch_size": 10},
        },
    )
    need = memory_estimate(cfg)
    weights = 2 * (8 * 31 + 10 * 9) * 4  # two float32 members of W and b
    assert need["weights"] >= weights
    assert need["data"] >= (100 + 40) * (30 + 10) * 4
    assert need["total"] == sum(v for k, v in need.items() if k != "total")
    wide = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, sizes=(30, 10**9, 10)))
    assert memory_estimate(wide)["weights"] >= 2 * (10**9 * 31 + 10 * (10**9 + 1)) * 4
    assert check_memory(cfg, available=need["total"]) == need
    with pytest.raises(C.ConfigError, match=r"data.n_train=100: the run needs about [\d.]+ MiB"):
        check_memory(cfg, available=need["total"] - 1)  # the data is its largest part
    with pytest.raises(C.ConfigError, match=r"model.sizes=\(30, 1000000000, 10\): .* GiB \("):
        check_memory(wide, available=2**30)
    many = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, n_train=10**10))
    with pytest.raises(
        C.ConfigError,
        match=r"data.n_train=10000000000: .* \(data [\d,.]+ GiB\), more than the 1.0 GiB available",
    ):
        check_memory(many, available=2**30)
