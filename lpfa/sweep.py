"""Sweeps: a grid of runs from a TOML spec, packed by seed, run by an executor into the store.

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
    [paper]                              # reference numbers per label, for the docs table

Every run's config is built with :func:`lpfa.config.apply_overrides` and
:func:`lpfa.config.from_dict`, so values are validated exactly like ``--set``; all runs are
validated before anything runs, and an error names the spec field
(``axes.channel.dropout[2]=1.5: must be in [0, 1)``).

A run is one (configuration, seed); its identity is a hash of the config without seeds and name
(:func:`config_hash`) plus the seed. Runs of one configuration are packed into one
:func:`lpfa.train.train` call over their seeds (the ensemble axis), and each member is written to
the store as its own run. Executors: in-process (default), a local process pool, or Dask.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import platform
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpfa.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    from_dict,
    read_toml,
    to_dict,
)
from lpfa.store import Store

__all__ = [
    "Pack",
    "Run",
    "Sweep",
    "SweepInterrupted",
    "SweepOutcome",
    "config_hash",
    "dry_run",
    "execute_pack",
    "load_spec",
    "paper_table",
    "parse_spec",
    "run_sweep",
]

SPEC_KEYS = ("name", "description", "base", "seeds", "pack", "set", "axes", "zip", "grid")
SPEC_KEYS += ("quick", "paper")
GRID_KEYS = ("label", "set", "axes", "zip")
QUICK_KEYS = ("set", "seeds", "name")
PAPER_KEYS = ("metric", "scale", "unit", "values", "title")
EXECUTORS = ("inline", "process", "dask")


# --- the spec ---------------------------------------------------------------------------------


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
    seed: int

    @property
    def key(self) -> tuple[str, int]:
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
        return tuple(r.seed for r in self.runs)

    @property
    def member_epochs(self) -> int:
        return len(self.runs) * self.runs[0].config.train.epochs


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: its runs in spec order, how to pack them, and the paper's numbers."""

    name: str
    runs: tuple[Run, ...]
    pack: bool | int = True
    paper: dict[str, Any] | None = None
    source: str | None = None

    def packs(self, skip: Iterable[tuple[str, int]] = ()) -> list[Pack]:
        """The runs not in ``skip``, grouped into batched runs: by configuration, then into
        chunks of ``pack`` seeds (all seeds if True, one if False)."""
        skip = set(skip)
        groups: dict[str, list[Run]] = {}
        for run in self.runs:
            if run.key not in skip:
                groups.setdefault(run.config_hash, []).append(run)
        size = math.inf if self.pack is True else 1 if self.pack is False else int(self.pack)
        out = []
        for runs in groups.values():
            for i in range(0, len(runs), int(min(size, len(runs)))):
                out.append(Pack(tuple(runs[i : i + int(min(size, len(runs)))])))
        return out


def config_hash(cfg: RunConfig) -> str:
    """A stable hash of a config without its seeds and name (16 hex digits).

    The name is a label only; two labels for the same configuration are one run.
    """
    d = to_dict(cfg)
    d.pop("seeds")
    d.pop("name")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


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
    values = table.get("values", {})
    if not isinstance(values, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()
    ):
        raise ConfigError("paper.values", values, "must map labels to numbers")
    scale = table.get("scale", 1)
    if not isinstance(scale, int | float) or isinstance(scale, bool):
        raise ConfigError("paper.scale", scale, "must be a number")
    return {
        "metric": table.get("metric", "test_acc"),
        "scale": float(scale),
        "unit": table.get("unit", ""),
        "title": table.get("title", ""),
        "values": dict(values),
    }


# --- running one pack -------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _dataset(data_json: str, sizes: tuple[int, ...], dtype: str):
    """Data sets are loaded once per worker process and shared by its packs."""
    from lpfa.config import DataConfig
    from lpfa.data import load

    return load(from_dict(DataConfig, json.loads(data_json)), sizes, dtype)


