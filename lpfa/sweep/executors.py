"""Executors of a sweep: in this process, in a local process pool, or on a Dask cluster.

Each executor takes the packs, a ``start(pack)`` callback and the function that trains one pack
(:func:`lpfa.sweep.execute.execute_pack`, or a test's stand-in), and yields ``(pack, outcome)``
as packs finish; ``outcome`` is what ``fn`` returns, or an exception raised outside it (a worker
that died for good). ``start`` is called when a pack really starts, not when it is queued.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from lpfa.config import ConfigError, to_dict
from lpfa.sweep.spec import Pack

__all__ = ["EXECUTORS", "PackFn", "run_dask", "run_inline", "run_process_pool"]

EXECUTORS = ("inline", "process", "dask")

PackFn = Callable[..., dict[str, Any]]
"""Trains one pack: ``fn(config_dict, **options) -> outcome`` (see ``execute_pack``)."""


def run_inline(
    packs: list[Pack],
    start: Callable[[Pack], None],
    fn: PackFn,
    *,
    progress: bool | None,
    on_epoch: Callable[[Pack, list[dict[str, Any]]], None],
) -> Iterator[tuple[Pack, Any]]:
    """Train pack after pack in this process, with per-epoch progress."""
    for pack in packs:
        start(pack)
        yield (
            pack,
            fn(
                to_dict(pack.config),
                progress=progress,
                on_epoch=functools.partial(on_epoch, pack),
            ),
        )


# the queue on which a pool worker says which pack it starts (set by _pool_init)
_started_queue = None


def _pool_init(started: Any, n_workers: int) -> None:
    """Set up a process-pool worker: no Ctrl-C of its own, SIGTERM ending it, its share of the
    BLAS threads, and an exit of its own when the parent dies (kill -9), so that no orphan
    trains on."""
    global _started_queue
    from lpfa.threads import set_threads, worker_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool on Ctrl-C
    # the parent's SIGTERM-as-Ctrl-C handler (lpfa.runfiles.terminate_as_interrupt) is inherited
    # by the fork; the parent stops a worker with SIGTERM, which must end it, not raise in it
    # (a KeyboardInterrupt in an idle worker printed a traceback from multiprocessing)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
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
    results = getattr(pool, "_result_queue", None)  # shutdown() forgets it
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=3)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=3)
    # A worker killed while sending a result leaves half a message in the result pipe, and the
    # pool's manager thread waits in recv() for the rest for ever; the interpreter joins that
    # thread at exit, so the process would hang there. With the workers gone, closing the
    # parent's write end (it never writes) turns the wait into an end of file, which the thread
    # takes for a broken pool and ends.
    if results is not None and not any(proc.is_alive() for proc in procs):
        results._writer.close()


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


# the signals that stop a sweep as Ctrl-C does (SIGTERM: lpfa.runfiles.terminate_as_interrupt)
_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def _interrupts_ignored() -> Any:
    """A context in which a second Ctrl-C or SIGTERM does not cut short the cleanup after the
    first."""
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def ignored() -> Iterator[None]:
        old = {s: signal.signal(s, signal.SIG_IGN) for s in _INTERRUPTS}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    return ignored()


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C or SIGTERM until the block is done (a store write), then deliver it to
    the handler that was there before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in _INTERRUPTS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if caught:
        signal.raise_signal(caught[0])


def _begin(begun: set[int], start: Callable[[Pack], None], token: int, pack: Pack) -> None:
    """Mark a pack started, once."""
    if token not in begun:
        begun.add(token)
        start(pack)


def run_process_pool(
    packs: list[Pack],
    start: Callable[[Pack], None],
    fn: PackFn,
    *,
    workers: int | None,
    retries: int,
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
            if pool is not None:  # a SIGTERM (not held back while forking) can come before it
                with _interrupts_ignored():
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
                with _interrupts_ignored():
                    if running:
                        _stop_pool(pool)
                    else:
                        pool.shutdown(wait=True)
            started.close()


def run_dask(
    packs: list[Pack],
    start: Callable[[Pack], None],
    fn: PackFn,
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
            except Exception as err:  # KilledWorker, or an error outside fn
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
