"""Fuzzing ``lpfa train`` with invalid configs and ``--set`` values.

Every invalid input, in the config file or on the command line, must exit 2 with one line on
stderr that names the field, the value and what is allowed, print no traceback, and leave the
``--out`` folder of an earlier run byte for byte as it was.
"""

import json
import math
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpfa.cli import main
from tests.unit.test_cli import CONFIG

BASE = tomllib.loads(CONFIG)  # 100 training examples, sizes (30, 8, 10), rule rbp


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, str):
        return json.dumps(v)  # printable ASCII: a TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)


def to_toml(data):
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, table in data.items():
        if isinstance(table, dict):
            lines += [f"[{section}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def case(field, values, shown, *context):
    """Invalid ``field`` values; ``shown(v)`` is how the error line names the value; ``context``
    are valid settings the case needs (``path=value`` pairs)."""
    return st.tuples(st.just(field), values, st.just(shown), st.just(context))


nonpositive = st.one_of(st.floats(max_value=0.0), st.sampled_from([math.nan, math.inf, -math.inf]))
name_chars = st.sampled_from("abcXYZ09_-. ")
bad_names = st.one_of(
    st.sampled_from([".", ".."]),
    st.tuples(
        st.text(name_chars, max_size=6), st.sampled_from("/\\"), st.text(name_chars, max_size=6)
    ).map("".join),
)
INVALID = st.one_of(
    case("train.lr", nonpositive, lambda v: repr(float(v))),
    case("train.epochs", st.integers(max_value=0), repr),
    case("train.batch_size", st.integers(101, 10**6), repr),
    case("train.momentum", st.one_of(st.floats(min_value=1.0), st.floats(max_value=-1e-9)), repr),
    case("channel.dropout", st.one_of(st.floats(min_value=1.0), st.floats(max_value=-1e-9)), repr),
    case("model.init_scale", nonpositive, lambda v: repr(float(v))),
    case(
        "model.sizes",
        st.integers(10**9, 10**13).map(lambda n: [30, n, 10]),
        lambda v: repr(tuple(v)),
    ),
    case("model.output", st.just("softmax"), repr),  # with loss=squared: not implemented
    case(
        "channel.skip_layers",
        st.integers(2, 10**6).map(lambda h: [h]),
        lambda v: repr(tuple(v)),
        ("channel.rule", "mixed"),
    ),
    case(
        "channel.feedback_nonzeros",  # 0 is allowed (no error reaches the hidden layers)
        st.one_of(st.floats(max_value=-1e-9), st.sampled_from([math.nan, math.inf])),
        lambda v: repr(float(v)),
        ("channel.feedback", "bernoulli"),
    ),
    case("name", bad_names, repr),
    case("backend", st.sampled_from(["tpu", "CUDA", "gpu", ""]), repr),
    case("seeds", st.integers(0, 5).map(lambda s: [s, s]), lambda v: repr(tuple(v))),
)


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """A finished run's folder and its bytes."""
    root = tmp_path_factory.mktemp("earlier")
    (root / "tiny.toml").write_text(CONFIG)
    out = root / "run"
    assert main(["train", str(root / "tiny.toml"), "--out", str(out), "--quiet"]) == 0
    return out, snapshot(out)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bad=INVALID,
    in_file=st.booleans(),
    noise=st.fixed_dictionaries(
        {"train.epochs": st.integers(1, 3), "seeds": st.sampled_from([[0], [0, 1], [3, 1, 2]])}
    ),
)
def test_every_invalid_input_is_one_line_exit_2_and_changes_nothing(
    earlier, tmp_path_factory, capsys, bad, in_file, noise
):
    field, value, shown, context = bad
    out, before = earlier
    settings_ = {**noise, **dict(context), field: value}
    data = json.loads(json.dumps(BASE))
    argv = []
    for path, v in settings_.items():
        if in_file:
            *sections, key = path.split(".")
            node = data
            for s in sections:
                node = node.setdefault(s, {})
            node[key] = v
        else:
            argv += ["--set", f"{path}={toml_value(v)}"]
    config = tmp_path_factory.mktemp("cfg") / "fuzz.toml"
    config.write_text(to_toml(data))
    capsys.readouterr()
    rc = main(["train", str(config), "--out", str(out), "--quiet", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    head = f"error: {field}={shown(value)}: "
    assert lines[0].startswith(head), (lines[0], head)
    assert len(lines[0]) > len(head) + 5  # says what is allowed
    assert snapshot(out) == before
