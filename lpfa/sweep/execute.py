"""Running a sweep: train each pack, record every member in the store, resume, survive Ctrl-C.

Runs of one configuration are packed into one :func:`lpfa.training.train` call over their seeds
(the ensemble axis, see :meth:`lpfa.sweep.spec.Sweep.packs`), and each member is written to the
store as its own run. :func:`execute_pack` trains one pack and never raises for a failing run;
:func:`run_sweep` hands the packs to an executor (:mod:`lpfa.sweep.executors`: in-process, a
local process pool, or Dask), and writes each run as it starts and as it finishes.
"""

from __future__ import annotations

import dataclasses
import platform
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpfa.config import ConfigError, RunConfig, from_dict, to_dict
from lpfa.sweep.executors import (
    EXECUTORS,
    _interrupts_deferred,
    _interrupts_ignored,
    run_dask,
    run_inline,
    run_process_pool,
)
from lpfa.sweep.spec import Pack, Sweep
from lpfa.sweep.store import Store

__all__ = [
    "EXECUTORS",
    "SweepInterrupted",
    "SweepOutcome",
    "execute_pack",
    "pool_size",
    "run_sweep",
]


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
    from lpfa.data import load_cached
    from lpfa.training import DivergenceError, train, versions

    started = time.perf_counter()
    members: dict[int, dict[str, Any]] = {}
    try:
        cfg = from_dict(RunConfig, config)
        data = load_cached(cfg.data, cfg.model.sizes, cfg.model.dtype)
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
    if executor not in EXECUTORS:
        raise ConfigError("--executor", executor, f"must be one of {', '.join(EXECUTORS)}")
    options = {"workers": workers, "retries": retries, "progress": progress}
    options |= {"scheduler": scheduler, "processes": processes}
    options["scheduler_timeout"] = scheduler_timeout
    if isinstance(store, Store):
        return _run(sweep, store, executor, **options)
    with Store(store) as db:
        return _run(sweep, db, executor, **options)


def pool_size(executor: str, workers: int | None) -> int:
    """How many packs run at once: the process pool's workers (default one per core), else 1
    (in-process, and a Dask cluster, whose size lpfa does not know before it connects)."""
    from lpfa.threads import usable_cores

    return (workers or usable_cores()) if executor == "process" else 1


def _run(
    sweep: Sweep,
    db: Store,
    executor: str,
    *,
    workers: int | None,
    retries: int,
    progress: bool | None,
    scheduler: str | None,
    processes: bool,
    scheduler_timeout: float,
) -> SweepOutcome:
    """:func:`run_sweep` on an open store."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    status = db.statuses(sweep.name)
    done = {k for k, s in status.items() if s == "done"}
    packs = sweep.packs(skip=done, spread=pool_size(executor, workers))
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

    fn = execute_pack  # a global looked up now, so tests can replace it
    if executor == "inline":
        stream = run_inline(packs, start, fn, progress=progress, on_epoch=on_epoch)
    elif executor == "process":
        stream = run_process_pool(packs, start, fn, workers=workers, retries=retries)
    else:
        stream = run_dask(
            packs,
            start,
            fn,
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
        with _interrupts_ignored():  # a second Ctrl-C does not cut the cleanup short
            for pack, outcome in _finished_after_interrupt(stream):
                record(pack, outcome)
            for pack in live.values():  # stopped mid-run: not "running" any more
                for r in pack.runs:
                    db.finish(ids[r.key], "interrupted", error="stopped by Ctrl-C before it ended")
        raise SweepInterrupted(out, running) from None
    finally:
        stream.close()
        bar.close()
    out.seconds = round(time.perf_counter() - t0, 2)
    return out
