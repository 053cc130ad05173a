"""The stand-in's device array, its argument checks, and its counters of syncs and copies."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import numpy as np


class Counter:
    """Events counted by the stand-in: device syncs (by reason) and host-to-device copies.

    ``syncs`` counts every operation that, on CuPy, makes the host wait for the device (a value
    read to the host, a data-dependent shape, an explicit transfer); ``reasons`` says which;
    ``to_device`` counts copies of host data onto the device (``asarray`` of host data).
    """

    def __init__(self) -> None:
        self.reasons: collections.Counter[str] = collections.Counter()
        self.to_device = 0

    @property
    def syncs(self) -> int:
        """Number of device syncs since the last :meth:`reset`."""
        return sum(self.reasons.values())

    def sync(self, reason: str) -> None:
        """Count one device sync caused by ``reason``."""
        self.reasons[reason] += 1

    def reset(self) -> None:
        """Start counting from zero."""
        self.reasons.clear()
        self.to_device = 0


counter = Counter()

_HOST_SCALARS = (bool, int, float, complex, np.generic)


def _refuse_host_array(where: str) -> TypeError:
    return TypeError(
        f"{where}: a numpy.ndarray was passed where a device array is needed "
        "(CuPy refuses implicit host-to-device conversion; use asarray first)"
    )


def unwrap(x: Any, where: str, *, sequences: bool = True) -> Any:
    """The numpy array behind a device array; host scalars pass; host arrays raise TypeError.

    ``sequences`` allows lists and tuples (of device arrays or scalars), as CuPy's
    ``stack``/``concatenate`` take; its ufuncs do not (CuPy: "Unsupported type").
    """
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        raise _refuse_host_array(where)
    if isinstance(x, list | tuple):
        if not sequences:
            raise TypeError(
                f"{where}: unsupported type {type(x).__name__} (CuPy's ufuncs take arrays)"
            )
        return type(x)(unwrap(v, where) for v in x)
    return x


def wrap(r: Any, out: Any = None) -> Any:
    """Device arrays for numpy results: 0-d arrays for numpy scalars (as CuPy's reductions give)."""
    if out is not None and isinstance(out, ndarray) and r is out._a:
        return out
    if isinstance(r, np.ndarray):
        return ndarray(r)
    if isinstance(r, np.generic):
        return ndarray(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(wrap(v) for v in r)
    if isinstance(r, list):
        return [wrap(v) for v in r]
    return r


def call(fn: Callable, name: str, args: tuple, kwargs: dict, *, sequences: bool = True) -> Any:
    """``fn`` on the numpy arrays behind ``args`` and ``kwargs``, its results wrapped again."""
    a = tuple(unwrap(v, name, sequences=sequences) for v in args)
    k = {key: unwrap(v, name) for key, v in kwargs.items()}
    with np.errstate(all="ignore"):  # CuPy's kernels never warn on overflow or invalid values
        r = fn(*a, **k)
    return wrap(r, kwargs.get("out"))


def _binary(ufunc: np.ufunc, reflected: bool = False) -> Callable:
    def op(self: ndarray, other: Any) -> Any:
        if isinstance(other, np.ndarray):
            raise _refuse_host_array(f"ndarray.{ufunc.__name__}")
        if not isinstance(other, (ndarray, *_HOST_SCALARS)):
            return NotImplemented
        pair = (other, self) if reflected else (self, other)
        return call(ufunc, ufunc.__name__, pair, {}, sequences=False)

    return op


def _inplace(ufunc: np.ufunc) -> Callable:
    def op(self: ndarray, other: Any) -> Any:
        call(ufunc, ufunc.__name__, (self, other), {"out": self}, sequences=False)
        return self

    return op


def _unary(ufunc: np.ufunc) -> Callable:
    def op(self: ndarray) -> Any:
        return call(ufunc, ufunc.__name__, (self,), {})

    return op


def _method(name: str, *, sync: str | None = None) -> Callable:
    def meth(self: ndarray, *args: Any, **kwargs: Any) -> Any:
        if sync:
            counter.sync(sync)
        return call(getattr(self._a, name), f"ndarray.{name}", args, kwargs)

    meth.__name__ = name
    return meth


def _is_mask(k: Any) -> bool:
    return isinstance(k, ndarray) and k.dtype == np.bool_


def _index(key: Any) -> tuple[Any, bool]:
    """The numpy index behind ``key`` and whether it holds a boolean mask (a sync on CuPy)."""
    parts = key if isinstance(key, tuple) else (key,)
    mask = any(_is_mask(k) for k in parts)
    return unwrap(key, "ndarray.__getitem__"), mask


class ndarray:
    """A device array: a numpy array behind CuPy's rules (see the package docstring)."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, a: np.ndarray):
        self._a = a

    # --- what CuPy refuses or counts -----------------------------------------------------------

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        # CuPy runs numpy ufuncs on its arrays (NEP 13): numpy scalars times device arrays
        # arrive here; a numpy array among the operands is refused, as CuPy does
        if method != "__call__":
            return NotImplemented
        return call(ufunc, f"numpy.{ufunc.__name__}", inputs, kwargs, sequences=False)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        # stricter than CuPy (which dispatches numpy functions it implements): lpfa must call the
        # array module of its arguments, so a numpy function on a device array is a bug here
        raise TypeError(
            f"numpy.{func.__name__} was called on a device array; use the array module of the "
            "arguments (lpfa.backend.get_xp) instead"
        )

    def get(self) -> np.ndarray:
        """Copy to the host (a sync)."""
        counter.sync("get")
        return self._a.copy()

    def item(self) -> Any:
        counter.sync("item")
        return self._a.item()

    def tolist(self) -> Any:
        counter.sync("tolist")
        return self._a.tolist()

    def _scalar(self, kind: type, reason: str) -> Any:
        if self._a.size != 1:
            raise TypeError(f"only size-1 arrays can be converted to Python {kind.__name__}")
        counter.sync(reason)
        return kind(self._a.reshape(()).item())

    def __float__(self) -> float:
        return self._scalar(float, "float")

    def __int__(self) -> int:
        return self._scalar(int, "int")

    def __bool__(self) -> bool:
        return self._scalar(bool, "bool")

    def __index__(self) -> int:
        if self._a.ndim or self._a.dtype.kind not in "iu":
            raise TypeError("only integer scalar arrays can be converted to a scalar index")
        return self._scalar(int, "index")

    def __complex__(self) -> complex:
        return self._scalar(complex, "complex")

    def __repr__(self) -> str:
        counter.sync("repr")
        return repr(self._a)

    def __str__(self) -> str:
        counter.sync("str")
        return str(self._a)

    def __format__(self, spec: str) -> str:
        counter.sync("format")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def nonzero(self) -> tuple:
        counter.sync("nonzero")
        return wrap(self._a.nonzero())

    # --- attributes ----------------------------------------------------------------------------

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (wrap(v) for v in self._a)

    # --- indexing ------------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        k, mask = _index(key)
        if mask:
            counter.sync("boolean mask")
        return wrap(self._a[k])

    def __setitem__(self, key: Any, value: Any) -> None:
        k, mask = _index(key)
        if mask:
            counter.sync("boolean mask")
        self._a[k] = unwrap(value, "ndarray.__setitem__", sequences=False)

    # --- methods -------------------------------------------------------------------------------

    def reshape(self, *shape: Any, **kwargs: Any) -> ndarray:
        return ndarray(self._a.reshape(*shape, **kwargs))

    def transpose(self, *axes: Any) -> ndarray:
        return ndarray(self._a.transpose(*axes))

    def view(self, dtype: Any) -> ndarray:
        return ndarray(self._a.view(dtype))

    def astype(self, dtype: Any, copy: bool = True, **kwargs: Any) -> ndarray:
        return ndarray(self._a.astype(dtype, copy=copy, **kwargs))

    def copy(self, order: str = "C") -> ndarray:
        return ndarray(self._a.copy(order=order))

    def fill(self, value: Any) -> None:
        self._a.fill(unwrap(value, "ndarray.fill", sequences=False))

    __hash__ = None  # type: ignore[assignment]


_METHODS = (
    "sum", "mean", "max", "min", "prod", "std", "var", "any", "all", "argmax", "argmin", "cumsum",
    "ravel", "flatten", "squeeze", "swapaxes", "clip", "dot", "repeat", "take", "round", "conj",
)  # fmt: skip
_ARITHMETIC = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
    "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "matmul": np.matmul,
    "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor, "lshift": np.left_shift,
    "rshift": np.right_shift,
}  # fmt: skip
_COMPARISONS = {
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
    "ne": np.not_equal,
}  # fmt: skip
_UNARY = {"neg": np.negative, "pos": np.positive, "abs": np.absolute, "invert": np.invert}

for _name in _METHODS:
    setattr(ndarray, _name, _method(_name))
for _name, _uf in _ARITHMETIC.items():
    setattr(ndarray, f"__{_name}__", _binary(_uf))
    setattr(ndarray, f"__r{_name}__", _binary(_uf, reflected=True))
    setattr(ndarray, f"__i{_name}__", _inplace(_uf))
for _name, _uf in _COMPARISONS.items():
    setattr(ndarray, f"__{_name}__", _binary(_uf))
for _name, _uf in _UNARY.items():
    setattr(ndarray, f"__{_name}__", _unary(_uf))
del _name, _uf
