"""Observe one real training step and check that every update reads only local signals.

:func:`trace_step` builds the network of a configuration (numpy backend, one member), installs
:class:`~hwmodels.trace.Traced` copies of every forward array, bias and feedback matrix, and of
the input and target, and runs ``Network.step`` — lpfa's own code. Every in-place write into a
parameter is recorded with the tags of what reached it; :func:`classify` then sorts those
sources into local and non-local (Baldi et al. 2018, eq. 12):

- a forward synapse w_ij^h may read the pre-synaptic activity O_j^{h−1} (x for h = 1), the
  post-synaptic neuron's activity or derivative (O_i^h, f′_i^h), its own weight and bias, and
  whatever the learning channel delivered to neuron i (through feedback synapses, or a broadcast
  scalar per example); the top layer may also read the target (eq. 11);
- a feedback synapse c^{k→h} (adaptive channels) may read the signals at its two ends: what
  its sending neuron in layer k holds, and the activity of its receiving neuron in layer h.

Anything else is named: "layer 1 update reads forward weights of layer 2 through a transposed
read: weight transport". The instrumentation only labels parameters and marks which phase runs
(forward, channel, update: for counting); the verdict comes from the tags of the values that
actually reached ``W += dW``, so a rule that reads W anywhere is caught, whatever it declares.
"""

from __future__ import annotations

import dataclasses
import functools
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwmodels.trace import EMPTY, Recorder, Source, Tag, Traced, raw, recording

__all__ = [
    "LayerInfo",
    "StepTrace",
    "UpdateAudit",
    "classify",
    "information",
    "load_batch",
    "trace_step",
]


@dataclass
class StepTrace:
    """A traced training step: the network after it, the recorder, and what it ran on."""

    cfg: Any
    net: Any
    rec: Recorder
    batch_size: int
    n_train: int
    sizes: tuple[int, ...]


# --- running one traced step ------------------------------------------------------------------


def load_batch(cfg, source: str = "data") -> tuple[np.ndarray, np.ndarray, int]:
    """The first minibatch of the run's training set, and the training-set size.

    ``source="random"`` draws x ~ U[0, 1) and one-hot targets from a fixed seed instead (no data
    files needed); the training-set size is then ``data.n_train`` or the set's usual size.
    """
    from lpfa.data import load_cached, split_sizes

    sizes, dtype, B = tuple(cfg.model.layer_sizes), cfg.model.dtype, cfg.train.batch_size
    if source == "data":
        ds = load_cached(cfg.data, sizes, dtype)
        return ds.inputs(ds.x_train[:B]), ds.t_train[:B], len(ds.x_train)
    if source != "random":
        raise ValueError(f"source={source!r}: must be 'data' or 'random'")
    rng = np.random.default_rng(0)
    x = rng.random((B, sizes[0])).astype(dtype)
    t = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], B)]
    return x, t, split_sizes(cfg.data)[0]


def _param(a: np.ndarray, source: Source, names: tuple[str, ...]) -> Traced:
    axes = (EMPTY,) * (a.ndim - len(names)) + tuple(frozenset({n}) for n in names)
    return Traced(a, {Tag(source)}, axes, source)


def _feedback(C: Any, k: int, h: int) -> Traced:
    """A feedback matrix C^{k→h} (E, N_k, N_h) as a traced parameter (keeps earlier tags)."""
    source = Source("feedback", h, k)
    names = (f"src:C{k}→{h}", f"dst:C{k}→{h}")
    if isinstance(C, Traced):  # e.g. redrawn with the signs of a traced forward array
        axes = (*C.axes[:-2], C.axes[-2] | {names[0]}, C.axes[-1] | {names[1]})
        return Traced(C.a, C.tags | {Tag(source)}, axes, source)
    return _param(C, source, names)


def _keep_tags(fn, rec: Recorder):
    """A quantizer (or other value map) that keeps its input's tags: numpy's protocols do not
    reach ``np.asarray`` inside it, so it is run on the plain array and the tags re-attached."""

    @functools.wraps(fn)
    def wrapped(x, *args, **kw):
        out = fn(raw(x), *args, **kw)
        if isinstance(x, Traced):
            rec.add("quant", x.size)
            return Traced(out, x.tags, x.axes)
        return out

    wrapped.fmt = getattr(fn, "fmt", None)  # type: ignore[attr-defined]
    return wrapped