def execute_pack(
    config: dict[str, Any],
    *,
    progress: bool | None = False,
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    """Train one pack (a config dict with its seeds) and return plain results, never raising
    for a failing run: ``{"members": {seed: {"status", "history", "error", "traceback"}},
    "seconds", "versions"}``.

    A member that diverges is recorded as ``diverged``; the others are trained again without it
    (members are independent, so their results do not change).
    """
    from lpfa.train import DivergenceError, train, versions

    started = time.perf_counter()
    members: dict[int, dict[str, Any]] = {}
    try:
        cfg = from_dict(RunConfig, config)
        data = _dataset(
            json.dumps(config["data"], sort_keys=True), cfg.model.sizes, cfg.model.dtype
        )
        seeds = list(cfg.seeds)
        while seeds:
            try:
                result = train(
                    dataclasses.replace(cfg, seeds=tuple(seeds)),
                    data=data,
                    progress=progress,
                    on_epoch=on_epoch,
                )
            except DivergenceError as err:
                members[err.seed] = {
                    "status": "diverged",
                    "history": [r for r in err.history if r["seed"] == err.seed],
                    "error": str(err),
                    "traceback": None,
                }
                seeds.remove(err.seed)
                continue
            for s in seeds:
                members[s] = {
                    "status": "done",
                    "history": [r for r in result.history if r["seed"] == s],
                    "error": None,
                    "traceback": None,
                }
            break
    except Exception as err:  # a run that raises is recorded as failed; the sweep goes on
        tb = traceback.format_exc()
        for s in config.get("seeds", []):
            members.setdefault(
                s,
                {
                    "status": "failed",
                    "history": [],
                    "error": f"{type(err).__name__}: {err}",
                    "traceback": tb,
                },
            )
    return {
        "members": members,
        "seconds": round(time.perf_counter() - started, 3),
        "versions": versions(),
        "host": platform.node(),
    }


# --- executors --------------------------------------------------------------------------------
# Each executor takes the packs and yields (pack, outcome) as they finish; ``outcome`` is what
# ``execute_pack`` returns, or an exception raised outside it (a worker that died for good).


def _inline(
    packs: list[Pack], start: Callable[[Pack], None], progress: bool | None, on_epoch: Callable
) -> Iterator[tuple[Pack, Any]]:
    for pack in packs:
        start(pack)
        yield (
            pack,
            execute_pack(
                to_dict(pack.config),
                progress=progress,
                on_epoch=functools.partial(on_epoch, pack),
            ),
        )


# the queue on which a pool worker says which pack it starts (set by _pool_init)
_started_queue = None


def _pool_init(started: Any, n_workers: int) -> None:
    """Set up a process-pool worker: no Ctrl-C of its own, its share of the BLAS threads, and
    an exit of its own when the parent dies (kill -9), so that no orphan trains on."""
    global _started_queue
    from lpfa.threads import set_threads, worker_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool on Ctrl-C
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _started_queue = started
    set_threads(default=worker_threads(n_workers))
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.25)
        os._exit(1)

    threading.Thread(target=watch, name="lpfa-parent-watch", daemon=True).start()


def _pool_task(fn: Callable[[dict[str, Any]], Any], token: int, config: dict[str, Any]) -> Any:
    """Run one pack in a pool worker, first telling the parent that it starts."""
    _started_queue.put(token)
    return fn(config)


