"""Traced arrays: numpy arrays that carry where every value came from (their tags, sources and
the step's recorder are :mod:`hwmodels.provenance`; their names are re-exported here).

A :class:`Traced` wraps a numpy array and a set of :class:`Tag` s. Every numpy operation on it
(ufuncs through ``__array_ufunc__``, functions through ``__array_function__``, and the ndarray
methods lpfa uses) returns a new :class:`Traced` whose tags are the union of its operands' tags,
with four physical exceptions, decided by the orientation of the arrays involved, never by
which lpfa function ran:

- a **forward read** — a matmul that contracts the *input* axis of a forward array W^h — is the
  array's own function: the result is the pre-activation of layer h, tagged ``O^h``; W^h's tag
  and the (forward) activity of layer h−1 it read are absorbed;
- a **transposed read** of a forward array (contracting its *output* axis: weight transport)
  delivers the other operand's signal to layer h−1 and adds the tag ``W^h`` routed ``transport``;
- a **channel read** — a product with a feedback array C^{k→h} (a matmul contracting its
  *sending* axis, or an elementwise product, as per-synapse feedback does) — delivers the other
  operand's signal to layer h (route ``channel``);
- a **reduction over the unit axis** of a signal leaves one scalar per example, which any neuron
  may receive as a broadcast (route ``broadcast``: a neuromodulator, as in node perturbation).

Parameters (forward weights, biases, feedback matrices) are never re-routed: a parameter read
any other way stays ``direct``, so a rule that reads W anywhere is seen at the update.

An in-place write into a parameter (``W += dW``, ``C += dC``, ``W[...] = v``) is a **sink**: the
:class:`Recorder` keeps the tags of everything that reached it. The recorder also counts every
multiply-accumulate, elementwise operation, array read and channel delivery, attributed to the
phase that is running (see :meth:`Recorder.phase`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from hwmodels.provenance import (
    EMPTY,
    ChannelRead,
    Recorder,
    Source,
    Tag,
    absorb,
    recording,
    reroute,
)
from hwmodels.provenance import active as _active

__all__ = ["ChannelRead", "Recorder", "Source", "Tag", "Traced", "raw", "recording"]


# ufuncs whose cost is one multiplication / one addition per output element; all other
# elementwise ufuncs (tanh, exp, log, comparisons, max, sign, abs, divide, ...) count as "other"
_MULTS = {np.multiply}
_ADDS = {np.add, np.subtract, np.negative, np.positive}


def raw(x: Any) -> Any:
    """The plain array inside a :class:`Traced` (recursively through lists and tuples)."""
    if isinstance(x, Traced):
        return x.a
    if isinstance(x, list | tuple):
        return type(x)(raw(v) for v in x)
    return x


def _tags(*xs: Any) -> frozenset[Tag]:
    out: set[Tag] = set()
    for x in xs:
        if isinstance(x, Traced):
            out |= x.tags
        elif isinstance(x, list | tuple):
            out |= _tags(*x)
    return frozenset(out)


def _axes_of(x: Any, ndim: int) -> tuple[frozenset, ...]:
    if isinstance(x, Traced):
        return x.axes
    return (EMPTY,) * ndim


def _broadcast_axes(ndim: int, *xs: Any) -> tuple[frozenset, ...]:
    """Per-axis names of an elementwise result: operands aligned from the right, names united."""
    out = [set() for _ in range(ndim)]
    for x in xs:
        if isinstance(x, Traced):
            for i, names in enumerate(x.axes[::-1]):
                if i < ndim:
                    out[ndim - 1 - i] |= names
    return tuple(frozenset(s) for s in out)


def _reshape_axes(old: tuple[int, ...], new: tuple[int, ...], axes) -> tuple[frozenset, ...]:
    """Axis names after a reshape: merged axes unite their names, split axes share them.

    Size-1 axes present on both sides keep their names in order; an old size-1 axis with no
    partner lends its names to the next group (so no name is lost when a layer has one unit).
    """
    unknown = (EMPTY,) * len(new)
    if 0 in old or 0 in new:
        return unknown
    out: list[frozenset] = [EMPTY] * len(new)
    pending: frozenset = EMPTY
    i = j = 0
    while i < len(old) or j < len(new):
        if i < len(old) and j < len(new) and old[i] == 1 and new[j] == 1:
            out[j] = axes[i] | pending
            pending = EMPTY
            i, j = i + 1, j + 1
            continue
        if j < len(new) and new[j] == 1:
            j += 1
            continue
        if i < len(old) and old[i] == 1:
            pending |= axes[i]
            i += 1
            continue
        if i >= len(old) or j >= len(new):
            return unknown
        group_old, group_new = [i], [j]
        size_old, size_new = old[i], new[j]
        i, j = i + 1, j + 1
        while size_old != size_new:
            if size_old < size_new:
                if i >= len(old):
                    return unknown
                size_old *= old[i]
                group_old.append(i)
                i += 1
            else:
                if j >= len(new):
                    return unknown
                size_new *= new[j]
                group_new.append(j)
                j += 1
        names = pending.union(*(axes[k] for k in group_old))
        pending = EMPTY
        for k in group_new:
            out[k] = names
    if pending and out:
        out[-1] |= pending
    return tuple(out)


def _index_axes(ndim: int, key: Any, axes) -> tuple[frozenset, ...] | None:
    """Axis names after basic indexing (ints, slices, None, Ellipsis); None for other keys."""
    key = key if isinstance(key, tuple) else (key,)
    basic = (int, slice, np.integer, type(None), type(Ellipsis))
    if not all(isinstance(k, basic) for k in key):
        return None
    n_used = sum(1 for k in key if k is not None and k is not Ellipsis)
    out: list[frozenset] = []
    i = 0
    for k in key:
        if k is Ellipsis:
            for _ in range(ndim - n_used):
                out.append(axes[i])
                i += 1
        elif k is None:
            out.append(EMPTY)
        elif isinstance(k, slice):
            out.append(axes[i])
            i += 1
        else:
            i += 1
    out.extend(axes[i:])
    return tuple(out)


def _wrap(result: Any, tags: frozenset[Tag], axes=None, param=None) -> Any:
    if isinstance(result, np.ndarray):
        ax = axes if axes is not None and len(axes) == result.ndim else (EMPTY,) * result.ndim
        return Traced(result, tags, ax, param)
    if isinstance(result, np.generic):
        return Traced(np.asarray(result), tags, (), None)
    if isinstance(result, tuple):
        return tuple(_wrap(r, tags) for r in result)
    if isinstance(result, list):
        return [_wrap(r, tags) for r in result]
    return result


class Traced(NDArrayOperatorsMixin):
    """A numpy array with provenance ``tags`` and per-axis names ``axes``.

    Parameters
    ----------
    a : numpy.ndarray
    tags : frozenset of Tag
        Where the values came from.
    axes : tuple of frozenset of str, optional
        For parameters and what is derived from them: names such as ``in:W2``, ``out:W2``,
        ``src:C4→2``, ``dst:C4→2`` per axis, followed through transposes and reshapes, so that a
        matmul knows which way it reads an array.
    param : Source, optional
        Set on an installed parameter (and its views): in-place writes into it are sinks.
    """

    __slots__ = ("a", "axes", "param", "tags")
    __array_priority__ = 1000

    def __init__(self, a: np.ndarray, tags=EMPTY, axes=None, param: Source | None = None):
        self.a = a
        self.tags = frozenset(tags)
        self.axes = tuple(axes) if axes is not None else (EMPTY,) * a.ndim
        self.param = param

    # --- array attributes -----------------------------------------------------------------------

    shape = property(lambda self: self.a.shape)
    ndim = property(lambda self: self.a.ndim)
    dtype = property(lambda self: self.a.dtype)
    size = property(lambda self: self.a.size)
    itemsize = property(lambda self: self.a.itemsize)
    flags = property(lambda self: self.a.flags)

    def __len__(self) -> int:
        return len(self.a)

    def __repr__(self) -> str:
        tags = ", ".join(sorted(map(str, self.tags)))
        return f"Traced(shape={self.shape}, dtype={self.dtype}, tags={{{tags}}})"

    def __array__(self, dtype=None, copy=None):
        # numpy code that is not dispatched (np.asarray inside a helper) would strip the tags:
        # the audit records it, so that a laundering path is reported, never silently lost.
        if (rec := _active()) is not None:
            rec.leak()
        return self.a if dtype is None else self.a.astype(dtype)

    # Python scalars carry no tags: every exit to them is recorded as a leak too.

    def __float__(self) -> float:
        self.__array__()
        return float(self.a)

    def __int__(self) -> int:
        self.__array__()
        return int(self.a)

    def __bool__(self) -> bool:
        self.__array__()
        return bool(self.a)

    def item(self, *args):
        self.__array__()
        return self.a.item(*args)

    def tolist(self):
        self.__array__()
        return self.a.tolist()

    # --- views and shape --------------------------------------------------------------------------

    def _view(self, result: np.ndarray, axes) -> Traced:
        shares = self.param is not None and np.may_share_memory(result, self.a)
        return Traced(result, self.tags, axes, self.param if shares else None)

    @property
    def T(self) -> Traced:
        return self._view(self.a.T, self.axes[::-1])

    def transpose(self, *order) -> Traced:
        if len(order) == 1 and isinstance(order[0], tuple | list):
            order = tuple(order[0])
        if not order:
            order = tuple(range(self.ndim))[::-1]
        return self._view(self.a.transpose(order), tuple(self.axes[i] for i in order))

    def swapaxes(self, i: int, j: int) -> Traced:
        order = list(range(self.ndim))
        order[i], order[j] = order[j], order[i]
        return self.transpose(tuple(order))

    def reshape(self, *shape, **kw) -> Traced:
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        result = self.a.reshape(shape, **kw)
        return self._view(result, _reshape_axes(self.a.shape, result.shape, self.axes))

    def ravel(self) -> Traced:
        return self.reshape(-1)

    def __getitem__(self, key) -> Traced:
        result = self.a[raw(key)]
        axes = _index_axes(self.ndim, key, self.axes)
        tags = self.tags | _tags(key)
        out = self._view(result, axes) if isinstance(result, np.ndarray) else None
        if out is None:
            return Traced(np.asarray(result), tags, (), None)
        out.tags = tags
        return out

    def __setitem__(self, key, value) -> None:
        self.a[raw(key)] = raw(value)
        tags = _tags(value, key)
        if self.param is not None and (rec := _active()) is not None:
            rec.sink(self.param, tags)
        elif self.param is None:
            self.tags = absorb(self.tags | tags)

    def astype(self, dtype, *args, **kw) -> Traced:
        return Traced(self.a.astype(dtype, *args, **kw), self.tags, self.axes)

    def copy(self, *args, **kw) -> Traced:
        return Traced(self.a.copy(*args, **kw), self.tags, self.axes)

    # --- reductions -----------------------------------------------------------------------------

    def _reduce(self, name: str, axis=None, keepdims=False, **kw) -> Traced:
        a = self.a
        result = np.asarray(getattr(a, name)(axis=axis, keepdims=keepdims, **kw))
        ndim = a.ndim
        if axis is None:
            axes_t = tuple(range(ndim))
        else:
            axes_t = tuple(ax % ndim for ax in (axis if isinstance(axis, tuple) else (axis,)))
        if (rec := _active()) is not None:
            category = "adds" if name in ("sum", "mean") else "other"
            rec.add(category, a.size - result.size)
        tags = self.tags
        if ndim >= 2 and axes_t == (ndim - 1,):
            # one scalar per example: what a broadcast (neuromodulator) line can carry
            tags = frozenset(reroute(tags, "broadcast", -1))
        keep = [EMPTY if i in axes_t else names for i, names in enumerate(self.axes)]
        axes = tuple(keep) if keepdims else tuple(n for i, n in enumerate(keep) if i not in axes_t)
        return Traced(result, tags, axes)

    def sum(self, axis=None, dtype=None, keepdims=False, **kw) -> Traced:
        return self._reduce("sum", axis, keepdims, dtype=dtype, **kw)

    def mean(self, axis=None, dtype=None, keepdims=False, **kw) -> Traced:
        return self._reduce("mean", axis, keepdims, dtype=dtype, **kw)

    def max(self, axis=None, keepdims=False, **kw) -> Traced:
        return self._reduce("max", axis, keepdims, **kw)

    def min(self, axis=None, keepdims=False, **kw) -> Traced:
        return self._reduce("min", axis, keepdims, **kw)

    def any(self, axis=None, keepdims=False, **kw) -> Traced:
        return self._reduce("any", axis, keepdims, **kw)

    def all(self, axis=None, keepdims=False, **kw) -> Traced:
        return self._reduce("all", axis, keepdims, **kw)

    def argmax(self, axis=None, **kw) -> Traced:
        return Traced(np.asarray(self.a.argmax(axis=axis, **kw)), self.tags)

    # --- numpy protocols ------------------------------------------------------------------------

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        raw_in = [raw(x) for x in inputs]
        raw_out = None if out is None else tuple(raw(o) for o in out)
        rec = _active()
        if out is not None:
            kwargs["out"] = raw_out
        if ufunc is np.matmul and method == "__call__":
            result = np.matmul(*raw_in, **kwargs)
            tags, axes = _matmul(inputs[0], inputs[1], raw_in[0], raw_in[1], result)
        else:
            result = getattr(ufunc, method)(*raw_in, **kwargs)
            tags = _tags(*inputs)
            if ufunc is np.multiply and method == "__call__":
                tags = _deliver_products(inputs)
            res0 = result[0] if isinstance(result, tuple) else result
            ndim = np.ndim(res0)
            axes = _broadcast_axes(ndim, *inputs) if method == "__call__" else None
            if rec is not None:
                n = np.size(res0)
                if method == "reduce":
                    n = sum(np.size(x) for x in raw_in) - n
                category = "mults" if ufunc in _MULTS else "adds" if ufunc in _ADDS else "other"
                rec.add(category, n)
        tags = absorb(tags)
        if out is not None:
            if tags and rec is not None and not all(isinstance(o, Traced) for o in out):
                rec.leak()  # traced values written into a plain array lose their tags
            for o in out:
                if isinstance(o, Traced):
                    if o.param is not None:
                        if rec is not None:
                            others = [r for x, r in zip(inputs, raw_in, strict=True) if x is not o]
                            writes = np.count_nonzero(others[0]) if others else 0
                            rec.sink(o.param, tags, writes)
                    else:
                        o.tags = tags
            return out[0] if len(out) == 1 else out
        return _wrap(result, tags, axes)

    def __array_function__(self, func, types, args, kwargs):
        name = getattr(func, "__name__", "")
        if name in ("zeros_like", "empty_like", "ones_like"):
            return Traced(func(*raw(args), **raw(kwargs)), EMPTY, None)
        if name in ("sum", "mean", "max", "min", "amax", "amin") and isinstance(args[0], Traced):
            method = {"amax": "max", "amin": "min"}.get(name, name)
            return getattr(args[0], method)(*args[1:], **kwargs)
        if name in ("transpose", "reshape", "swapaxes") and isinstance(args[0], Traced):
            return getattr(args[0], name)(*args[1:], **kwargs)
        if name == "copyto":  # an in-place write: the destination takes the source's tags
            dst, src = args[0], args[1]
            func(raw(dst), raw(src), **raw(kwargs))
            if isinstance(dst, Traced):
                if dst.param is not None and (rec := _active()) is not None:
                    rec.sink(dst.param, _tags(src))
                elif dst.param is None:
                    dst.tags = _tags(src)
            return None
        result = func(*raw(args), **raw(kwargs))
        tags = _tags(args, list(kwargs.values()))
        axes = None
        first = args[0] if args else None
        if name == "broadcast_to" and isinstance(first, Traced):
            nd = np.ndim(result)
            axes = (EMPTY,) * (nd - first.ndim) + first.axes
        elif name == "pinv" and isinstance(first, Traced) and first.ndim >= 2:
            axes = (*first.axes[:-2], first.axes[-1], first.axes[-2])
        elif name in ("abs", "sign", "clip", "where") and isinstance(first, Traced):
            axes = _broadcast_axes(np.ndim(result), *args)
        return _wrap(result, tags, axes)


def _names(axes: frozenset, prefix: str) -> list[str]:
    return [n[len(prefix) :] for n in axes if n.startswith(prefix)]


def _matmul(a, b, A: np.ndarray, B: np.ndarray, result: np.ndarray):
    """Tags and axis names of ``a @ b``; counts its MACs and records channel reads."""
    ta, tb = _tags(a), _tags(b)
    ka = _axes_of(a, A.ndim)[-1]
    kb = _axes_of(b, B.ndim)[-2] if B.ndim >= 2 else _axes_of(b, B.ndim)[-1]
    forward: list[tuple[int, int]] = []  # (layer, operand index)
    reads: list[tuple[str, int, int, int]] = []  # (kind, sender, dest, operand index)
    out: set[Tag] = set()
    read_params: set[Tag] = set()
    unread_params = False
    for idx, (tags, K) in enumerate(((ta, ka), (tb, kb))):
        # a feedback array whose values were made from W (sign symmetry redrawn with W's signs)
        # is one array read: the channel's; W's tag stays direct, so the update that uses it
        # still reads W (non-local), but no second, transposed array is counted
        made_from_w = any(
            t.source.kind == "feedback"
            and t.route == "direct"
            and f"src:C{t.source.sender}→{t.source.layer}" in K
            for t in tags
        )
        for t in tags:
            s = t.source
            if not s.is_param or t.route != "direct":
                continue
            if s.kind == "weight" and made_from_w:
                continue
            if s.kind == "weight" and f"in:W{s.layer}" in K:
                forward.append((s.layer, idx))
            elif s.kind == "weight" and f"out:W{s.layer}" in K:
                reads.append(("W", s.layer, s.layer - 1, idx))
                out.add(Tag(s, "transport", s.layer - 1))
            elif s.kind == "feedback" and f"src:C{s.sender}→{s.layer}" in K:
                # "Q": the first factor of low-rank feedback, which sends to its relay units
                reads.append(("Q" if s.part == "Q" else "C", s.sender, s.layer, idx))
                out.add(Tag(s, "channel", s.layer))
            elif s.kind == "feedback" and f"dst:C{s.sender}→{s.layer}" in K:
                # a feedback array read backwards is weight transport of the channel itself
                out.add(Tag(s, "backward", s.sender))
            else:
                unread_params = True
                continue
            read_params.add(t)
    for idx, tags in enumerate((ta, tb)):
        own = tags - read_params
        params = {t for t in own if t.source.is_param and t.route == "direct"}
        signals = frozenset(own - params)
        out |= params
        readers = [r for r in reads if r[3] != idx]
        fwd = [h for h, i in forward if i != idx]
        if readers:
            for kind, _, dest, _ in readers:
                out |= reroute(signals, "transport" if kind == "W" else "channel", dest)
        elif fwd:
            h = fwd[0]
            out |= {t for t in signals if not _absorbed_by_read(t, h)}
        else:
            out |= signals
    for h, _ in forward:
        out.add(Tag(Source("activity", h)))
    rec = _active()
    if rec is not None:
        n = A.shape[-1]
        macs = int(np.size(result)) * n
        nzA, nzB = (A != 0).astype(np.float64), (B != 0).astype(np.float64)
        macs_nz = int(np.matmul(nzA, nzB).sum())
        # products whose synapse exists (a sparse array skips the others), signals dense
        pa = any(t.source.is_param and t.route == "direct" for t in ta)
        pb = any(t.source.is_param and t.route == "direct" for t in tb)
        if pa != pb:
            one = np.ones_like(nzB) if pa else np.ones_like(nzA)
            macs_syn = int(np.matmul(nzA, one).sum() if pa else np.matmul(one, nzB).sum())
        else:
            macs_syn = macs
        if reads:
            kind = "channel"
        elif forward:
            kind = "forward"
        else:
            kind = "other" if unread_params else "signal"
        rec.add("macs", macs)
        rec.add("macs_nz", macs_nz)
        rec.add("macs_syn", macs_syn)
        key = (rec.phase_now, kind)
        rec.matmul_kinds[key] = rec.matmul_kinds.get(key, 0) + macs
        for X, tags in ((A, ta), (B, tb)):
            if any(t.source.is_param and t.route == "direct" for t in tags):
                rec.add("reads", np.count_nonzero(X))
        for kind_r, sender, dest, idx in reads:
            X = A if idx == 0 else B
            # the receivers are the parameter operand's axis that is not contracted
            cols = (X != 0).any(axis=-2) if idx == 1 else (X != 0).any(axis=-1)
            src = (
                Source("weight", sender)
                if kind_r == "W"
                else Source("feedback", dest, sender, part=_factor(idx, ta, tb, sender, dest))
            )
            counts = {"macs": macs, "macs_syn": macs_syn, "macs_nz": macs_nz}
            rec.reads.append(
                ChannelRead(
                    (kind_r, sender, dest),
                    dest,
                    np.atleast_2d(cols),
                    np.count_nonzero(X),
                    counts,
                    src,
                )
            )
    if reads or forward:
        return frozenset(out), None
    xa, xb = _axes_of(a, A.ndim), _axes_of(b, B.ndim)
    batch_a, batch_b = xa[:-2], xb[:-2]
    nb = max(len(batch_a), len(batch_b))
    batch_a = (EMPTY,) * (nb - len(batch_a)) + batch_a
    batch_b = (EMPTY,) * (nb - len(batch_b)) + batch_b
    lead = tuple(x | y for x, y in zip(batch_a, batch_b, strict=True))
    rows = (xa[-2],) if A.ndim >= 2 else ()
    cols_ax = (xb[-1],) if B.ndim >= 2 else ()
    axes = (*lead, *rows, *cols_ax)
    return frozenset(out), axes if len(axes) == np.ndim(result) else None


def _factor(idx: int, ta, tb, sender: int, dest: int) -> str:
    """The ``part`` of the feedback array C^{sender→dest} read as operand ``idx`` ("" when dense,
    "Q" or "P" for the factors of low-rank feedback)."""
    for t in ta if idx == 0 else tb:
        s = t.source
        if s.kind == "feedback" and (s.sender, s.layer) == (sender, dest) and t.route == "direct":
            return s.part
    return ""


def _absorbed_by_read(t: Tag, h: int) -> bool:
    """True for the forward signals a forward read of W^h consumes (its input lines)."""
    if t.route != "direct":
        return False
    if h == 1:
        return t.source.kind == "input"
    return t.source.kind in ("activity", "derivative", "bias") and t.source.layer == h - 1


def _deliver_products(inputs) -> frozenset[Tag]:
    """Tags of an elementwise product; a direct feedback operand delivers the other's signal."""
    dests = [
        t.source.layer
        for x in inputs
        if isinstance(x, Traced)
        for t in x.tags
        if t.source.kind == "feedback" and t.route == "direct"
    ]
    if not dests:
        return _tags(*inputs)
    # per-synapse feedback: each non-zero c reaches one forward synapse
    if (rec := _active()) is not None:
        for x in inputs:
            fb = [t.source for t in getattr(x, "tags", ()) if t.source.kind == "feedback"]
            # a dense array scaled or re-signed (decay, sign tracking) is no per-synapse read
            per_synapse = fb and fb[0].part == "per-synapse"
            if isinstance(x, Traced) and per_synapse and all(t.route == "direct" for t in x.tags):
                s = fb[0]
                cols = (x.a != 0).reshape(x.shape[0] if x.ndim >= 2 else 1, -1)
                rec.reads.append(
                    ChannelRead(
                        ("P", s.sender, s.layer), s.layer, cols, np.count_nonzero(x.a), {}, s
                    )
                )
    out: set[Tag] = set()
    for x in inputs:
        if not isinstance(x, Traced):
            continue
        is_fb = any(t.source.kind == "feedback" and t.route == "direct" for t in x.tags)
        if is_fb:
            out |= {
                Tag(t.source, "channel", t.source.layer)
                if t.source.kind == "feedback" and t.route == "direct"
                else t
                for t in x.tags
            }
        else:
            signals = frozenset(t for t in x.tags if not t.source.is_param)
            out |= {t for t in x.tags if t.source.is_param}
            for d in dests:
                out |= reroute(signals, "channel", d)
    return frozenset(out)
