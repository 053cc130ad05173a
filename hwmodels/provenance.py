"""Where a value came from: the sources and tags a traced step carries, and its recorder.

A :class:`Source` is a signal or parameter of the network (an input, the activity of layer h, a
forward array, a feedback array C^{k→h}); a :class:`Tag` is a source and the route it took to
reach a value (``direct``, ``transport``, ``channel``, ``broadcast``). The :class:`Recorder`
keeps, for one training step, the tags that reached every parameter's update, the operations
counted per phase and the channel's deliveries; :func:`recording` makes it the recorder of the
running thread or task. :mod:`hwmodels.trace` propagates the tags through numpy.
"""

from __future__ import annotations

import contextlib
import contextvars
import traceback
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EMPTY",
    "PARAMS",
    "ChannelRead",
    "Recorder",
    "Source",
    "Tag",
    "absorb",
    "active",
    "recording",
    "reroute",
]

PARAMS = ("weight", "bias", "feedback")


@dataclass(frozen=True, order=True)
class Source:
    """Where a value came from.

    kind : ``input`` (x), ``target`` (T), ``activity`` (O^layer), ``derivative`` (f′ of layer,
    computed by the network's ``fprime``), ``weight`` (W^layer), ``bias`` (b^layer),
    ``feedback`` (C^{sender→layer}).
    """

    kind: str
    layer: int = 0
    sender: int = 0
    part: str = ""

    @property
    def is_param(self) -> bool:
        """True for synaptic parameters (forward weights, biases, feedback matrices)."""
        return self.kind in PARAMS

    def _names(self) -> tuple[str, str]:
        """(symbol, words) of this source: ('W2', 'forward weights of layer 2'), ..."""
        if self.part in ("Q", "P"):  # a factor of low-rank feedback C = QP
            c = f"C{self.sender}→{self.layer}.{self.part}"
            which = "to the relays" if self.part == "Q" else "from the relays"
            return c, f"low-rank feedback factor {c} ({which})"
        if self.part:
            c = f"C{self.sender}→W{self.layer}"
            return c, f"per-synapse feedback {c}"
        h, c = self.layer, f"C{self.sender}→{self.layer}"
        return {
            "input": ("x", "the input x"),
            "target": ("T", "the target T"),
            "activity": (f"O{h}", f"the activity of layer {h}"),
            "derivative": (f"f′{h}", f"f′ of layer {h}"),
            "weight": (f"W{h}", f"forward weights of layer {h}"),
            "bias": (f"b{h}", f"biases of layer {h}"),
            "feedback": (c, f"feedback synapses {c}"),
        }[self.kind]

    def __str__(self) -> str:
        return self._names()[0]

    def describe(self) -> str:
        """Words for reports: 'forward weights of layer 2', 'the target', ..."""
        return self._names()[1]


@dataclass(frozen=True, order=True)
class Tag:
    """A source and how it got here.

    route : ``direct`` (read as it is), ``channel`` (delivered to layer ``dest`` by a feedback
    array), ``transport`` (delivered to layer ``dest`` by a transposed read of a forward array —
    or, for a weight tag, the weights read transposed), ``backward`` (a feedback matrix read
    transposed), ``broadcast`` (through a per-example scalar).
    """

    source: Source
    route: str = "direct"
    dest: int = -1

    def __str__(self) -> str:
        if self.route == "direct":
            return str(self.source)
        if self.route == "broadcast":
            return f"{self.source}⇢bcast"
        arrow = "ᵀ" if self.route in ("transport", "backward") else ""
        return f"{self.source}{arrow}⇢{self.dest}"


EMPTY: frozenset = frozenset()


def absorb(tags: frozenset[Tag]) -> frozenset[Tag]:
    """A neuron's own bias is part of its activity: drop b^l where O^l (same route) is present."""
    acts = {(t.source.layer, t.route, t.dest) for t in tags if t.source.kind == "activity"}
    if not acts:
        return tags
    return frozenset(
        t
        for t in tags
        if not (t.source.kind == "bias" and (t.source.layer, t.route, t.dest) in acts)
    )


