"""A strict CPU stand-in for CuPy 14: numpy underneath, CuPy's rules where they break code.

lpfa's CuPy side cannot run without a GPU; this module lets the test suite run it on every CI
run. It behaves like CuPy wherever CuPy differs from numpy in a way that makes numpy-only code
fail, counts the operations that make the host wait for the device, and has only the names CuPy
has. The ``xp`` fixture of ``tests/conftest.py`` installs it with
:func:`lpfa.backend.device_module`, so ``backend="cupy"`` runs on it.

What CuPy does, and where it is documented
------------------------------------------
- No implicit conversion to the host. ``numpy.asarray(d)`` / ``d.__array__()`` raise
  ``TypeError: Implicit conversion to a NumPy array is not allowed. Please use `.get()` to
  construct a NumPy array explicitly.`` (cupy/_core/core.pyx ``_ndarray_base.__array__``; the
  maintainers' reason, hidden transfers and silent bugs: cupy/cupy#589, #734 and the decision in
  #3421). Here: the same error text.
- Host arrays are not accepted by device functions. CuPy's ufuncs and routines take CuPy arrays
  and scalars; a ``numpy.ndarray`` operand raises ``TypeError`` ("Unsupported type"; the same
  transfer policy, cupy/cupy#593, #594: ``cupy_array[:] = numpy_array`` and ``cupy.sin([1, 2])``
  are refused). Python and numpy scalars are fine. Here: every wrapped function, operator, index
  and ``__setitem__`` raises ``TypeError`` for a ``numpy.ndarray`` (0-d ones included), and
  ufuncs refuse lists.
- Reductions return 0-d arrays. "Reduction methods return zero-dimensional array instead of
  scalars" (docs.cupy.dev, user guide, "Differences between CuPy and NumPy"); integer indexing
  of one element gives a 0-d array too. Here: every numpy scalar result becomes a 0-d array.
- Syncs. Reading a value on the host (``float``, ``int``, ``bool``, ``.item()``, ``.tolist()``,
  printing), the explicit exit (``cupy.asnumpy``, ``ndarray.get``) and every result whose shape
  depends on the data wait for the device: "This function may synchronize the device"
  (docs.cupy.dev, ``cupy.nonzero``, ``cupy.flatnonzero``, ``cupy.argwhere``, ``cupy.where`` with one
  argument, ``cupy.place``; boolean-mask indexing is ``nonzero`` underneath). ``cupy.linalg.pinv``
  runs an SVD and reads its rank cut back. Here: each is counted in :data:`counter`
  (``counter.syncs``, ``counter.reasons``); boolean-mask assignment is counted too.
- Random numbers. ``cupy.random.default_rng(seed)`` gives a ``cupy.random.Generator`` (XORWOW
  bit generator; docs.cupy.dev ``cupy.random.default_rng``) whose methods are ``random``,
  ``uniform``, ``integers``, ``standard_normal`` and the distributions listed in
  ``random._DISTRIBUTIONS`` (cupy/random/_generator_api.pyx, class ``Generator``); it has no
  ``normal``, ``permutation``, ``choice`` or ``shuffle``. ``random`` and ``standard_normal`` take
  ``dtype`` float32 or float64 only. Here: the same methods, other names raise
  ``AttributeError``, and the numbers come from numpy's Philox, so they differ from numpy's.
- Type promotion. CuPy 14 follows NEP 50 (Python scalars are weak, no value-based casting), as
  numpy 2 does, so the numpy underneath promotes exactly like CuPy 14 (CuPy 13 promoted by value:
  lpfa requires ``cupy-cuda12x>=14``).
- Names. Only the functions in ``_FUNCTIONS`` (all of which CuPy has) exist; another name
  raises ``AttributeError`` instead of falling through to numpy.

Stricter than CuPy, on purpose
------------------------------
A numpy *function* (``numpy.stack``, ``numpy.mean``, ...) called on a device array raises
``TypeError`` here, where CuPy dispatches it (NEP 18): lpfa's rule is to call the array module of
its arguments. Numpy ufuncs on device arrays run on the device, as in CuPy (NEP 13: this is also
how ``numpy.float64(2) * d`` works). Indexing with a numpy array raises ``TypeError``.
``asarray`` of host data is the one way onto the device; each such copy is counted in
``counter.to_device``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.cupy_standin import cuda, linalg, random
from tests.cupy_standin._core import call, counter, ndarray, unwrap

__version__ = "14.0.0"

# elementwise functions (CuPy ufuncs): device arrays and scalars only, no lists
_UFUNCS = (
    "abs", "absolute", "add", "arccos", "arcsin", "arctan", "bitwise_and", "bitwise_or",
    "bitwise_xor", "ceil", "copysign", "cos", "degrees", "divide", "equal", "exp", "exp2",
    "expm1", "floor", "floor_divide", "fmax", "fmin", "frexp", "greater", "greater_equal",
    "invert", "isfinite", "isinf", "isnan", "ldexp", "left_shift", "less", "less_equal", "log",
    "log1p", "log2", "logical_and", "logical_not", "logical_or", "maximum", "minimum", "multiply",
    "negative", "nextafter", "not_equal", "positive", "power", "radians", "reciprocal",
    "remainder", "right_shift", "rint", "sign", "signbit", "sin", "sinh", "sqrt", "square",
    "subtract", "tan", "tanh", "true_divide", "trunc",
)  # fmt: skip
# other routines CuPy has, with numpy's signature
_FUNCTIONS = (
    "all", "allclose", "amax", "amin", "any", "arange", "argmax", "argmin", "array_equal",
    "ascontiguousarray", "broadcast_to", "clip", "concatenate", "copyto", "count_nonzero",
    "cumsum", "diag", "dot", "einsum", "empty", "empty_like", "expand_dims", "eye", "full",
    "full_like", "isclose", "linspace", "matmul", "max", "mean", "min", "moveaxis", "ones",
    "ones_like", "outer", "prod", "ravel", "repeat", "reshape", "squeeze", "stack", "std", "sum",
    "swapaxes", "take", "tile", "transpose", "var", "zeros", "zeros_like",
)  # fmt: skip
# routines whose result's shape depends on the data: a device sync on CuPy
_SYNCING = ("argwhere", "flatnonzero", "nonzero", "unique")

nan, inf, pi, e, newaxis = np.nan, np.inf, np.pi, np.e, None
dtype, finfo, iinfo = np.dtype, np.finfo, np.iinfo
bool_, float16, float32, float64 = np.bool_, np.float16, np.float32, np.float64
int8, int16, int32, int64 = np.int8, np.int16, np.int32, np.int64
uint8, uint16, uint32, uint64 = np.uint8, np.uint16, np.uint32, np.uint64


def _wrapped(name: str, *, sequences: bool, sync: bool = False):
    fn = getattr(np, name)

    def f(*args: Any, **kwargs: Any) -> Any:
        if sync:
            counter.sync(name)
        return call(fn, name, args, kwargs, sequences=sequences)

    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"``cupy.{name}``: numpy.{name} on device arrays (host arrays raise TypeError)."
    return f


for _n in _UFUNCS:
    globals()[_n] = _wrapped(_n, sequences=False)
for _n in _FUNCTIONS:
    globals()[_n] = _wrapped(_n, sequences=True)
for _n in _SYNCING:
    globals()[_n] = _wrapped(_n, sequences=True, sync=True)
del _n


def where(condition: Any, x: Any = None, y: Any = None) -> Any:
    """``cupy.where``; with one argument it is ``nonzero`` (a sync)."""
    if x is None and y is None:
        counter.sync("where")
        return call(np.nonzero, "where", (condition,), {})
    return call(np.where, "where", (condition, x, y), {}, sequences=False)


def asarray(a: Any, dtype: Any = None, order: Any = None) -> ndarray:
    """A device array; host data (numpy arrays, lists, scalars) is copied onto the device."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    counter.to_device += 1
    return ndarray(np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K", ndmin: int = 0):
    """A new device array (a copy of a device array, or of host data onto the device)."""
    if isinstance(obj, ndarray):
        return ndarray(np.array(obj._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    counter.to_device += 1
    return ndarray(np.array(obj, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asnumpy(a: Any) -> np.ndarray:
    """The explicit exit to the host (a sync); host data is returned as a numpy array."""
    if isinstance(a, ndarray):
        return a.get()
    return np.asarray(a)


def may_share_memory(a: Any, b: Any, max_work: Any = None) -> bool:
    """Whether two device arrays may overlap (from their bounds; no sync)."""
    return bool(np.may_share_memory(unwrap(a, "may_share_memory"), unwrap(b, "may_share_memory")))


def get_array_module(*args: Any):
    """This module if any argument is a device array, else numpy (``cupy.get_array_module``)."""
    import sys

    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


__all__ = [
    *_UFUNCS,
    *_FUNCTIONS,
    *_SYNCING,
    "__version__",
    "array",
    "asarray",
    "asnumpy",
    "counter",
    "cuda",
    "get_array_module",
    "linalg",
    "may_share_memory",
    "ndarray",
    "random",
    "where",
]
