"""The run configuration in words: the field-by-field reference, and one-line descriptions.

The reference (``docs/config.md``) is generated from the dataclasses of :mod:`lpfa.config`:
their docstrings, the docstring under each field, the field's type and its default. A test
checks that the committed file equals what :func:`reference` prints, so the two cannot drift::

    python -m lpfa.reference > docs/config.md
"""

import ast
import dataclasses
import enum
import inspect
import re
import sys
import types
import typing
from collections.abc import Collection
from typing import Any

from lpfa.config import ChannelConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from lpfa.report import plural

__all__ = ["describe", "describe_run", "field_docs", "reference"]

# networks that a newcomer knows by their paper, named wherever a run's net is described
NAMED_NETS = {
    (784, 100, 100, 100, 100, 10): "the MNIST net of Baldi et al. 2018",
    (784, 1000, 10): "the MNIST net of Lillicrap et al. 2016",
}


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of the dataclass ``cls``, whitespace folded to one line.

    Python keeps no attribute docstrings at run time, so they are read from the class's source.
    A field without one maps to ``""``.
    """
    tree = ast.parse(inspect.cleandoc(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {f.name: "" for f in dataclasses.fields(cls)}
    for stmt, after in zip(body, [*body[1:], None], strict=True):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        is_doc = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        if is_doc and isinstance(after.value.value, str) and stmt.target.id in docs:
            docs[stmt.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def _sections() -> list[tuple[str, type]]:
    """The TOML sections of a run config: ("", RunConfig) for the top level, then each table."""
    hints = typing.get_type_hints(RunConfig)
    tables = [(f.name, hints[f.name]) for f in dataclasses.fields(RunConfig)]
    return [("", RunConfig)] + [(n, tp) for n, tp in tables if dataclasses.is_dataclass(tp)]


def _table_class(tp: Any) -> type | None:
    """The dataclass a field's type holds as a TOML table (``X | None``, ``tuple[X, ...]``)."""
    for t in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(t) and isinstance(t, type):
            return t
    return None


def _nested() -> dict[type, list[str]]:
    """The tables inside the sections (device physics, conv layers): class -> TOML paths,
    ``[[model.conv]]`` for an array of tables, in the order they first appear."""
    found: dict[type, list[str]] = {}
    for name, cls in _sections()[1:]:
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            inner = _table_class(tp)
            if inner is not None:
                many = typing.get_origin(tp) is tuple
                found.setdefault(inner, []).append(
                    f"[[{name}.{f.name}]]" if many else f"[{name}.{f.name}]"
                )
    return found