def reroute(tags: frozenset[Tag], route: str, dest: int) -> set[Tag]:
    """What a read delivers to layer ``dest``: the signal's content, re-routed.

    Parameters read directly are not part of the signal and keep their route (so reading W
    anywhere stays visible); parameters that already travelled inside the signal (a feedback
    matrix of an earlier hop) travel on, and weights once transported stay ``transport``.
    """
    out = set()
    for t in tags:
        if t.source.is_param and t.route == "direct":
            out.add(t)
        elif t.source.kind == "weight" and t.route == "transport":
            out.add(Tag(t.source, "transport", dest))
        elif t.source.kind == "feedback" and t.route == "backward":
            out.add(Tag(t.source, "backward", dest))
        else:
            out.add(Tag(t.source, route, dest))
    return out


@dataclass
class ChannelRead:
    """One delivery of the learning channel: an array read that sends a signal to layer ``dest``.

    ``edge`` is ``("C", k, h)`` for feedback array C^{k→h}, ``("W", l, l−1)`` for a transposed
    read of W^l, ``("P", L, h)`` for per-synapse feedback. ``columns`` (E, n_dst) marks the
    receivers (units of layer ``dest``; forward synapses for per-synapse feedback) with at least
    one non-zero synapse in this array: each needs a wire. ``synapses`` counts the non-zero
    entries of the array read, ``macs`` the multiply-accumulates the read executed.
    """

    edge: tuple[str, int, int]
    dest: int
    columns: np.ndarray
    synapses: int
    macs: dict[str, int]
    source: Source


@dataclass
class Recorder:
    """What one traced training step did: sinks, operation counts, channel deliveries, leaks."""

    phases: list[str] = field(default_factory=list)
    sinks: dict[Source, set[Tag]] = field(default_factory=dict)
    writes: dict[Source, int] = field(default_factory=dict)
    # counts[(phase, category)], category in macs (as executed), macs_syn (those whose synapse
    # is non-zero), macs_nz (both factors non-zero), mults, adds, other, quant, reads (synapse
    # values fetched from an array: once per matmul, reused over the minibatch)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    matmul_kinds: dict[tuple[str, str], int] = field(default_factory=dict)
    reads: list[ChannelRead] = field(default_factory=list)
    posts: dict[int, np.ndarray] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)

    @property
    def phase_now(self) -> str:
        """The outermost running phase (a forward pass inside the channel is channel work)."""
        return self.phases[0] if self.phases else "update"

    @contextlib.contextmanager
    def phase(self, name: str):
        """Attribute the operations inside the block to ``name`` (unless a phase is running)."""
        self.phases.append(name)
        try:
            yield
        finally:
            self.phases.pop()

    def add(self, category: str, n: int) -> None:
        key = (self.phase_now, category)
        self.counts[key] = self.counts.get(key, 0) + int(n)

    def sink(self, param: Source, tags: frozenset[Tag], writes: int = 0) -> None:
        self.sinks.setdefault(param, set()).update(tags)
        self.writes[param] = self.writes.get(param, 0) + int(writes)

    def leak(self) -> None:
        where = traceback.extract_stack(limit=6)[:-2]
        self.leaks.append(" <- ".join(f"{f.name} ({f.filename}:{f.lineno})" for f in where[::-1]))


# The recorder of the running block: a context variable, so that threads and asyncio tasks that
# trace at the same time each count into their own recorder.
_ACTIVE: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "hwmodels_recorder", default=None
)


@contextlib.contextmanager
def recording(rec: Recorder):
    """Make ``rec`` the recorder of every traced operation inside the block (in this thread or
    task: the recorder is a :class:`contextvars.ContextVar`)."""
    token = _ACTIVE.set(rec)
    try:
        yield rec
    finally:
        _ACTIVE.reset(token)


def active() -> Recorder | None:
    """The recorder of the running block in this thread or task (None outside one)."""
    return _ACTIVE.get()
