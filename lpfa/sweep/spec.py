"""Sweep specs: a TOML grid of runs, expanded and validated before anything runs.

A spec names a base config, overrides, axes and seeds (see ``docs/sweeps.md``)::

    name = "rules"                       # the sweep's name in the store (default: file stem)
    base = "../configs/quickstart.toml"  # a run config, relative to the spec (default: defaults)
    seeds = [0, 1, 2]                    # every configuration runs once per seed
    pack = true                          # seeds of one config train as one batched run
    [set]                                # overrides of the base, as ``--set`` paths
    train.epochs = 5
    [axes]                               # the product of these lists
    channel.rule = ["bp", "rbp", "srbp"]
    [zip]                                # lists walked together (equal lengths), × the axes
    [[grid]]                             # optional: a union of sub-grids, each with its own
    label = "nofp_{channel.rule}"        # label, set, axes and zip (× the top-level ones)
    [quick]                              # --quick: its own set and seeds
    [paper]                              # reference numbers per label, for the docs table:
                                         # table = "baldi2018_table1" (lpfa.papers), and/or
                                         # values = {label = number}, metric, scale, unit

Every run's config is built with :func:`lpfa.config.apply_overrides` and
:func:`lpfa.config.from_dict`, so values are validated exactly like ``--set``; all runs are
validated before anything runs, and an error names the spec field
(``axes.channel.dropout[2]=1.5: must be in [0, 1)``).

A run is one (configuration, seed); its identity is a hash of the config without seeds and name
(:func:`config_hash`) plus the seed. :meth:`Sweep.packs` groups the runs of one configuration
into a :class:`Pack` that trains as one ensemble (see :mod:`lpfa.sweep.execute`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpfa.config import ConfigError, RunConfig, apply_overrides, from_dict, read_toml, to_dict

__all__ = [
    "GRID_KEYS",
    "PAPER_KEYS",
    "QUICK_KEYS",
    "SPEC_KEYS",
    "Pack",
    "Run",
    "Sweep",
    "config_hash",
    "load_spec",
    "minus_defaults",
    "parse_spec",
]

SPEC_KEYS = ("name", "description", "base", "seeds", "pack", "set", "axes", "zip", "grid")
SPEC_KEYS += ("quick", "paper")
GRID_KEYS = ("label", "set", "axes", "zip")
QUICK_KEYS = ("set", "seeds", "name")
PAPER_KEYS = ("table", "metric", "scale", "unit", "values", "title")


@dataclass(frozen=True)
class Run:
    """One run: one configuration, one seed."""

    label: str
    """Row label (from the grid's ``label`` template, or the run's axis values)."""
    axes: dict[str, Any]
    """The run's coordinates: dotted config path -> value."""
    config: RunConfig
    """The full config, with ``seeds = (seed,)``."""
    config_hash: str
    """:func:`config_hash` of ``config``: the configuration, seeds and name left out."""
    seed: int
    """The member seed."""

    @property
    def key(self) -> tuple[str, int]:
        """The run's identity in the store: (config hash, seed)."""
        return (self.config_hash, self.seed)