_VALUE_MAPS = ("error_q", "update_q", "input_q", "output_q", "weight_q")


def _wrap_value_maps(obj: Any, rec: Recorder) -> None:
    for name, value in list(vars(obj).items()):
        if value is None or not callable(value) or isinstance(value, type):
            continue
        if name in _VALUE_MAPS or hasattr(value, "fmt"):
            setattr(obj, name, _keep_tags(value, rec))


def _in_phase(fn, rec: Recorder, phase: str):
    @functools.wraps(fn)
    def wrapped(*args, **kw):
        with rec.phase(phase):
            return fn(*args, **kw)

    return wrapped


def instrument(net, rec: Recorder) -> None:
    """Install traced parameters and phase markers on a freshly built ``net`` (numpy backend)."""
    L = len(net.layers)
    for h, layer in enumerate(net.layers, 1):
        layer.W = _param(layer.W, Source("weight", h), (f"out:W{h}", f"in:W{h}"))
        layer.b = _param(layer.b, Source("bias", h), (f"out:W{h}",))
        _wrap_value_maps(layer, rec)
        update, apply = layer.update, layer.apply

        def traced_update(post, pre, scale, *a, _h=h, _update=update, **kw):
            rec.posts[_h] = np.atleast_3d(raw(post) != 0)
            with rec.phase("update"):
                return _update(post, pre, scale, *a, **kw)

        layer.update = traced_update
        layer.apply = _in_phase(apply, rec, "update")
    ch = net.channel
    for (k, h), fb in ch.feedback.items():
        if hasattr(fb, "Q"):  # low-rank feedback: its two factors are the arrays
            src, rel, dst = f"src:C{k}→{h}", f"rel:C{k}→{h}", f"dst:C{k}→{h}"
            fb.Q = _param(fb.Q, Source("feedback", h, k, part="Q"), (src, rel))
            fb.P = _param(fb.P, Source("feedback", h, k, part="P"), (src, dst))
        else:
            fb.C = _feedback(fb.C, k, h)
    if ch.per_weight is not None:
        ch.per_weight = [
            _param(
                C,
                Source("feedback", h, L, part="per-synapse"),
                (f"src:C{L}→W{h}", f"dst:W{h}", f"dsti:W{h}"),
            )
            for h, C in enumerate(ch.per_weight, 1)
        ]
    _wrap_value_maps(ch, rec)
    ch.on_feedback = _feedback  # arrays drawn during the step (resample) are parameters too
    ch.deliver = _in_phase(ch.deliver, rec, "channel")
    ch.adapt = _in_phase(ch.adapt, rec, "channel")  # learning feedback is the channel's work
    if hasattr(ch, "mirror"):  # the weight mirror's phase is the channel's own work
        ch.mirror = _in_phase(ch.mirror, rec, "channel")
    net.forward = _in_phase(net.forward, rec, "forward")
    fprime = net.fprime

    def traced_fprime(out):
        d = fprime(out)
        if isinstance(d, Traced):
            d.tags = frozenset(
                Tag(Source("derivative", t.source.layer), t.route, t.dest)
                if t.source.kind == "activity" and t.route == "direct"
                else t
                for t in d.tags
            )
        return d

    net.fprime = traced_fprime


def _keeping(fn, *traced: int):
    """A geometry-only map (im2col, col2im, pooling) run on plain arrays, its results tagged
    with what its arguments ``traced`` (positions) carried: lpfa.conv copies slices into fresh
    buffers, which numpy's protocols do not reach."""

    @functools.wraps(fn)
    def wrapped(*args, **kw):
        tags = frozenset().union(
            *(args[i].tags for i in traced if i < len(args) and isinstance(args[i], Traced))
        )
        out = fn(*raw(args), **{k: raw(v) for k, v in kw.items()})
        if not tags:
            return out
        if isinstance(out, tuple):
            return tuple(Traced(o, tags, None) for o in out)
        return Traced(out, tags, None)

    return wrapped


