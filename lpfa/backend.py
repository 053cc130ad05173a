"""Array backends: numpy or CuPy, chosen once; seeded generators; the one exit to the host.

This is the only module that names CuPy. Everything else works out the array module from its
arguments with :func:`get_xp`, so one code path serves both backends.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "BACKENDS",
    "RuntimeRandom",
    "add_product",
    "cupy_available",
    "device_module",
    "device_rng",
    "device_versions",
    "get_xp",
    "is_host",
    "member_rng",
    "normal16",
    "resolve",
    "runtime_rng",
    "to_numpy",
    "uniform16",
]

BACKENDS = ("numpy", "cupy", "auto")

# Independent random streams drawn from one member seed (numpy SeedSequence spawn keys).
STREAM_INIT = 0
STREAM_FEEDBACK = 1
STREAM_RUNTIME = 2
STREAM_DIAGNOSTIC = 3
STREAM_DEVICE = 4  # device-to-device draws: spawned further per array and per effect


# A module installed by device_module() to be used wherever CuPy would be (None: CuPy itself).
_stand_in: ModuleType | None = None


@contextmanager
def device_module(module: ModuleType) -> Iterator[ModuleType]:
    """Use ``module`` as the device backend, in place of CuPy, until the block ends.

    Inside the block ``resolve("cupy")`` (and ``"auto"``) return ``module``, :func:`get_xp`
    recognises its ``ndarray``, :func:`to_numpy` leaves through its ``asnumpy`` and
    :func:`runtime_rng` draws from its ``random.default_rng``: everything lpfa does with CuPy it
    does with ``module``. It is how the tests run the CuPy code path on a machine without a GPU
    (a strict CPU stand-in for CuPy); ``module`` needs CuPy's names for what lpfa calls.

    Parameters
    ----------
    module : module
        An array module with CuPy's interface: ``ndarray``, ``asarray``, ``asnumpy``,
        ``random.default_rng`` and the array functions lpfa uses.
    """
    global _stand_in
    before, _stand_in = _stand_in, module
    try:
        yield module
    finally:
        _stand_in = before


def _loaded_cupy() -> ModuleType | None:
    """The device module: the stand-in of :func:`device_module` if one is installed, else CuPy
    if some code has already imported it; never imports it (array-api-compat's trick)."""
    return _stand_in if _stand_in is not None else sys.modules.get("cupy")


def device_versions() -> dict[str, str]:
    """What a run records of its device module: CuPy's version if CuPy is loaded, the stand-in's
    name and version while :func:`device_module` is active, nothing otherwise."""
    mod = _loaded_cupy()
    if mod is None:
        return {}
    version = str(getattr(mod, "__version__", "unknown"))
    if mod is _stand_in:
        return {"device_module": f"{mod.__name__} {version}"}
    return {"cupy": version}


def is_host(xp: ModuleType) -> bool:
    """Whether arrays of ``xp`` live in host memory (numpy), so that reading their values on the
    host (a data-dependent shape, a Python scalar) costs no device synchronisation."""
    return xp is np


# Rows of c per block of add_product on the host: blocks of 256 Ki elements (1 MiB of float32),
# so that the product's temporary stays in cache while it is added.
PRODUCT_BLOCK = 1 << 18


def add_product(c, a, b, *, beta: float = 1.0):
    """c ← beta · c + a @ b in place, for 2-D ``c`` (m, n), ``a`` (m, k), ``b`` (k, n); returns c.

    On the host, a block of c's rows at a time (:data:`PRODUCT_BLOCK` elements): each block's
    product is written into one small buffer and added while it is still in cache, so no (m, n)
    temporary is ever allocated (100 MB for 32 members of a 784-1000 layer) and the adding pass
    reads cache, not memory. The products are numpy's own (its BLAS and its thread limit; a
    second BLAS library, such as scipy's, would bring its own spinning threads). Every element
    is ``beta · c + (a @ b)`` rounded as the two-pass expression rounds it; the product of a
    block of rows may differ from the whole product's in the last bits (the BLAS chooses its
    kernel by shape). Elsewhere (CuPy, wrapped arrays such as the audit's traced ones, small
    arrays) it is the two-pass expression itself.
    """
    plain = all(type(m) is np.ndarray for m in (c, a, b))  # not a subclass or a traced wrapper
    m, n = c.shape
    if not plain or m * n <= PRODUCT_BLOCK or not c.flags.c_contiguous:
        if beta != 1.0:
            c *= beta
        c += a @ b
        return c
    rows = max(1, PRODUCT_BLOCK // n)
    work = np.empty((rows, n), dtype=np.result_type(a, b))
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        part = c[r0:r1]
        product = np.matmul(a[r0:r1], b, out=work[: r1 - r0])
        if beta != 1.0:
            part *= beta
        part += product
    return c


def cupy_available() -> bool:
    """True if CuPy imports and sees at least one CUDA device (or a stand-in is installed)."""
    if _stand_in is not None:
        return True
    try:
        cp = importlib.import_module("cupy")
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDA driver/runtime errors of any kind
        return False


def resolve(name: str) -> ModuleType:
    """The array module for a backend name.

    Parameters
    ----------
    name : {"numpy", "cupy", "auto"}
        ``"auto"`` picks CuPy when it imports and a CUDA device is present, numpy otherwise.

    Raises
    ------
    ValueError
        For an unknown name, or ``"cupy"`` on a machine where CuPy cannot run.
    """
    if name == "numpy":
        return np
    if name == "cupy":
        if not cupy_available():
            raise ValueError(
                "backend='cupy': CuPy is not installed or sees no CUDA device; "
                "install the 'gpu' extra on a CUDA machine, or use backend='numpy' or 'auto'"
            )
        return _stand_in if _stand_in is not None else importlib.import_module("cupy")
    if name == "auto":
        return resolve("cupy") if cupy_available() else np
    raise ValueError(f"backend={name!r}: must be one of {', '.join(BACKENDS)}")


def get_xp(*arrays: Any) -> ModuleType:
    """The array module of ``arrays`` (numpy or CuPy); anything else (scalars, None) is ignored.

    Raises
    ------
    TypeError
        If numpy and CuPy arrays are mixed.
    """
    cp = _loaded_cupy()
    found = None
    for a in arrays:
        if isinstance(a, np.ndarray):
            mod = np
        elif cp is not None and isinstance(a, cp.ndarray):
            mod = cp
        else:  # scalars, None, lists: they follow the arrays
            continue
        if found is not None and mod is not found:
            raise TypeError(
                "arrays from different backends (numpy and cupy) were mixed; "
                "move them to one backend first"
            )
        found = mod
    return np if found is None else found


def to_numpy(x: Any) -> np.ndarray:
    """The one exit to the host: a numpy array from a numpy or CuPy array (or array-like)."""
    cp = _loaded_cupy()
    if cp is not None and isinstance(x, cp.ndarray):
        return cp.asnumpy(x)
    return np.asarray(x)


def member_rng(seed: int, stream: int) -> np.random.Generator:
    """A host generator for one stream of one ensemble member.

    Parameters are drawn on the host with numpy and then moved to the device, so a member's
    initial weights and feedback matrices are the same on every backend and do not depend on
    which other members share its ensemble.
    """
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(stream,)))