def _stop_pool(pool: Any) -> None:
    """Stop a process pool now: cancel what is queued, terminate the workers, reap them."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=3)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=3)


class _SigintDeferred:
    """Hold SIGINT back (while the pool forks its workers, so that they start with it blocked
    and can ignore it before a Ctrl-C reaches them); a Ctrl-C meanwhile arrives afterwards."""

    def __enter__(self) -> None:
        self.mask = hasattr(signal, "pthread_sigmask")
        if self.mask:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def __exit__(self, *exc: object) -> None:
        if self.mask:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _sigint_ignored() -> Any:
    """A context in which a second Ctrl-C does not interrupt the cleanup after the first."""
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def ignored() -> Iterator[None]:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old)

    return ignored()


def _begin(begun: set[int], start: Callable[[Pack], None], token: int, pack: Pack) -> None:
    """Mark a pack started, once."""
    if token not in begun:
        begun.add(token)
        start(pack)


def _process(
    packs: list[Pack], start: Callable[[Pack], None], workers: int | None, retries: int
) -> Iterator[tuple[Pack, Any]]:
    """A local process pool of ``workers`` processes (default: one per core).

    A pack is marked started when a worker begins it (the worker says so on a queue), not
    when it is queued. A pool broken by a dying worker is rebuilt and its packs rerun. When
    the consumer stops (Ctrl-C, an error, or it closes this generator), queued packs are
    cancelled and the workers terminated at once; nothing waits for their work.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from lpfa.threads import usable_cores

    fn = execute_pack  # a global looked up now, so tests can replace it
    n = workers or usable_cores()
    ctx = multiprocessing.get_context()
    todo = list(packs)
    tries = {id(p): 0 for p in packs}
    while todo:
        started = ctx.SimpleQueue()
        running: dict[Any, tuple[int, Pack]] = {}
        begin = functools.partial(_begin, set(), start)
        pool = None
        try:
            with _SigintDeferred():
                pool = ProcessPoolExecutor(
                    max_workers=n, mp_context=ctx, initializer=_pool_init, initargs=(started, n)
                )
                for token, p in enumerate(todo):
                    tries[id(p)] += 1
                    running[pool.submit(_pool_task, fn, token, to_dict(p.config))] = (token, p)
            tokens = {t: p for t, p in running.values()}
            todo = []
            while running:
                finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                while not started.empty():
                    t = started.get()
                    begin(t, tokens[t])
                for fut in finished:
                    token, pack = running.pop(fut)
                    try:
                        outcome = fut.result()
                    except BrokenProcessPool as err:
                        if tries[id(pack)] <= retries:
                            todo.append(pack)
                            continue
                        outcome = err
                    begin(token, pack)  # its start message may have died with its worker
                    yield pack, outcome
        except KeyboardInterrupt:
            with _sigint_ignored():
                _stop_pool(pool)
            # what had finished before the workers stopped is kept, not lost
            for fut, (token, pack) in list(running.items()):
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    running.pop(fut)
                    begin(token, pack)
                    yield pack, fut.result()
            raise
        finally:
            if pool is not None:
                with _sigint_ignored():
                    if running:
                        _stop_pool(pool)
                    else:
                        pool.shutdown(wait=True)
            started.close()


def _dask(
    packs: list[Pack],
    start: Callable[[Pack], None],
    *,
    scheduler: str | None,
    workers: int | None,
    processes: bool,
    retries: int,
    sweep: str,
    scheduler_timeout: float = 5.0,
) -> Iterator[tuple[Pack, Any]]:
    """Dask futures: the scheduler reruns the task of a worker that dies (up to its
    ``distributed.scheduler.allowed-failures``), ``retries`` reruns a task that raised."""
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers or 1,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=scheduler_timeout)
        except (OSError, TimeoutError):
            raise ConfigError(
                "--scheduler",
                scheduler,
                f"no Dask scheduler answered within {scheduler_timeout:g} s "
                "(--scheduler-timeout SECONDS waits longer)",
            ) from None
    try:
        if cluster is not None and not processes:  # the workers are threads of this process
            _limit_worker_threads(workers or 1)
        else:
            _dask_threads(client)
        fn = execute_pack  # a global looked up now, so tests can replace it
        futures = {}
        for p in packs:
            key = f"lpfa-{sweep}-{p.runs[0].config_hash}-{'-'.join(map(str, p.seeds))}"
            fut = client.submit(fn, to_dict(p.config), key=key, pure=False, retries=retries)
            futures[fut] = p
        yield from _as_started_and_finished(client, futures, start)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _as_started_and_finished(
    client: Any, futures: dict[Any, Pack], start: Callable[[Pack], None], poll: float = 0.25
) -> Iterator[tuple[Pack, Any]]:
    """Mark a pack running when the scheduler hands it to a worker, and yield it when it ends.

    "running" then means started, as for the other executors, not merely submitted: the
    scheduler's ``processing`` set is polled every ``poll`` seconds while nothing finishes.
    """
    from distributed import wait

    pending, started = set(futures), set()
    while pending:
        try:
            done, pending = wait(list(pending), timeout=poll, return_when="FIRST_COMPLETED")
        except TimeoutError:  # nothing finished within the poll
            done = set()
        busy = {key for keys in client.processing().values() for key in keys}
        for fut in [*done, *pending]:
            if fut not in started and (fut in done or fut.key in busy):
                start(futures[fut])
                started.add(fut)
        for fut in done:
            try:
                yield futures[fut], fut.result()
            except Exception as err:  # KilledWorker, or an error outside execute_pack
                yield futures[fut], err
        pending = set(pending)