@dataclass(frozen=True)
class Pack:
    """Runs of one configuration that train together as one ensemble (one ``train`` call)."""

    runs: tuple[Run, ...]

    @property
    def config(self) -> RunConfig:
        """The shared config with the pack's seeds on the ensemble axis."""
        return dataclasses.replace(self.runs[0].config, seeds=tuple(r.seed for r in self.runs))

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds on the pack's ensemble axis, in order."""
        return tuple(r.seed for r in self.runs)

    @property
    def member_epochs(self) -> int:
        """Epochs summed over the members: the pack's cost in member-epochs."""
        return len(self.runs) * self.runs[0].config.train.epochs


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: its runs in spec order, how to pack them, and the paper's numbers."""

    name: str
    runs: tuple[Run, ...]
    pack: bool | int = True
    paper: dict[str, Any] | None = None
    source: str | None = None

    def packs(self, skip: Iterable[tuple[str, int]] = (), *, spread: int = 1) -> list[Pack]:
        """The runs not in ``skip``, grouped into batched runs: by configuration, then into
        chunks of ``pack`` seeds (all seeds if True, one if False).

        ``spread``: where the spec leaves the pack size open (``pack = true``) and there are
        fewer configurations than ``spread``, each configuration's seeds are split evenly into
        enough packs for ``spread`` workers to have one each (on 2 cores, 8 seeds of the Baldi
        net train 1.3-1.4× faster as 2 packs of 4 on 2 workers than as one pack on 2 BLAS
        threads: benchmarks/bench_sweep.py, docs/sweeps.md). A packed member equals its single
        run to float rounding, so how the seeds are split changes no result beyond that.
        """
        skip = set(skip)
        groups: dict[str, list[Run]] = {}
        for run in self.runs:
            if run.key not in skip:
                groups.setdefault(run.config_hash, []).append(run)
        out = []
        for runs in groups.values():
            if self.pack is True:
                chunks = min(len(runs), max(1, -(-spread // len(groups))))
                size = -(-len(runs) // chunks)
            else:
                size = 1 if self.pack is False else min(int(self.pack), len(runs))
            out += [Pack(tuple(runs[i : i + size])) for i in range(0, len(runs), size)]
        return out


def config_hash(cfg: RunConfig) -> str:
    """A stable hash of a config without its seeds and name (16 hex digits).

    The name is a label only; two labels for the same configuration are one run. Only the fields
    that differ from :class:`RunConfig`'s defaults are hashed, so a field added to lpfa later (with
    a default that keeps today's behaviour) leaves every stored run's identity, and a long sweep's
    resume, intact. The cost: changing an existing default silently keeps old runs as current;
    a default that changes what a run computes must therefore bump the store's schema.
    """
    d = minus_defaults(to_dict(cfg), to_dict(RunConfig()))
    d.pop("seeds", None)
    d.pop("name", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def minus_defaults(d: dict, default: dict) -> dict:
    """The entries of ``d`` (nested sections included) that differ from ``default``: what a
    configuration says beyond the defaults, so that adding a field with a default changes it not."""
    out = {}
    for k, v in d.items():
        dv = default.get(k, _MISSING)
        if isinstance(v, dict) and isinstance(dv, dict):
            sub = minus_defaults(v, dv)
            if sub:
                out[k] = sub
        elif v != dv or type(v) is not type(dv):
            out[k] = v
    return out


_MISSING = object()


def _toml(value: Any) -> str:
    """A value as a TOML literal, so ``apply_overrides`` reads back what the spec held."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value)
            else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise ConfigError("value", value, "must be a TOML value")


def _flatten(table: Any, where: str, *, leaf_lists: bool) -> dict[str, Any]:
    """Nested TOML tables -> {dotted path: value}. With ``leaf_lists`` every leaf is an axis and
    must be a non-empty list."""
    if not isinstance(table, dict):
        raise ConfigError(where, table, "must be a table of dotted config paths")
    out: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, v in node.items():
            path = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(v, path + ".")
                continue
            if path.split(".")[0] == "seeds" or path == "name":
                raise ConfigError(
                    f"{where}.{path}",
                    v,
                    "seeds are the ensemble axis: list them in the spec's top-level seeds"
                    if path == "seeds"
                    else "the run name is set from the grid label",
                )
            if leaf_lists and (not isinstance(v, list) or not v):
                raise ConfigError(
                    f"{where}.{path}", v, "must be a non-empty list of values (one run per value)"
                )
            out[path] = v

    walk(table, "")
    return out


def _check_keys(table: Any, allowed: Sequence[str], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(where, table, "must be a table")
    for k, v in table.items():
        if k not in allowed:
            path = f"{where}.{k}" if where else k
            raise ConfigError(path, v, f"unknown spec field; allowed: {', '.join(allowed)}")
    return table


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | tuple):
        return "-".join(_short(x) for x in v)
    return str(v).lower() if isinstance(v, bool) else str(v)


_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]+)\}")


def _label(
    template: str | None,
    coords: dict[str, Any],
    config: dict[str, Any],
    where: str,
    unique: bool = False,
) -> str:
    """The label of one run: ``template`` with ``{dotted.path}`` filled from the config, then
    the run's axis values that the template does not name (unless the template alone is
    ``unique`` within its grid)."""
    if template is None:
        return ",".join(f"{p}={_short(v)}" for p, v in coords.items()) or "base"

    def fill(m: re.Match) -> str:
        node: Any = config
        for part in m.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(
                    f"{where}.label", template, f"{{{m.group(1)}}} is no config field"
                )
            node = node[part]
        return _short(node)

    label = _PLACEHOLDER.sub(fill, template)
    named = set(_PLACEHOLDER.findall(template))
    rest = ",".join(f"{p}={_short(v)}" for p, v in coords.items() if p not in named)
    return f"{label} {rest}" if rest and not unique else label


def load_spec(path: str | Path, *, quick: bool = False, overrides: Sequence[str] = ()) -> Sweep:
    """Read and validate a sweep spec (TOML); see :func:`parse_spec`."""
    path = Path(path)
    spec = read_toml(path, "spec")
    return parse_spec(
        spec,
        root=path.parent,
        default_name=path.stem,
        quick=quick,
        overrides=overrides,
        source=str(path),
    )


def parse_spec(
    spec: dict[str, Any],
    *,
    root: str | Path = ".",
    default_name: str = "sweep",
    quick: bool = False,
    overrides: Sequence[str] = (),
    source: str | None = None,
) -> Sweep:
    """Expand and validate a spec (a dict, as read from TOML) into a :class:`Sweep`.

    Parameters
    ----------
    spec : dict
    root : path
        Folder that ``base`` is relative to.
    quick : bool
        Apply the spec's ``[quick]`` table (its ``set`` after the spec's, its ``seeds``).
    overrides : sequence of str
        ``section.field=value`` overrides applied after the spec's own (``--set``).

    Raises
    ------
    ConfigError
        Naming the spec field (``grid[2].axes.channel.dropout[1]=1.5: must be in [0, 1)``).
    """
    _check_keys(spec, SPEC_KEYS, "")
    if not quick and "quick" in spec:  # a [quick] table is checked whether or not it is used
        kw = {"root": root, "default_name": default_name, "overrides": overrides}
        parse_spec(spec, quick=True, source=source, **kw)
    name = spec.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("name", name, "must be a non-empty string")
    base: dict[str, Any] = {}
    if "base" in spec:
        base = read_toml(Path(root) / str(spec["base"]), "base")
    base.pop("name", None)
    sets = [("set", _flatten(spec.get("set", {}), "set", leaf_lists=False))]
    seeds = spec.get("seeds", base.get("seeds", [0]))
    seeds_where = "seeds"
    if quick:
        if "quick" not in spec:
            raise ConfigError("--quick", True, "this spec has no [quick] table")
        q = _check_keys(spec["quick"], QUICK_KEYS, "quick")
        sets.append(("quick.set", _flatten(q.get("set", {}), "quick.set", leaf_lists=False)))
        if "seeds" in q:
            seeds, seeds_where = q["seeds"], "quick.seeds"
        name = q.get("name", f"{name}_quick")
    pack = spec.get("pack", True)
    if not (isinstance(pack, bool) or (isinstance(pack, int) and pack >= 1)):
        raise ConfigError("pack", pack, "must be true, false, or the most seeds per batch (>= 1)")
    try:
        from_dict(RunConfig, {"seeds": seeds})
    except ConfigError as err:
        raise ConfigError(seeds_where, seeds, err.allowed) from None
    paper = _paper(spec.get("paper"))

    grids = spec.get("grid", [{}])
    if not isinstance(grids, list) or not grids:
        raise ConfigError("grid", grids, "must be an array of tables ([[grid]])")
    top_axes = _flatten(spec.get("axes", {}), "axes", leaf_lists=True)
    top_zip = _flatten(spec.get("zip", {}), "zip", leaf_lists=True)
    runs: list[Run] = []
    seen: dict[str, str] = {}
    labels: dict[str, tuple[str, str]] = {}  # label -> (config hash, where it was made)
    for gi, grid in enumerate(grids):
        gw = f"grid[{gi}]" if "grid" in spec else ""
        _check_keys(grid, GRID_KEYS, gw or "grid")
        pre = f"{gw}." if gw else ""
        g_set = _flatten(grid.get("set", {}), f"{pre}set", leaf_lists=False)
        axes = [(f"axes.{p}", p, v) for p, v in top_axes.items()]
        axes += [
            (f"{pre}axes.{p}", p, v)
            for p, v in _flatten(grid.get("axes", {}), f"{pre}axes", leaf_lists=True).items()
        ]
        zips = [
            ("zip", top_zip),
            (f"{pre}zip", _flatten(grid.get("zip", {}), f"{pre}zip", leaf_lists=True)),
        ]
        _no_set_on_axes(overrides, [(w, p) for w, p, _ in axes], zips, (f"{pre}set", g_set))
        template = grid.get("label")
        if template is not None and not isinstance(template, str):
            raise ConfigError(f"{pre}label", template, "must be a string")
        # each dimension: a list of (coords, where-per-path) choices
        dims: list[list[tuple[dict[str, Any], dict[str, str]]]] = []
        for where, p, values in axes:
            dims.append([({p: v}, {p: f"{where}[{i}]"}) for i, v in enumerate(values)])
        for where, table in zips:
            if not table:
                continue
            lengths = {p: len(v) for p, v in table.items()}
            first = next(iter(table))
            for p, n in lengths.items():
                if n != lengths[first]:
                    raise ConfigError(
                        f"{where}.{p}",
                        table[p],
                        f"has {n} values; every list of a zip needs as many as "
                        f"{where}.{first} ({lengths[first]})",
                    )
            dims.append(
                [
                    ({p: v[i] for p, v in table.items()}, {p: f"{where}.{p}[{i}]" for p in table})
                    for i in range(lengths[first])
                ]
            )
        built: list[tuple[dict[str, Any], RunConfig]] = []
        for combo in itertools.product(*dims):
            coords: dict[str, Any] = {}
            wheres: dict[str, str] = {}
            for c, w in combo:
                for p in c:
                    if p in coords:
                        raise ConfigError(w[p], c[p], f"{p} is already an axis of this grid")
                coords.update(c)
                wheres.update(w)
            cfg = _build(base, sets, (f"{pre}set", g_set), coords, wheres, seeds, overrides, gw)
            built.append((coords, cfg))
        short = [_label(template, c, to_dict(cfg), gw or "grid", True) for c, cfg in built]
        unique = len(set(short)) == len(short)
        for coords, cfg in built:
            label = _label(template, coords, to_dict(cfg), gw or "grid", unique)
            cfg = dataclasses.replace(cfg, name=label)
            h = config_hash(cfg)
            here = gw + (" " if gw else "") + (json.dumps(coords) if coords else "base")
            if h in seen:
                raise ConfigError(
                    gw or "axes",
                    coords,
                    f"repeats the configuration of {seen[h]}; a run would be trained twice",
                )
            seen[h] = here
            if label in labels and labels[label][0] != h:
                raise ConfigError(
                    f"{pre}label",
                    label,
                    f"is also the label of {labels[label][1]}, another configuration; results "
                    "are grouped by label, so every configuration needs a label of its own",
                )
            labels[label] = (h, here)
            for s in seeds:
                runs.append(Run(label, coords, dataclasses.replace(cfg, seeds=(s,)), h, s))
    if paper is not None and paper["table"] is not None:  # the table's numbers for these labels
        ran = {r.label for r in runs}
        paper["values"] = {k: v for k, v in paper["values"].items() if k in ran}
    return Sweep(str(name), tuple(runs), pack, paper, source)


def _overlap(a: str, b: str) -> bool:
    """Whether two dotted paths set the same field (one is the other or lies inside it)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _no_set_on_axes(
    overrides: Sequence[str],
    axes: list[tuple[str, str]],
    zips: list[tuple[str, dict[str, Any]]],
    grid_set: tuple[str, dict[str, Any]],
) -> None:
    """Refuse a ``--set`` of a field that the grid sets itself (an axis, a zip or the grid's
    ``set``): the grid's value would silently win over the command line."""
    spec_paths = [(f"{w}", p) for w, p in axes]
    spec_paths += [(f"{w}.{p}", p) for w, table in zips for p in table]
    spec_paths += [(f"{grid_set[0]}.{p}", p) for p in grid_set[1]]
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.strip()
        for where, p in spec_paths:
            if _overlap(key, p):
                raise ConfigError(
                    f"--set {key}",
                    value.strip(),
                    f"the spec's {where} sets {'this field' if p == key else p} too, and its "
                    "value would win; drop the --set, or change the spec",
                )


def _build(
    base: dict[str, Any],
    sets: list[tuple[str, dict[str, Any]]],
    grid_set: tuple[str, dict[str, Any]],
    coords: dict[str, Any],
    wheres: dict[str, str],
    seeds: list[int],
    overrides: Sequence[str],
    grid_where: str,
) -> RunConfig:
    """One run's config, with its errors mapped back to the spec field that caused them."""
    origin: dict[str, str] = {}
    items: list[str] = []
    for where, table in sets:
        for p, v in table.items():
            items.append(f"{p}={_toml(v)}")
            origin[p] = f"{where}.{p}"
    for o in overrides:  # the command line's --set, after the spec's own, before the grid's
        items.append(o)
        origin[o.partition("=")[0].strip()] = "--set " + o.partition("=")[0].strip()
    for p, v in grid_set[1].items():
        items.append(f"{p}={_toml(v)}")
        origin[p] = f"{grid_set[0]}.{p}"
    for p, v in coords.items():
        items.append(f"{p}={_toml(v)}")
        origin[p] = wheres[p]
    try:
        data = apply_overrides(base, items)
        data["seeds"] = list(seeds)
        return from_dict(RunConfig, data)
    except ConfigError as err:
        for p in sorted(origin, key=len, reverse=True):
            if err.path == p or err.path.startswith((p + "[", p + ".")):
                allowed = err.allowed
                others = {q: v for q, v in coords.items() if q != p}
                if p not in coords and others:  # a set value clashing with an axis value
                    at = ", ".join(f"{q}={_short(v)}" for q, v in others.items())
                    allowed += f" (in the run with {at})"
                raise ConfigError(origin[p] + err.path[len(p) :], err.value, allowed) from None
        at = ", ".join(f"{p}={_short(v)}" for p, v in coords.items())
        raise ConfigError(
            f"{grid_where + ' ' if grid_where else ''}run ({at or 'base'}): {err.path}",
            err.value,
            err.allowed,
        ) from None


def _paper(table: Any) -> dict[str, Any] | None:
    if table is None:
        return None
    _check_keys(table, PAPER_KEYS, "paper")
    name = table.get("table")
    defaults: dict[str, Any] = {}
    if name is not None:  # a table of lpfa.papers: its numbers and how to read them
        from lpfa import papers

        if name not in papers.names():
            allowed = f"one of lpfa.papers' tables: {', '.join(papers.names())}"
            raise ConfigError("paper.table", name, allowed)
        info = papers.info(name)
        defaults = {
            "values": papers.values(name),
            "metric": info.get("metric", "test_acc"),
            "scale": float(info.get("scale", 1)),
            "unit": info.get("unit", ""),
            "title": info.get("title", ""),
        }
        table = {**defaults, **table, "values": {**defaults["values"], **table.get("values", {})}}
    values = table.get("values", {})
    if not isinstance(values, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()
    ):
        raise ConfigError("paper.values", values, "must map labels to numbers")
    scale = table.get("scale", 1)
    if not isinstance(scale, int | float) or isinstance(scale, bool):
        raise ConfigError("paper.scale", scale, "must be a number")
    return {
        "table": name,
        "metric": table.get("metric", "test_acc"),
        "scale": float(scale),
        "unit": table.get("unit", ""),
        "title": table.get("title", ""),
        "values": dict(values),
    }