def device_rng(seed: int, array: tuple[int, ...], effect: int) -> np.random.Generator:
    """A host generator for one device effect of one array of one ensemble member.

    Device-to-device draws (each synapse's step size, bounds, drift exponent, stuck state,
    programming error) come from ``SeedSequence(seed, spawn_key=(STREAM_DEVICE, *array,
    effect))``: one stream per member, per array (``array`` names it, e.g. ``(0, h)`` for the
    forward array of layer h) and per effect, so switching one effect on leaves the others' draws
    as they were, and a member's devices do not depend on which members share its ensemble.
    """
    key = (STREAM_DEVICE, *(int(a) for a in array), int(effect))
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


def runtime_rng(seed: int | list[int], xp: ModuleType, stream: int = STREAM_RUNTIME) -> Any:
    """A generator on array module ``xp`` for noise drawn in training (dropout, rounding).

    ``seed`` is one member seed or the list of an ensemble's seeds: the runtime stream of an
    ensemble is seeded by all its members' seeds (one generator draws every member's noise in one
    call, on the device), so a member's dropout masks and rounding draws depend on which seeds share
    its ensemble. Its initial weights and feedback (:func:`member_rng`) never do.
    """
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(stream,))
    if xp is np:
        return np.random.default_rng(ss)
    return xp.random.default_rng(int(ss.generate_state(1, np.uint64)[0]))