def _limit_worker_threads(n_workers: int) -> int:
    """On a Dask worker: its share of the BLAS threads of its machine."""
    from lpfa.threads import set_threads, worker_threads

    return set_threads(default=worker_threads(n_workers))


def _dask_threads(client: Any) -> None:
    """Give every Dask worker cores ÷ (workers on its machine) BLAS threads.

    Best effort: the call runs in a worker's own thread, and some BLAS builds take a thread
    limit only from the thread that loaded them; Dask's nanny starts each worker process with
    one BLAS thread (``OPENBLAS_NUM_THREADS=1``) in any case.
    """
    hosts: dict[str, list[str]] = {}
    for address, info in client.scheduler_info().get("workers", {}).items():
        hosts.setdefault(info.get("host", address), []).append(address)
    for addresses in hosts.values():
        client.run(_limit_worker_threads, len(addresses), workers=addresses)


# --- the sweep --------------------------------------------------------------------------------


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_sweep`; every finished run is in the store as it finished.

    ``str()`` is the one line to print; ``outcome`` what was done, ``stopped`` the runs that
    were running and ``not_started`` the runs that had not started.
    """

    def __init__(self, outcome: SweepOutcome, stopped: int):
        self.outcome, self.stopped = outcome, stopped
        finished = outcome.skipped + outcome.done + outcome.failed + outcome.diverged
        self.not_started = outcome.total - finished - stopped
        super().__init__(
            f"interrupted: {finished} done, {stopped} stopped while running, "
            f"{self.not_started} not started; rerun the same command to resume"
        )


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did."""

    sweep: str
    total: int
    skipped: int
    done: int = 0
    failed: int = 0
    diverged: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block is done (a store write), then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if caught and callable(old):
        old(signal.SIGINT, None)


def _finished_after_interrupt(stream: Iterator[tuple[Pack, Any]]) -> Iterator[tuple[Pack, Any]]:
    """Tell an executor's stream about a Ctrl-C and take what it had finished: it stops its
    workers, yields the packs that finished, and raises the interrupt again."""
    try:
        item = stream.throw(KeyboardInterrupt())
        while True:
            yield item
            item = next(stream)
    except (KeyboardInterrupt, StopIteration):
        return


def run_sweep(
    sweep: Sweep,
    store: str | Path | Store,
    *,
    executor: str = "inline",
    workers: int | None = None,
    scheduler: str | None = None,
    processes: bool = True,
    retries: int = 2,
    progress: bool | None = None,
    scheduler_timeout: float = 5.0,
) -> SweepOutcome:
    """Run the sweep's unfinished runs and record every one in ``store``.

    Parameters
    ----------
    sweep : Sweep
    store : path or Store
    executor : {"inline", "process", "dask"}
        ``inline`` trains pack after pack in this process (with per-epoch progress);
        ``process`` in a local pool of ``workers`` processes; ``dask`` on the cluster at
        ``scheduler``, or on a ``LocalCluster`` of ``workers`` workers started here
        (``processes=False``: threads of this process).
    retries : int
        Reruns of a pack whose worker died (process pool), or that raised outside training
        (Dask; a dead Dask worker's task is rerun by the scheduler itself).
    progress : bool or None
        Progress bars (sweep: runs done / running / failed and ETA; inline: each run's
        batches); None shows them on a terminal.
    scheduler_timeout : float
        Seconds to wait for the Dask scheduler at ``scheduler`` to answer.

    Runs already ``done`` in the store are skipped (resume). A run that raises is recorded as
    ``failed`` with its traceback and the sweep goes on. A run is ``running`` in the store from
    the moment it starts (in a process pool: when a worker begins it) and is written ``done``
    when it finishes, in one transaction.

    Raises
    ------
    SweepInterrupted
        On Ctrl-C: the workers are stopped, every finished run is kept, and running the
        same sweep again resumes with what did not finish.
    ConfigError
        A bad executor, or a Dask scheduler that does not answer.
    """
    from tqdm.auto import tqdm

    if executor not in EXECUTORS:
        raise ConfigError("--executor", executor, f"must be one of {', '.join(EXECUTORS)}")
    db = store if isinstance(store, Store) else Store(store)
    t0 = time.perf_counter()
    status = db.statuses(sweep.name)
    done = {k for k, s in status.items() if s == "done"}
    packs = sweep.packs(skip=done)
    out = SweepOutcome(sweep.name, len(sweep.runs), sum(r.key in done for r in sweep.runs))
    ids: dict[tuple[str, int], int] = {}
    running = 0
    live: dict[int, Pack] = {}  # started and not yet recorded, by id(pack)
    disable = None if progress is None else not progress
    bar = tqdm(
        total=out.total,
        initial=out.skipped,
        desc=sweep.name,
        unit="run",
        disable=disable,
        dynamic_ncols=True,
    )

    def show(extra: str = "") -> None:
        bar.set_postfix_str(
            f"done {out.done + out.skipped}, running {running}, "
            f"failed {out.failed + out.diverged}{extra}",
            refresh=True,
        )

    def start(pack: Pack) -> None:
        nonlocal running
        for r in pack.runs:
            ids[r.key] = db.start(
                sweep.name, r.label, r.config_hash, r.seed, to_dict(r.config), r.axes, pack.seeds
            )
        live[id(pack)] = pack
        running += len(pack.runs)
        show()

    def on_epoch(pack: Pack, rows: list[dict[str, Any]]) -> None:
        show(f" | {pack.runs[0].label} epoch {rows[0]['epoch']}/{pack.runs[0].config.train.epochs}")

    if executor == "inline":
        stream = _inline(packs, start, progress, on_epoch)
    elif executor == "process":
        stream = _process(packs, start, workers, retries)
    else:
        stream = _dask(
            packs,
            start,
            scheduler=scheduler,
            workers=workers,
            processes=processes,
            retries=retries,
            sweep=sweep.name,
            scheduler_timeout=scheduler_timeout,
        )

    def record(pack: Pack, outcome: Any) -> None:
        nonlocal running
        with _interrupts_deferred():  # a finished run is written whole, Ctrl-C or not
            if isinstance(outcome, BaseException):
                tb = "".join(traceback.format_exception(outcome))
                outcome = {
                    "members": {
                        s: {
                            "status": "failed",
                            "history": [],
                            "traceback": tb,
                            "error": f"{type(outcome).__name__}: {outcome}",
                        }
                        for s in pack.seeds
                    },
                    "seconds": None,
                    "versions": {},
                }
            for r in pack.runs:
                m = outcome["members"][r.seed]
                db.finish(
                    ids[r.key],
                    m["status"],
                    m["history"],
                    error=m["error"],
                    traceback=m["traceback"],
                    seconds=outcome["seconds"],
                    versions=outcome["versions"],
                )
                setattr(out, m["status"], getattr(out, m["status"]) + 1)
                if m["error"]:
                    out.errors.append(f"{r.label} seed {r.seed}: {m['error']}")
            running -= len(pack.runs)
            live.pop(id(pack), None)
        bar.update(len(pack.runs))
        show()

    try:
        for pack, outcome in stream:
            record(pack, outcome)
    except KeyboardInterrupt:
        with _sigint_ignored():  # a second Ctrl-C does not cut the cleanup short
            for pack, outcome in _finished_after_interrupt(stream):
                record(pack, outcome)
            for pack in live.values():  # stopped mid-run: not "running" any more
                for r in pack.runs:
                    db.finish(ids[r.key], "interrupted", error="stopped by Ctrl-C before it ended")
        raise SweepInterrupted(out, running) from None
    finally:
        stream.close()
        bar.close()
        if not isinstance(store, Store):
            db.close()
    out.seconds = round(time.perf_counter() - t0, 2)
    return out


def _n_train(cfg: RunConfig) -> int | None:
    if cfg.data.n_train is not None:
        return cfg.data.n_train
    return {"mnist": 60_000, "fashion-mnist": 60_000}.get(cfg.data.name, 10_000)


def dry_run(sweep: Sweep, store: str | Path | None = None) -> str:
    """The runs, how they are packed, their status in ``store`` and their cost, as text."""
    status: dict[tuple[str, int], str] = {}
    if store is not None and Path(store).is_file():
        with Store(store, readonly=True) as db:
            status = db.statuses(sweep.name)
    done = {k for k, s in status.items() if s == "done"}
    packs = sweep.packs()
    pending = sweep.packs(skip=done)
    n_cfg = len({r.config_hash for r in sweep.runs})
    how = (
        "all seeds of a configuration together"
        if sweep.pack is True
        else "one seed each"
        if sweep.pack is False
        else f"up to {sweep.pack} seeds each"
    )
    head = [
        f"sweep {sweep.name}: {n_cfg} configurations, {len(sweep.runs)} runs "
        f"(configuration × seed), packed into {len(packs)} batched runs "
        f"({how})",
    ]
    rows = [["#", "label", "seeds", "epochs", "member-epochs", "member-samples", "status"]]
    for i, p in enumerate(packs, 1):
        st = sorted({status.get(r.key, "new") for r in p.runs})
        n = _n_train(p.runs[0].config)
        rows.append(
            [
                str(i),
                p.runs[0].label,
                ",".join(map(str, p.seeds)),
                str(p.runs[0].config.train.epochs),
                str(p.member_epochs),
                f"{p.member_epochs * n:,}" if n else "?",
                "/".join(st),
            ]
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    table = ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    total = sum(p.member_epochs for p in packs)
    todo = sum(p.member_epochs for p in pending)
    samples = sum(p.member_epochs * (_n_train(p.runs[0].config) or 0) for p in pending)
    foot = (
        f"cost: {total} member-epochs in all; {todo} to run "
        f"({sum(len(p.runs) for p in pending)} runs in {len(pending)} batched runs, "
        f"{samples:,} member-samples); {len(done)} runs already done"
    )
    return "\n".join([*head, "", *table, "", foot])


def paper_table(sweep: Sweep, store: str | Path | Store, *, title: str | None = None) -> str:
    """A markdown table of the sweep's results next to its ``[paper]`` numbers (ours, paper,
    difference), one row per label of the spec that has finished runs in ``store``."""
    from lpfa.report import comparison_table
    from lpfa.store import results

    if sweep.paper is None:
        raise ConfigError("paper", None, "the spec has no [paper] table to compare with")
    paper = sweep.paper
    metric = paper["metric"]
    hashes = {r.config_hash for r in sweep.runs}  # not runs an older spec left in the store
    rows = results(
        store, sweep=sweep.name, by=["label"], metrics=[metric, "epochs"], config_hashes=hashes
    )
    by_label = {r["label"]: r for r in rows}
    table_rows = []
    for label in dict.fromkeys(r.label for r in sweep.runs):
        r = by_label.get(label)
        if r is None or r[f"{metric}_mean"] is None:
            continue
        table_rows.append(
            {
                "label": f"{label} (epoch {r['epochs_mean']:g})",
                "mean": r[f"{metric}_mean"] * paper["scale"],
                "std": r[f"{metric}_std"] * paper["scale"],
                "n": r["n"],
                "paper": paper["values"].get(label),
            }
        )
    if not table_rows:
        raise ConfigError(
            "store",
            str(store.path if isinstance(store, Store) else store),
            f"holds no finished runs of this spec; run lpfa sweep {sweep.source}",
        )
    table = comparison_table(table_rows, unit=paper["unit"] or metric)
    # the target columns are the experiments' business; the sweep table has none
    lines = []
    for line in table.splitlines():
        cells = line.split("|")
        lines.append("|".join([*cells[:-3], ""]))
    head = f"{title or paper['title'] or sweep.name}\n\n" if (title or paper["title"]) else ""
    return head + "\n".join(lines) + "\n"