@contextmanager
def _conv_traced(net):
    """While a step is traced: lpfa.conv's patch gathering and scattering keep their tags, and
    so do the net's max-pools (the maxima and the taps that held them carry what they read)."""
    import lpfa.conv as conv

    saved = conv.im2col, conv.col2im
    conv.im2col, conv.col2im = _keeping(conv.im2col, 0), _keeping(conv.col2im, 0)
    for pool in getattr(net, "pools", ()):
        if pool is not None:
            pool.forward = _keeping(pool.forward, 0)
            pool.backward = _keeping(pool.backward, 0, 1)
    try:
        yield
    finally:
        conv.im2col, conv.col2im = saved


def trace_step(cfg, batch: tuple | None = None, *, source: str = "data") -> StepTrace:
    """Build ``cfg``'s network (numpy, first seed only) and run one traced training step.

    Parameters
    ----------
    cfg : lpfa.config.RunConfig
    batch : (x, t) or (x, t, n_train), optional
        x (B, N_0), t (B, N_L) host arrays; default the first minibatch (see :func:`load_batch`).
    source : {"data", "random"}
        Where the default minibatch comes from.
    """
    from lpfa.data import split_sizes
    from lpfa.network import Network

    cfg = dataclasses.replace(cfg, seeds=cfg.seeds[:1], backend="numpy")
    if batch is None:
        x, t, n_train = load_batch(cfg, source)
    else:
        x, t, *rest = batch
        n_train = rest[0] if rest else split_sizes(cfg.data)[0]
    dtype = cfg.model.dtype
    x = np.ascontiguousarray(x, dtype=dtype)
    t = np.ascontiguousarray(t, dtype=dtype)
    net = Network.build(cfg, np)
    rec = Recorder()
    instrument(net, rec)
    tc = cfg.train
    with recording(rec), _conv_traced(net):
        net.step(
            Traced(x, {Tag(Source("input"))}),
            Traced(t, {Tag(Source("target"))}),
            tc.lr,
            weight_decay=tc.weight_decay,
            momentum=tc.momentum,
        )
    # conv layers count as their pooled maps' units (flattened), as the layer above reads them
    return StepTrace(cfg, net, rec, x.shape[0], n_train, tuple(cfg.model.layer_sizes))


# --- classification ---------------------------------------------------------------------------


@dataclass
class UpdateAudit:
    """What one parameter's update read, and whether each source is local to its synapses."""

    param: str
    layer: int
    sources: list[str]
    local: bool
    offenses: list[str] = field(default_factory=list)
    roles: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _at_neuron(t: Tag, j: int, L: int) -> str | None:
    """The role of ``t`` if it is held by (or was delivered to) a neuron of layer j, else None."""
    s = t.source
    if t.route == "direct" and s.kind in ("activity", "derivative") and s.layer == j:
        return "post"
    if t.route == "direct" and s.kind == "target" and j == L:
        return "target"
    if t.route == "broadcast":
        return "broadcast"
    if t.route in ("channel", "transport") and t.dest == j and s.kind != "weight":
        return "channel"
    return None


def _offense(who: str, t: Tag) -> str:
    s = t.source
    if s.kind == "weight" and t.route == "transport":
        return f"{who} reads {s.describe()} through a transposed read: weight transport"
    if s.kind == "feedback" and t.route == "backward":
        return f"{who} reads {s.describe()} backwards: weight transport in the channel"
    if s.is_param and t.route == "direct":
        return f"{who} reads {s.describe()} directly"
    if t.route in ("channel", "transport"):
        return f"{who} reads {s.describe()} delivered to layer {t.dest}, not to its own neurons"
    return f"{who} reads {s.describe()}"


