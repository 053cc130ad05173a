"""Array backends: numpy or CuPy, chosen once; seeded generators; the one exit to the host.

This is the only module that names CuPy. Everything else works out the array module from its
arguments with :func:`get_xp`, so one code path serves both backends.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "BACKENDS",
    "cupy_available",
    "get_xp",
    "member_rng",
    "resolve",
    "runtime_rng",
    "to_numpy",
]

BACKENDS = ("numpy", "cupy", "auto")

# Independent random streams drawn from one member seed (numpy SeedSequence spawn keys).
STREAM_INIT = 0
STREAM_FEEDBACK = 1
STREAM_RUNTIME = 2


def _loaded_cupy() -> ModuleType | None:
    """CuPy if some code has already imported it; never imports it (array-api-compat's trick)."""
    return sys.modules.get("cupy")


def cupy_available() -> bool:
    """True if CuPy imports and sees at least one CUDA device."""
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
        return importlib.import_module("cupy")
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


def runtime_rng(seed: int, xp: ModuleType) -> Any:
    """A generator on array module ``xp`` for noise drawn in training (dropout, rounding)."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(STREAM_RUNTIME,))
    if xp is np:
        return np.random.default_rng(ss)
    return xp.random.default_rng(int(ss.generate_state(1, np.uint64)[0]))
