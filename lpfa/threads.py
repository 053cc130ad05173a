"""BLAS and OpenMP threads, and the heap: set deliberately, and reported with every run.

OpenBLAS starts as many threads as the machine has cores. For the small matrix products of the
nets lpfa trains, those threads cost more than they gain, and when any other process keeps a core
busy they wait on each other and a run becomes many times slower. lpfa therefore limits them once
per process (:func:`set_threads`): to ``--threads``, else to the ``LPFA_THREADS`` environment
variable, else to :data:`DEFAULT_THREADS`, which ``benchmarks/bench_threads.py`` measured. Workers
of a process pool or a Dask cluster get :func:`worker_threads` each. :func:`blas_info` is what a
run records about its BLAS library; :func:`kernel_warning` says when OpenBLAS runs a kernel for an
older CPU than this one (``OPENBLAS_CORETYPE`` forces one), which slows every matrix product.
:func:`set_threads` also keeps freed memory in the process (:func:`hold_freed_memory`), so that
the temporaries of a training step do not take fresh pages from the kernel on every step.
"""

import ctypes
import os
from collections.abc import Iterable, Mapping
from typing import Any

from lpfa.config import ConfigError

__all__ = [
    "DEFAULT_THREADS",
    "ENV_VAR",
    "KERNEL_LEVEL",
    "blas_info",
    "cpu_flags",
    "cpu_level",
    "forced_kernel_warning",
    "heap_settings",
    "hold_freed_memory",
    "kernel_warning",
    "member_count",
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

#: What :func:`hold_freed_memory` sets in glibc's malloc: arrays up to 32 MiB come from the heap
#: (not a mapping of their own, given back when freed), and up to 256 MiB of freed memory at the
#: top of the heap stays with the process.
HEAP = {"mmap_threshold": 32 << 20, "trim_threshold": 256 << 20}
_MALLOPT = {"trim_threshold": -1, "mmap_threshold": -3}  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
_heap: dict[str, int] | None = None


def _positive_int(value: Any, name: str, allowed: str = _ALLOWED) -> int:
    """``value`` as a positive int, or a :class:`ConfigError` naming ``name``."""
    n = value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        n = int(value)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(name, value, allowed)
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


def set_threads(
    n: int | None = None, *, default: int | None = None, hold_memory: bool = True
) -> int:
    """Limit BLAS and OpenMP threads of this process to ``n``.

    Parameters
    ----------
    n : int, optional
        Threads per library. None: ``LPFA_THREADS`` if set, else ``default``.
    default : int, optional
        The count where neither ``n`` nor ``LPFA_THREADS`` gives one (default
        :data:`DEFAULT_THREADS`); a pool worker passes ``worker_threads(n_workers)``, so that
        ``LPFA_THREADS`` overrides it as well.
    hold_memory : bool
        Also keep freed memory in the process (:func:`hold_freed_memory`; default True). False
        leaves the allocator as it is (a benchmark's baseline).

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
    The limit applies to the libraries loaded when it is called; numpy's BLAS is
    loaded first. It holds until the next call; it is not undone on return, and neither is
    :func:`hold_freed_memory`.
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
    if hold_memory:
        hold_freed_memory()
    return n


def hold_freed_memory() -> dict[str, int] | None:
    """Keep freed memory in this process instead of giving it back to the kernel (glibc only).

    glibc's malloc gives an allocation above its mmap threshold (128 KiB at first, then the
    largest block freed) a mapping of its own, unmapped when freed, and hands the top of the heap
    back to the kernel once more than its trim threshold is free there. Whether a training step's
    temporaries then fault in fresh, zeroed pages on every step depends on the heap's layout, so
    on details of the code and of what else the process holds: the Baldi net's device step before
    its 16-bit draws faulted 581 pages a step and ran 1.9× slower than with the thresholds held;
    bench_train's many configurations in one process, 1 360 a step for the 8-member ensemble; the
    3-bit quantized-update step, 200-280 a step (1-2 % of it). Holding both thresholds
    (:data:`HEAP`) takes that cliff away (``benchmarks/bench_heap.py`` measures the step with and
    without); the price is that the process keeps up to 256 MiB it no longer uses. Made once per
    process (:func:`set_threads` calls it); later calls return the same.

    Returns
    -------
    dict or None
        :data:`HEAP`, as applied; None where the C library has no ``mallopt`` (not glibc).
    """
    global _heap
    if _heap is None:
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (AttributeError, OSError):  # musl, macOS, Windows: their allocators as they are
            return None
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        if all(mallopt(_MALLOPT[k], v) == 1 for k, v in HEAP.items()):
            _heap = dict(HEAP)
    return None if _heap is None else dict(_heap)


def heap_settings() -> dict[str, int] | None:
    """What :func:`hold_freed_memory` set in this process (None: the allocator's defaults)."""
    return None if _heap is None else dict(_heap)


def member_count(n: Any) -> int:
    """``--member-threads``: a positive int, or a :class:`ConfigError` naming the option."""
    return _positive_int(n, "--member-threads", "must be a positive integer (threads over members)")


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


#: OpenBLAS's x86 kernel families (``OPENBLAS_CORETYPE`` names, any case) by the widest vector
#: instructions they use: 3 AVX-512, 2 AVX2, 1 AVX, 0 SSE or older. Names not listed (other
#: architectures, other libraries) are not judged.
KERNEL_LEVEL = {
    **dict.fromkeys(("skylakex", "cooperlake", "sapphirerapids"), 3),
    **dict.fromkeys(("haswell", "zen"), 2),
    **dict.fromkeys(("sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"), 1),
    **dict.fromkeys(
        (
            "katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn",
            "dunnington", "nehalem", "athlon", "opteron", "opteron_sse3", "barcelona", "nano",
            "bobcat",
        ),
        0,
    ),
}  # fmt: skip

# the /proc/cpuinfo flag that a CPU needs for each level, and the level's name in words
_LEVEL_FLAG = {3: "avx512f", 2: "avx2", 1: "avx"}
_LEVEL_NAME = {3: "AVX-512", 2: "AVX2", 1: "AVX", 0: "SSE"}


def cpu_level(flags: Iterable[str]) -> int:
    """The widest kernel level (see :data:`KERNEL_LEVEL`) that a CPU with ``flags`` supports."""
    have = set(flags)
    return max((level for level, flag in _LEVEL_FLAG.items() if flag in have), default=0)


def kernel_warning(
    kernel: str | None, flags: Iterable[str] | None, *, forced: bool = False
) -> str | None:
    """One line saying that OpenBLAS kernel ``kernel`` is below what a CPU with ``flags`` runs.

    Parameters
    ----------
    kernel : str or None
        An OpenBLAS core type, e.g. ``"Haswell"`` (any case).
    flags : iterable of str or None
        The CPU's feature flags as ``/proc/cpuinfo`` names them (``avx2``, ``avx512f``).
    forced : bool
        Whether ``OPENBLAS_CORETYPE`` chose the kernel (the line then says to unset it).

    Returns
    -------
    str or None
        None where the kernel matches the CPU, is above it, or either is unknown.
    """
    if kernel is None or flags is None:
        return None
    level = KERNEL_LEVEL.get(kernel.strip().lower())
    best = cpu_level(flags)
    if level is None or level >= best:
        return None
    what = f"OpenBLAS kernel {kernel} ({_LEVEL_NAME[level]}) on a CPU with {_LEVEL_NAME[best]}"
    if forced:
        return (
            f"OPENBLAS_CORETYPE={kernel} forces the {what}: matrix products run below the CPU's "
            f"rate; unset OPENBLAS_CORETYPE to let OpenBLAS choose"
        )
    return f"{what}: matrix products run below the CPU's rate (an OpenBLAS built for older CPUs)"


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The feature flags of this machine's first CPU, from ``path``; None where it cannot be read
    (macOS, Windows) or has no ``flags`` line."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        return None
    return None


def forced_kernel_warning(
    architecture: str | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Iterable[str] | None = None,
) -> str | None:
    """:func:`kernel_warning` for this process: the kernel OpenBLAS reports (``architecture``),
    else the one ``OPENBLAS_CORETYPE`` in ``environ`` (default ``os.environ``) names, against
    ``flags`` (default :func:`cpu_flags`)."""
    env = (os.environ if environ is None else environ).get("OPENBLAS_CORETYPE", "").strip()
    known = architecture if architecture and architecture.lower() in KERNEL_LEVEL else None
    kernel = known or env or None
    forced = bool(env) and kernel is not None and env.lower() == kernel.lower()
    return kernel_warning(kernel, cpu_flags() if flags is None else flags, forced=forced)


def blas_info() -> dict[str, Any]:
    """What a run records about its BLAS: library, version, threading, threads, core type.

    Returns
    -------
    dict
        ``blas`` (library name, e.g. ``"openblas"``; None if none was found), ``blas_version``,
        ``blas_threading`` (its threading layer, e.g. ``"pthreads"``), ``blas_architecture``
        (the kernel family it chose, e.g. ``"SkylakeX"``), ``threads`` (its current thread
        limit, int), ``openmp_threads`` (int, or None without an OpenMP runtime loaded) and
        ``openblas_coretype`` (the ``OPENBLAS_CORETYPE`` environment variable, or None) and
        ``blas_kernel_warning`` (:func:`forced_kernel_warning`: one line where the kernel is
        below what the CPU supports, else None).
    """
    import numpy  # noqa: F401  (loads the BLAS whose settings are reported)
    from threadpoolctl import threadpool_info

    pools = threadpool_info()
    blas = _numpy_blas(pools) or {}
    openmp = [p for p in pools if p.get("user_api") == "openmp"]
    # the core type names OpenBLAS's kernels; other libraries are not judged
    kernel = (
        forced_kernel_warning(blas.get("architecture"))
        if blas.get("internal_api") == "openblas"
        else None
    )
    return {
        "blas": blas.get("internal_api"),
        "blas_version": blas.get("version"),
        "blas_threading": blas.get("threading_layer"),
        "blas_architecture": blas.get("architecture"),
        "threads": blas.get("num_threads"),
        "openmp_threads": openmp[0]["num_threads"] if openmp else None,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE") or None,
        "blas_kernel_warning": kernel,
    }