# Fast runtime noise on numpy: 16 raw bits per value (a quarter of one 64-bit draw of the bit
# generator) instead of Generator.standard_normal (8.6 ns a value here) and .random (1.8-3 ns).
BITS16 = 1 << 16


@cache
def normal_table(dtype: Any) -> np.ndarray:
    """The 2^16 values a numpy :func:`normal16` draw takes, read-only, as ``dtype``.

    z_k = Φ⁻¹((k + ½) / 2^16), k = 0 … 2^16 − 1, times one factor that makes their mean square
    exactly 1 (1 + 10⁻⁵): the quantiles at the midpoints of 2^16 equal-probability bins, so a
    uniform k gives a variable whose CDF is within 10⁻⁵ of the normal one everywhere (half a bin,
    2^-17, plus the rescale), with mean 0 (the table is symmetric) and variance 1; its tails stop
    at |z| = 4.32 (probability 1.5·10⁻⁵ beyond).
    """
    from scipy.special import ndtri

    z = ndtri((np.arange(BITS16) + 0.5) / BITS16)
    z /= np.sqrt(np.mean(z * z))
    table = z.astype(dtype)
    table.flags.writeable = False
    return table


def _bits16(rng: Any, n: int) -> np.ndarray:
    """n uniform 16-bit integers from raw draws of ``rng``'s bit generator (one draw per call)."""
    return rng.bit_generator.random_raw(-(-n // 4)).view(np.uint16)[:n]


def normal16(rng: Any, shape: tuple[int, ...], dtype: Any, xp: ModuleType) -> Any:
    """Standard normal noise of ``shape`` and float ``dtype`` on ``xp``, drawn by ``rng``.

    On numpy each value is :func:`normal_table`'s entry at 16 random bits: about 1.7 ns a value
    here against 8.6 ns for ``Generator.standard_normal``, whose normals dominated a device step
    (cycle-to-cycle and read noise). On CuPy the generator's own normals (cuRAND, cheap on a
    GPU). ``rng`` is a generator of ``xp`` or a :class:`RuntimeRandom`.
    """
    if xp is not np:
        return rng.standard_normal(shape, dtype=dtype)
    bits = _bits16(rng, math.prod(shape))
    return np.take(normal_table(np.dtype(dtype)), bits).reshape(shape)


def uniform16(rng: Any, shape: tuple[int, ...], dtype: Any, xp: ModuleType) -> Any:
    """Uniform [0, 1) noise of ``shape`` and float ``dtype`` on ``xp``, drawn by ``rng``.

    On numpy (k + ½) / 2^16 for 16 random bits k: mean exactly ½, the probabilities of a
    stochastic rounding resolved to 2^-16. On CuPy the generator's ``random``.
    """
    if xp is not np:
        return rng.random(shape, dtype=dtype)
    u = np.add(_bits16(rng, math.prod(shape)), 0.5, dtype=dtype)
    u *= u.dtype.type(1.0 / BITS16)
    return u.reshape(shape)


class RuntimeRandom:
    """The runtime noise source of a run, which observation switches away from.

    Training draws dropout masks, redrawn feedback, perturbations and stochastic-rounding uniforms
    through this object; it forwards every call (``random``, ``standard_normal``, …) to the run's
    runtime generator. Inside :meth:`observing` it forwards to a separate diagnostic generator
    instead, so evaluation and alignment diagnostics never consume the run's draws (DESIGN
    decision 6): a run measured every epoch trains bit for bit like one never measured.

    Parameters
    ----------
    seeds : list of int
        The ensemble's member seeds.
    xp : module
        Array module the draws are made on.
    """

    def __init__(self, seeds: list[int], xp: ModuleType):
        self.run = runtime_rng(list(seeds), xp)
        self.diagnostic = runtime_rng(list(seeds), xp, STREAM_DIAGNOSTIC)
        self._current = self.run
        #: calls made on the run's generator so far (a step that adds none draws nothing)
        self.draws = 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not set yet (copy, pickle): no forwarding of private names
            raise AttributeError(name)
        if self._current is self.run:
            self.draws += 1
        return getattr(self._current, name)

    @contextmanager
    def observing(self) -> Iterator[None]:
        """Draw from the diagnostic generator until the block ends."""
        before, self._current = self._current, self.diagnostic
        try:
            yield
        finally:
            self._current = before