def _toml(value: Any) -> str:
    """A value as it is written in a TOML config."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return f'"{value.value}"'
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _type(tp: Any) -> str:
    """A field's type in TOML words; enums link to their list of values."""
    inner = _table_class(tp)
    if inner is not None:
        kind = "array of tables" if typing.get_origin(tp) is tuple else "table"
        link = f"{kind} [`{inner.__name__}`](#{inner.__name__.lower()})"
        none = type(None) in typing.get_args(tp)
        return link + (" or none" if none else "")
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        named = " or ".join(_type(a) for a in args if a is not type(None))
        return named + (" or none" if type(None) in args else "")
    if typing.get_origin(tp) is tuple:
        return f"list of {_type(typing.get_args(tp)[0])}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return f"[`{tp.__name__}`](#{tp.__name__.lower()})"
    words = {bool: "boolean", int: "integer", float: "float", str: "string"}
    return words.get(tp, getattr(tp, "__name__", str(tp)))


def _markdown(text: str) -> str:
    """reST inline markup of a docstring as markdown, safe inside a table cell."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"``\1``", text)
    return text.replace("``", "`").replace("|", "\\|")


def _enums() -> list[type[enum.Enum]]:
    """The named types (enums) the config fields use, in the order they first appear."""
    seen: list[type[enum.Enum]] = []
    for cls in [c for _, c in _sections()] + list(_nested()):
        for tp in typing.get_type_hints(cls).values():
            for t in (tp, *typing.get_args(tp)):
                if isinstance(t, type) and issubclass(t, enum.Enum) and t not in seen:
                    seen.append(t)
    return seen


def _enum_doc(tp: type[enum.Enum]) -> str:
    """An enum's docstring, its values and its aliases, as markdown."""
    doc = _markdown(inspect.cleandoc(tp.__doc__ or ""))
    values = ", ".join(f"`{m.value}`" for m in tp)
    aliases = getattr(tp, "_aliases", dict)()
    also = ", ".join(f"`{a}` (= `{v}`)" for a, v in aliases.items())
    return f"{doc}\n\nValues: {values}." + (f" Aliases: {also}." if also else "")


def describe(section: str, value: Any) -> str:
    """One line saying what a config section (or the top level) sets, in words.

    The facts a reader looks for first come first; every other field that differs from its
    default follows as ``field=value``.
    """
    head: list[str] = []
    shown: set[str] = set()
    if isinstance(value, DataConfig):
        n_train = "all" if value.n_train is None else f"{value.n_train}"
        n_test = "all" if value.n_test is None else f"{value.n_test}"
        head = [f"{value.name}, {n_train} training and {n_test} test examples"]
        shown = {"name", "n_train", "n_test"}
    elif isinstance(value, ModelConfig):
        net = "-".join(map(str, value.sizes))
        named = NAMED_NETS.get(value.sizes)
        head = [
            f"{net} {value.hidden.value} → {value.output.value}, {value.loss.value} loss"
            + (f" ({named})" if named else "")
        ]
        shown = {"sizes", "hidden", "output", "loss"}
    elif isinstance(value, ChannelConfig):
        head = [f"rule {value.rule.value}"]
        shown = {"rule"}
    elif isinstance(value, TrainConfig):
        head = [f"{plural(value.epochs, 'epoch')}, batch {value.batch_size}, lr {value.lr:g}"]
        shown = {"epochs", "batch_size", "lr"}
    elif isinstance(value, RunConfig):
        seeds = ", ".join(map(str, value.seeds))
        head = [f"{plural(len(value.seeds), 'seed')} ({seeds}), backend {value.backend}"]
        shown = {"seeds", "backend", "name"} | {n for n, _ in _sections()}
    default = type(value)()
    rest = [
        f"{f.name}={_toml(getattr(value, f.name))}"
        for f in dataclasses.fields(value)
        if f.name not in shown and getattr(value, f.name) != getattr(default, f.name)
    ]
    return ", ".join(head + rest)


def _parts(cfg: RunConfig) -> list[tuple[str, Any]]:
    """(section name, value) of every section of ``cfg``, the top level ("", cfg) first."""
    return [(name, getattr(cfg, name) if name else cfg) for name, _ in _sections()]


def describe_run(cfg: RunConfig, given: Collection[str] | None = None) -> str:
    """What a run trains, one line per section: seeds, data, net, rule, schedule.

    ``given`` holds the keys of the config as written (sections and top-level fields); a
    section it lacks is said to be the defaults, so an empty config does not start a long run
    silently. None: every section was given.
    """
    lines = []
    for name, value in _parts(cfg):
        key = name or "seeds"
        said = "defaults (not in the config) — " if given is not None and key not in given else ""
        lines.append(f"{name or 'seeds'}: {said}{describe(name, value)}")
    return "\n".join(lines)


def reference() -> str:
    """``docs/config.md``: every section and field of a run config, generated from the code."""
    empty = RunConfig()
    parts = [
        "# Configuration reference",
        "",
        "<!-- generated from lpfa/config.py by `python -m lpfa.reference > docs/config.md`; "
        "a test checks that this file matches the code -->",
        "",
        "A run is one TOML file: a few top-level fields and the tables `[data]`, `[model]`, "
        "`[channel]` and `[train]`. Every field is optional; one left out takes the default "
        "below. Any field can be overridden on the command line, "
        '`--set section.field=value`. A value of none (write `"none"`, or leave the field '
        "out) switches the feature off. Every value is checked on load; a wrong one is refused "
        "with one line naming the field, the value and what is allowed.",
        "",
        "## An empty config",
        "",
        "An empty file is a valid config. It runs:",
        "",
        *[f"- **{name or 'top level'}**: {describe(name, value)}" for name, value in _parts(empty)],
        "",
        f"That is {plural(empty.train.epochs, 'epoch')} of the full network on the whole data "
        "set: minutes to hours. `lpfa train` prints these lines for every section a config "
        "leaves out; `configs/quickstart.toml` is a run of a few seconds.",
    ]
    sections = [(f"[{n}]" if n else "Top level", cls, "") for n, cls in _sections()]
    for cls, paths in _nested().items():
        anchor = f'<a id="{cls.__name__.lower()}"></a>'
        sections.append((f"{', '.join(paths)}: {cls.__name__}", cls, anchor))
    for title, cls, anchor in sections:
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        parts += ["", f"## {title}", *([anchor] if anchor else []), ""]
        parts += [_markdown(inspect.cleandoc(cls.__doc__ or "")), ""]
        parts += ["| field | type | default | meaning |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                continue
            default = _default(f)
            parts.append(
                f"| `{f.name}` | {_type(hints[f.name])} | `{default}` | {_markdown(docs[f.name])} |"
            )
    parts += ["", "## Named values"]
    for tp in _enums():
        parts += ["", f"### {tp.__name__}", "", _enum_doc(tp)]
    return "\n".join(parts) + "\n"


def _default(f: dataclasses.Field) -> str:
    """A field's default as TOML, or "(required)"."""
    if f.default is not dataclasses.MISSING:
        return _toml(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return _toml(f.default_factory())
    return "(required)"


if __name__ == "__main__":
    sys.stdout.write(reference())
