"""The configuration reference: generated from the config dataclasses, committed, never stale."""

import dataclasses
from pathlib import Path

import pytest

from lpfa import config as C
from lpfa.reference import describe, describe_run, field_docs, reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
SECTIONS = (C.RunConfig, C.DataConfig, C.ModelConfig, C.ChannelConfig, C.TrainConfig)


def test_committed_reference_is_what_the_code_prints():
    assert DOC.read_text(encoding="utf-8") == reference(), (
        "docs/config.md is stale: python -m lpfa.reference > docs/config.md"
    )


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.__name__)
def test_every_field_has_a_meaning_and_a_row(cls):
    text = reference()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type) or f.name in ("data", "model", "channel", "train"):
            continue
        assert field_docs(cls)[f.name], f"{cls.__name__}.{f.name} has no docstring"
        assert f"| `{f.name}` |" in text


def test_reference_says_what_an_empty_config_runs():
    text = reference()
    empty = C.RunConfig()
    assert "An empty file is a valid config" in text
    assert f"{empty.train.epochs} epochs" in text
    assert "-".join(map(str, empty.model.sizes)) in text


def test_a_section_left_out_is_named_as_the_defaults():
    cfg = C.from_dict(C.RunConfig, {"channel": {"rule": "rbp"}})
    lines = describe_run(cfg, given={"channel"}).splitlines()
    assert lines[0].startswith("seeds: defaults (not in the config) — 1 seed (0)")
    assert [line.split(":")[0] for line in lines] == ["seeds", "data", "model", "channel", "train"]
    assert "defaults" not in lines[3]
    assert all("defaults" in line for i, line in enumerate(lines) if i != 3)
    assert "(the MNIST net of Baldi et al. 2018)" in lines[2]


def test_describe_names_the_fields_that_differ_from_their_defaults():
    ch = C.ChannelConfig(rule=C.Rule.RBP, dropout=0.1, fprime=False)
    assert describe("channel", ch) == "rule rbp, fprime=false, dropout=0.1"
    assert describe("train", C.TrainConfig(epochs=1)) == "1 epoch, batch 100, lr 0.1"


def test_tables_inside_sections_get_their_own_reference():
    import dataclasses

    from lpfa.config import ConvLayerConfig, DeviceConfig

    text = reference()
    assert "## [model.device], [channel.device]: DeviceConfig" in text
    assert "## [[model.conv]]: ConvLayerConfig" in text
    for cls in (DeviceConfig, ConvLayerConfig):
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in text.split(f": {cls.__name__}\n", 1)[1]
    assert "| `channels` | integer | `(required)` |" in text  # no default: said so
    assert "table [`DeviceConfig`](#deviceconfig) or none" in text  # the field links to it