def classify(param: Source, tags, L: int) -> UpdateAudit:
    """Sort the sources that reached ``param``'s update into local roles and offenses.

    Parameters
    ----------
    param : Source
        ``weight``/``bias`` of layer h, or ``feedback`` C^{k→h}.
    tags : set of Tag
        Everything that reached the in-place writes into ``param``.
    L : int
        Number of forward layers (the output layer).
    """
    roles: dict[str, set[str]] = {}
    offenses: list[str] = []
    if param.kind == "feedback":
        who = f"C{param.sender}→{param.layer} update"
        k, h = param.sender, param.layer
    else:
        h = param.layer
        who = f"layer {h} update"
    for t in sorted(tags):
        s = t.source
        role = None
        if param.kind == "feedback":
            if t == Tag(param):
                role = "own"
            elif _at_neuron(t, h, L):
                role = "receiver"
            elif _at_neuron(t, k, L):
                role = "sender"
        elif t.route == "direct" and s.kind in ("weight", "bias") and s.layer == h:
            role = "own"
        elif t.route == "direct" and (
            (h == 1 and s.kind == "input") or (h > 1 and s.kind == "activity" and s.layer == h - 1)
        ):
            role = "pre"
        else:
            role = _at_neuron(t, h, L)
            if role is None and h == L and t.route == "direct" and s.kind == "activity":
                role = "post" if s.layer == L else None
        if role is None:
            offenses.append(_offense(who, t))
            role = "non-local"
        roles.setdefault(role, set()).add(str(t))
    name = str(param)
    return UpdateAudit(
        param=name,
        layer=param.layer,
        sources=sorted(str(t) for t in tags),
        local=not offenses,
        offenses=sorted(set(offenses)),
        roles={r: sorted(v) for r, v in roles.items()},
    )


@dataclass
class LayerInfo:
    """What hidden layer h's update carried (Baldi et al. 2018, Table 2)."""

    layer: int
    error: bool
    derivatives: list[int]
    weights: list[int]
    feedback: list[tuple[int, int]]
    broadcast: bool


def _layer_info(h: int, tags) -> LayerInfo:
    return LayerInfo(
        layer=h,
        error=any(t.source.kind == "target" for t in tags),
        derivatives=sorted({t.source.layer for t in tags if t.source.kind == "derivative"}),
        weights=sorted(
            {t.source.layer for t in tags if t.source.kind == "weight" and t.source.layer != h}
        ),
        feedback=sorted(
            {(t.source.sender, t.source.layer) for t in tags if t.source.kind == "feedback"}
        ),
        broadcast=any(t.route == "broadcast" for t in tags),
    )


def information(sinks: dict, L: int) -> tuple[list[LayerInfo], str, bool]:
    """Per hidden layer what its update carried; the Table-2 style formula; upper-f′ needed?

    Returns
    -------
    infos : list of LayerInfo, for the hidden layers that learned
    formula : str
        e.g. ``I_i^h(T−O, w(l>h), f′(l≥h))`` (BP) or ``I_i^h(T−O, r(L→h), f′(l=h))`` (SRBP).
    upper : bool
        True when some hidden update used f′ of a layer above its own.
    """
    infos = [
        _layer_info(h, sinks[Source("weight", h)])
        for h in range(1, L)
        if Source("weight", h) in sinks
    ]
    if not infos:
        return infos, "— (hidden layers do not learn)", False
    parts = []
    # the output O^L reached every hidden update with the target: an error; without it, the
    # target alone (DRTP)
    output = all(
        any(
            t.source.kind == "activity" and t.source.layer == L
            for t in sinks[Source("weight", i.layer)]
        )
        for i in infos
    )
    if all(i.error for i in infos):
        error = "T−O" if output else "T"
        parts.append(f"{error} (per-example scalar)" if all(i.broadcast for i in infos) else error)
    if any(i.weights for i in infos):
        if all(i.weights == list(range(i.layer + 1, L + 1)) for i in infos):
            parts.append("w(l>h)")
        else:
            parts.append("w(" + "; ".join(f"h={i.layer}: {i.weights}" for i in infos) + ")")
    if any(i.feedback for i in infos):
        if all(i.feedback == [(L, i.layer)] for i in infos):
            parts.append("r(L→h)")
        elif all(i.feedback == [(m + 1, m) for m in range(i.layer, L)] for i in infos):
            parts.append("r(l+1→l, l≥h)")
        else:
            low = infos[0]
            parts.append(
                "r(" + ", ".join(f"{k}→{m}" for k, m in low.feedback) + f" at h={low.layer})"
            )
    if all(not i.derivatives for i in infos):
        parts.append("no f′")
    elif all(i.derivatives == [i.layer] for i in infos):
        parts.append("f′(l=h)")
    elif all(i.derivatives == list(range(i.layer, L)) for i in infos):
        parts.append("f′(l≥h)")
    else:
        low = infos[0]
        parts.append(f"f′(l∈{low.derivatives} at h={low.layer})")
    upper = any(any(d > i.layer for d in i.derivatives) for i in infos)
    return infos, "I_i^h(" + ", ".join(parts) + ")", upper
