"""The papers' published numbers as data: one CSV file per table, one label scheme.

Each ``<paper><year>_<table|fig><n>.csv`` in this package holds one table of a paper, a row per
number, keyed by a ``label`` that is also the label of the run that reproduces it (experiments,
sweeps and the audit use the same labels, so results join the paper on every row). A file
starts with ``# key: value`` lines (``title``, ``metric``: lpfa's name for what the numbers
measure, ``unit``, ``scale``: our metric × scale is in the paper's unit, ``base``: the config the
overrides apply to) and other ``#`` comments, then the columns

- ``label``: the row's name, e.g. ``dropout10_rbp``;
- ``value``, ``std``: the paper's number and its spread (empty where the paper gives none);
- ``overrides``: the row's setting in lpfa as ``section.field=value`` paths (``;`` between
  them) on the ``base`` config; empty where lpfa has none;
- anything else the table needs to be read (here: ``dataset``, ``row``, ``column``).

Adding a table is adding its CSV file here; :func:`names` lists them, :func:`configs` builds
the runs of its rows.
"""

import csv
import functools
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

__all__ = ["configs", "info", "join", "names", "table", "value", "values", "variants"]

_NUMBERS = ("value", "std")
_HEADER = ("title", "metric", "unit", "scale", "base")


@functools.cache
def _read(name: str) -> tuple[dict[str, str], tuple[dict[str, Any], ...]]:
    """The ``# key: value`` header and the rows of table ``name`` (parsed once)."""
    path = resources.files(__name__).joinpath(f"{name}.csv")
    if not path.is_file():
        raise KeyError(f"name={name!r}: no such paper table; allowed: {', '.join(names())}")
    meta: dict[str, str] = {}
    body: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            key, sep, text = line[1:].partition(":")
            if sep and key.strip() in _HEADER:
                meta[key.strip()] = text.strip()
        elif line.strip():
            body.append(line)
    rows = []
    for raw in csv.DictReader(body):
        row: dict[str, Any] = dict(raw)
        for key in _NUMBERS:
            row[key] = float(raw[key]) if raw.get(key) else None
        row["overrides"] = [s.strip() for s in raw.get("overrides", "").split(";") if s.strip()]
        rows.append(row)
    return meta, tuple(rows)


def names() -> list[str]:
    """The tables in this package, e.g. ``["baldi2018_table1"]``."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".csv") for f in files if f.name.endswith(".csv"))


def info(name: str) -> dict[str, str]:
    """The header of table ``name``: ``title``, ``metric``, ``unit``, ``scale``, ``base``."""
    return dict(_read(name)[0])


def table(name: str) -> list[dict[str, Any]]:
    """The rows of table ``name``, in the paper's order.

    Each row has every column of the file; ``value`` and ``std`` are floats or None,
    ``overrides`` a list of ``section.field=value`` strings.
    """
    return [{**r, "overrides": list(r["overrides"])} for r in _read(name)[1]]


def values(name: str, labels: Iterable[str] | None = None) -> dict[str, float]:
    """``label -> value`` of table ``name`` (all its labels, or those given, in that order)."""
    known = {r["label"]: r["value"] for r in _read(name)[1]}
    if labels is None:
        return known
    labels = list(labels)
    missing = [k for k in labels if k not in known]
    if missing:
        raise KeyError(f"labels={missing}: not in paper table {name!r}")
    return {k: known[k] for k in labels}


def value(name: str, label: str) -> float:
    """The paper's number for ``label`` in table ``name``."""
    return values(name, [label])[label]


def variants(name: str, labels: Iterable[str] | None = None) -> dict[str, list[str]]:
    """``label -> overrides``: lpfa's setting of each row that has one (or of ``labels``)."""
    rows = {r["label"]: r["overrides"] for r in table(name)}
    if labels is None:
        return {k: v for k, v in rows.items() if v}
    labels = list(labels)
    missing = [k for k in labels if not rows.get(k)]
    if missing:
        raise KeyError(f"labels={missing}: no lpfa setting in paper table {name!r}")
    return {k: rows[k] for k in labels}


def configs(name: str, base: Any, labels: Iterable[str] | None = None) -> dict[str, Any]:
    """``label -> RunConfig``: ``base`` with each row's overrides, named after the row.

    ``base`` (a :class:`lpfa.config.RunConfig`) is the table's ``base`` config with the caller's
    seeds, backend or shortened schedule; each override is validated like ``--set``.
    """
    from lpfa.config import RunConfig, apply_overrides, from_dict, to_dict

    data = to_dict(base)
    return {
        label: from_dict(RunConfig, {**apply_overrides(data, overrides), "name": label})
        for label, overrides in variants(name, labels).items()
    }


def join(
    rows: Sequence[Mapping[str, Any]], name: str, *, key: str = "label"
) -> list[dict[str, Any]]:
    """``rows`` (results, one per label) with the paper's numbers added to every row.

    Each returned row has ``paper`` and ``paper_std`` (None where the table has no such
    label); the paper's numbers are in its unit (``info(name)["unit"]``, e.g. a test accuracy
    of 0.979 is 97.9 with ``scale`` 100).
    """
    by_label = {r["label"]: r for r in _read(name)[1]}
    out = []
    for row in rows:
        paper = by_label.get(row[key], {})
        out.append({**row, "paper": paper.get("value"), "paper_std": paper.get("std")})
    return out
