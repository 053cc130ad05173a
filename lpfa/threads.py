"""BLAS and OpenMP threads: set deliberately, and reported with every run.

OpenBLAS starts as many threads as the machine has cores. For the small matrix products of the
nets lpfa trains, those threads cost more than they gain, and when any other process keeps a core
busy they wait on each other and a run becomes many times slower. lpfa therefore limits them once
per process (:func:`set_threads`): to ``--threads``, else to the ``LPFA_THREADS`` environment
variable, else to :data:`DEFAULT_THREADS`, which ``benchmarks/bench_threads.py`` measured. Workers
of a process pool or a Dask cluster get :func:`worker_threads` each. :func:`blas_info` is what a
run records about its BLAS library.
"""

import os
from typing import Any

from lpfa.config import ConfigError

__all__ = [
    "DEFAULT_THREADS",
    "ENV_VAR",
    "blas_info",
    "set_threads",
    "threads_from_env",
    "usable_cores",
    "worker_threads",
]

#: BLAS threads of ``lpfa train`` when neither ``--threads`` nor ``LPFA_THREADS`` says otherwise.
#: One thread was fastest, idle and with one core busy (benchmarks/bench_threads.py).
DEFAULT_THREADS = 1

#: The environment variable that overrides :data:`DEFAULT_THREADS`.
ENV_VAR = "LPFA_THREADS"

_ALLOWED = "must be a positive integer (threads for BLAS and OpenMP)"

# the limiter that holds the current process-wide limit; kept so that it is not collected
_limiter = None


def _positive_int(value: Any, name: str) -> int:
    """``value`` as a positive int, or a :class:`ConfigError` naming ``name``."""
    n = value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        n = int(value)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(name, value, _ALLOWED)
    return n


def threads_from_env(environ: dict[str, str] | None = None) -> int | None:
    """The thread count ``LPFA_THREADS`` asks for, or None where it is unset or empty.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read (default ``os.environ``).

    Raises
    ------
    ConfigError
        Where the variable is set to anything but a positive integer.
    """
    raw = (os.environ if environ is None else environ).get(ENV_VAR, "")
    if not raw.strip():
        return None
    return _positive_int(raw, ENV_VAR)


def set_threads(n: int | None = None, *, default: int | None = None) -> int:
    """Limit BLAS and OpenMP threads of this process to ``n``.

    Parameters
    ----------
    n : int, optional
        Threads per library. None: ``LPFA_THREADS`` if set, else ``default``.
    default : int, optional
        The count where neither ``n`` nor ``LPFA_THREADS`` gives one (default
        :data:`DEFAULT_THREADS`); a pool worker passes ``worker_threads(n_workers)``, so that
        ``LPFA_THREADS`` overrides it as well.

    Returns
    -------
    int
        The number applied.

    Raises
    ------
    ConfigError
        Where ``n`` or ``LPFA_THREADS`` is not a positive integer.

    Notes
    -----
    The limit applies to the libraries loaded when it is called (numpy's BLAS is loaded with
    lpfa). It holds until the next call; it is not undone on return.
    """
    from threadpoolctl import threadpool_limits

    global _limiter
    if n is None:
        n = threads_from_env()
    if n is None:
        n = DEFAULT_THREADS if default is None else _positive_int(default, "default")
    else:
        n = _positive_int(n, "threads")
    _limiter = threadpool_limits(limits=n)
    return n


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def worker_threads(n_workers: int) -> int:
    """Threads each of ``n_workers`` workers sharing this machine gets: cores ÷ workers, ≥ 1.

    Raises
    ------
    ConfigError
        Where ``n_workers`` is not a positive integer.
    """
    n_workers = _positive_int(n_workers, "workers")
    return max(1, usable_cores() // n_workers)


def _numpy_blas(pools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The BLAS pool numpy uses: the one shipped inside numpy, else the first BLAS loaded."""
    blas = [p for p in pools if p.get("user_api") == "blas"]
    for pool in blas:
        path = str(pool.get("filepath", "")).replace("\\", "/")
        if "/numpy" in path:
            return pool
    return blas[0] if blas else None


def blas_info() -> dict[str, Any]:
    """What a run records about its BLAS: library, version, threading, threads, core type.

    Returns
    -------
    dict
        ``blas`` (library name, e.g. ``"openblas"``; None if none was found), ``blas_version``,
        ``blas_threading`` (its threading layer, e.g. ``"pthreads"``), ``blas_architecture``
        (the kernel family it chose, e.g. ``"SkylakeX"``), ``threads`` (its current thread
        limit, int), ``openmp_threads`` (int, or None without an OpenMP runtime loaded) and
        ``openblas_coretype`` (the ``OPENBLAS_CORETYPE`` environment variable, or None).
    """
    import numpy  # noqa: F401  (loads the BLAS whose settings are reported)
    from threadpoolctl import threadpool_info

    pools = threadpool_info()
    blas = _numpy_blas(pools) or {}
    openmp = [p for p in pools if p.get("user_api") == "openmp"]
    return {
        "blas": blas.get("internal_api"),
        "blas_version": blas.get("version"),
        "blas_threading": blas.get("threading_layer"),
        "blas_architecture": blas.get("architecture"),
        "threads": blas.get("num_threads"),
        "openmp_threads": openmp[0]["num_threads"] if openmp else None,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE") or None,
    }
