"""Operations, feedback synapses, wires and bits of one training step, counted from its trace.

Counting (all from :class:`~hwmodels.trace.Recorder`, i.e. from the code that ran):

- **operations** per phase (forward pass; learning channel = ``Channel.deliver``, including any
  extra forward pass it makes, and the feedback's own learning: adaptation, Kolen-Pollack, the
  weight mirror's phase; update = the forward synaptic writes and the output error):
  multiply-accumulates of every matmul, counted three ways — as executed (dense GEMMs), those
  whose synapse is non-zero (what a sparse array does), those whose two factors are non-zero
  (an event-driven machine) — and elementwise multiplications, additions and other operations;
- **channel MACs per example**, the reads of feedback arrays and transposed forward arrays,
  checked against Baldi et al. (2018) §3.1: Σ_{h=1}^{L−1} N_h N_{h+1} for BP / RBP (eq. 14
  without the input layer, which gets no error), N_L Σ_{h=1}^{L−1} N_h for SRBP (eq. 15). In a
  conv net (:func:`connection_macs`) N_h of a conv layer is its pooled maps C·H·W, and the
  connection from conv layer k to the layer below it is the kernel bank (W^k for BP, a random
  bank of its shape for RBP) read back at every window position, C_out · C_in·k² · H′W′ (H′W′
  the positions of conv k, before its pool); the others (a dense sender at the flatten
  boundary, SRBP's output onto every layer's maps) are dense; pooling routes and costs none;
- **feedback synapses**: the non-zero entries of every array the channel read (for the
  weight-transport rules, the forward arrays read backwards);
- **wires** (model of :mod:`hwmodels.layout`): one per receiving unit with a non-zero synapse in
  an array, from the sending layer to the unit; a broadcast (node perturbation) reaches every
  hidden unit; adaptive skipped channels also need the receiving layer's activity at the array.
  A kernel bank's read is traced as its C_in·k² columns; its receivers are the units of the
  layer below (the maps conv k reads) that some window position reaches through a column with a
  non-zero synapse (:func:`bank_receivers`);
- **messages**: one value on one wire for one example, sent only when the receiving unit's
  delivered error is non-zero (a dropped channel unit receives nothing); a pooled unit of a conv
  layer counts an example when a unit of its window has a non-zero error (the maximum it was
  routed to, for windows that do not overlap);
- **bits** = messages × bits per message of the channel's number format
  (``channel.error_format``; the dtype's width when there is none), and bit·mm on the wires.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwmodels.layout import Floorplan
from hwmodels.locality import StepTrace
from hwmodels.trace import Source
from lpfa.rules import Connections, edge_macs, spec

__all__ = [
    "ChannelCost",
    "bank_receivers",
    "channel_closed_form",
    "channel_cost",
    "connection_macs",
    "eq14_weights",
    "eq15_weights",
    "format_bits",
    "phase_ops",
    "pulse_counts",
]

PHASES = ("forward", "channel", "update")


def format_bits(fmt: Any, dtype: str = "float32", *, levels: bool = False) -> float:
    """Bits of one message in a number format.

    Parameters
    ----------
    fmt : lpfa.quant format, format spec string (``"log:bits=3,alpha=0.125"``) or None
        None and ``Identity`` carry the dtype's width (32 for float32).
    dtype : str
    levels : bool
        False (default): the format's code width ``fmt.code_bits`` (``LogFormat.bits`` as Baldi
        et al. (2018) count it, eq. 19). True: log2 of its number of distinct values
        ``fmt.n_values`` (information content): log2(2·bits + 1) for a LogFormat, log2(3) ≈ 1.58
        for Ternary.
    """
    width = float(np.dtype(dtype).itemsize * 8)
    if fmt is None:
        return width
    if isinstance(fmt, str):
        from lpfa.quant import parse_format

        fmt = parse_format(fmt)
    try:
        n_values, code_bits = fmt.n_values, fmt.code_bits
    except AttributeError:
        raise ValueError(f"fmt={fmt!r}: no notion of bits per value") from None
    if n_values is None:  # every value of the dtype (Identity)
        return width
    return math.log2(n_values) if levels else float(code_bits)


def eq14_weights(sizes) -> int:
    """W = Σ_{k=0}^{L−1} N_k N_{k+1} (Baldi et al. 2018, eq. 14)."""
    return sum(a * b for a, b in itertools.pairwise(sizes))


def eq15_weights(sizes) -> int:
    """W′ = N_L Σ_{k=1}^{L−1} N_k (Baldi et al. 2018, eq. 15)."""
    return sizes[-1] * sum(sizes[1:-1])


_BANK = "; conv k → k−1: C_out·C_in·k²·H′W′ (its kernel bank at every position)"


def connection_macs(model, channel=None) -> Connections:
    """Channel multiply-accumulates per example of each connection k → h of ``model``'s net.

    Parameters
    ----------
    model : lpfa.config.ModelConfig
    channel : lpfa.config.ChannelConfig, optional
        For low-rank feedback (:func:`lpfa.rules.edge_macs`).

    Returns
    -------
    macs : callable (k, h) -> int
        For conv layer k and h = k − 1 the transposed read of its kernel bank (C_out rows,
        C_in·k² columns) at each of its H′W′ window positions: C_out · C_in·k² · H′W′, from the
        config's shapes (:func:`lpfa.config.conv_shapes`), not from the traced arrays. Any other
        connection is dense, N_k · N_h of ``model.layer_sizes`` (a conv layer's N_h: its pooled
        maps, which is what a dense sender or the output delivers onto).
    """
    N = tuple(model.layer_sizes)
    banks: dict[int, int] = {}
    if model.conv:
        from lpfa.config import conv_shapes

        maps = conv_shapes(model.input_shape, model.conv)
        for k, (c, (shape, mapped, _)) in enumerate(zip(model.conv, maps, strict=True), 1):
            banks[k] = c.channels * shape[0] * c.kernel**2 * mapped[1] * mapped[2]

    def macs(k: int, h: int) -> int:
        if k in banks and h == k - 1:
            return banks[k]
        return edge_macs(N[k], N[h], channel)

    return macs


def channel_closed_form(channel, sizes, model=None) -> tuple[int | None, str]:
    """Channel multiply-accumulates per example, and the formula's name.

    The closed form is the rule's declaration (:attr:`lpfa.rules.RuleSpec.closed_form`), a
    comparison for the MACs counted in a traced step; with a ``model`` (ModelConfig) that has
    conv layers, its connections cost what :func:`connection_macs` says (``sizes`` must be its
    ``layer_sizes``). None where the rule has no closed form here (per-weight feedback).
    """
    if getattr(channel, "per_weight", False):
        return None, "per-weight feedback: elementwise, no closed form"
    rule = spec(str(getattr(channel.rule, "value", channel.rule)))
    if model is None or not getattr(model, "conv", ()):
        return rule.closed_form(list(sizes), channel), rule.formula
    if tuple(sizes) != tuple(model.layer_sizes):
        raise ValueError(f"sizes={tuple(sizes)}: need model.layer_sizes={model.layer_sizes}")
    closed = rule.closed_form(list(sizes), channel, connection_macs(model, channel))
    # the bank term is named where one of the rule's connections is a kernel bank
    banked = closed != rule.closed_form(list(sizes), channel)
    return closed, rule.formula + (_BANK if banked else "")


def bank_receivers(columns: np.ndarray, geometry) -> np.ndarray:
    """The units a kernel bank's transposed read reaches: bool (C_in·H·W,), channel first.

    Parameters
    ----------
    columns : bool array, shape (C_in·k²,)
        The bank's columns with a non-zero synapse (column c·k² + i·k + j: input channel c,
        tap (i, j)).
    geometry : lpfa.conv.Geometry
        The bank's window on its (C_in, H, W) input.

    Unit (c, y, x) receives when some window position reads it through a non-zero column
    (padding receives nothing): what the Toeplitz matrix of the convolution has a non-zero in.
    """
    from lpfa.conv import col2im

    cols = np.repeat(np.asarray(columns, dtype=np.float64)[:, None], geometry.positions, axis=1)
    return (col2im(cols, geometry, 1) > 0).reshape(-1)


def _received(trace: StepTrace, h: int, n: int) -> np.ndarray:
    """Examples of the step in which each of layer h's n receiving units got a non-zero error
    (its delivered signal, after routing, f′ and dropout, as its update saw it), (n,)."""
    post = trace.rec.posts.get(h)
    if post is None:
        return np.full(n, trace.batch_size)
    seen = post[0]  # (B, N_h), or (B, C, H, W) of a conv layer's units before its pool
    pools = getattr(trace.net, "pools", ())
    if seen.ndim == 4 and h <= len(pools) and pools[h - 1] is not None:
        seen = pools[h - 1].forward(seen.astype(np.float32))[0] > 0  # any in the window
    seen = seen.reshape(seen.shape[0], -1)
    return seen.sum(axis=0) if seen.shape[1] == n else np.full(n, trace.batch_size)


def _array(net, kind: str, k: int, h: int):
    """The array a channel read of edge (kind, k, h) read (None for kinds not one array)."""
    if kind == "W":
        return net.layers[k - 1]
    if kind == "C":
        return net.channel.feedback.get((k, h))
    return None


def pulse_counts(trace: StepTrace) -> dict[str, float]:
    """Update pulses sent to each physical array in the traced step (``model.device`` /
    ``channel.device`` with pulsed update; see :mod:`lpfa.devices`), by array name (``W1``,
    ``C2→1``, ``Ctop``); arrays without pulsed devices are left out. The count comes from the
    devices' own tally of the step that ran (Σ over synapses of the pulses each received)."""
    from hwmodels.trace import raw
    from lpfa.backend import to_numpy

    net = trace.net
    named = [(f"W{h}", layer) for h, layer in enumerate(net.layers, 1)]
    named += [(f"C{k}→{h}", fb) for (k, h), fb in sorted(net.channel.feedback.items())]
    if net.channel.top is not None:
        named.append(("Ctop", net.channel.top))
    out: dict[str, float] = {}
    for name, array in named:
        dev = getattr(array, "device", None)
        if dev is not None and dev.pulsed:
            out[name] = 0.0 if dev.pulses is None else float(to_numpy(raw(dev.pulses)))
    return out


def phase_ops(trace: StepTrace) -> dict[str, dict[str, int]]:
    """Counted operations of the step per phase (one network, whole minibatch)."""
    out: dict[str, dict[str, int]] = {p: {} for p in PHASES}
    for (phase, category), n in trace.rec.counts.items():
        out.setdefault(phase, {})[category] = out.get(phase, {}).get(category, 0) + n
    return out


@dataclass
class ChannelCost:
    """Feedback synapses, wires, messages and bits of one training step."""

    synapses: int
    synapses_by_edge: dict[str, int]
    wires: int
    wire_lengths_mm: np.ndarray
    wires_by_edge: dict[str, int]
    messages: int
    message_bits: float
    bits: float
    bit_mm: float
    adapt_messages: int = 0
    adapt_bits: float = 0.0
    adapt_bit_mm: float = 0.0
    read_bits: float = 0.0
    channel_macs: int = 0
    dead_macs: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _edge_name(edge: tuple[str, int, int]) -> str:
    kind, k, h = edge
    return {
        "C": f"C{k}→{h}",
        "W": f"W{k}ᵀ→{h}",
        "P": f"C{k}→W{h} (per synapse)",
        "B": f"broadcast {k}→{h}",
        "A": f"O{k}→C-array at {h}",
        "Q": f"C{k}→{h} to its relays",
    }[kind]


def channel_cost(trace: StepTrace, floorplan: Floorplan | None = None) -> ChannelCost:
    """Synapses, wires and bits of the learning channel in the traced step (member 0)."""
    fp = floorplan or Floorplan()
    cfg, rec, sizes = trace.cfg, trace.rec, trace.sizes
    L, B = len(sizes) - 1, trace.batch_size
    dtype = cfg.model.dtype
    width = format_bits(None, dtype)
    wbits = format_bits(getattr(cfg.model, "weight_format", None), dtype)
    spec = getattr(cfg.channel, "error_format", None)
    notes: list[str] = []
    quantized = rec.counts.get(("channel", "quant"), 0) > 0
    if spec is not None and not quantized:
        notes.append(f"channel.error_format={spec!r} is set but no quantizer ran in the channel")
    mbits = format_bits(spec, dtype) if (spec is not None and quantized) else width

    # a read is live when what it delivered reached some update (sink)
    delivered = {
        t.source for tags in rec.sinks.values() for t in tags if t.route in ("channel", "transport")
    }
    groups: dict[tuple, list] = {}
    dead: dict[str, int] = {}
    dead_edges: set[str] = set()
    for r in rec.reads:
        if r.source not in delivered:
            dead_edges.add(_edge_name(r.edge))
            for key, n in r.macs.items():
                dead[key] = dead.get(key, 0) + n
            continue
        groups.setdefault((r.edge, r.columns.shape), []).append(r)
    if dead_edges:
        unused = ", ".join(sorted(dead_edges))
        notes.append(f"computed but unused by any update (not counted as channel): {unused}")
    synapses: dict[str, int] = {}
    wires_by: dict[str, int] = {}
    lengths: list[np.ndarray] = []
    messages = 0
    bit_mm = 0.0
    read_bits = 0.0
    macs = 0
    # low-rank feedback C = QP: Q sits with the sender, its r relay units with the receiving
    # layer, so r wires span the layers and P reaches the units locally
    factored = {(k, h) for (kind, k, h), _shape in groups if kind == "Q"}
    for k, h in sorted(factored):
        notes.append(
            f"C{k}→{h} is low-rank: r relay units at layer {h}; the relay wires carry the "
            "dtype's width (the error format applies to what the units receive)"
        )
    if str(getattr(getattr(cfg.channel, "error_signal", None), "value", "full")) == "sign":
        notes.append(
            f"error_signal=sign: the output sends 1 bit per unit and example ({sizes[-1]} per "
            "example); what each hidden unit receives, C·sign(e), is counted at its own width"
        )
    for (edge, _shape), reads in groups.items():
        kind, k, h = edge
        name = _edge_name(edge)
        cols = np.logical_or.reduce([r.columns for r in reads])[0]
        macs += sum(r.macs.get("macs", 0) for r in reads)
        if kind == "P":
            nz = sum(r.synapses for r in reads)
            base = fp.wires(k, sizes[k], h, sizes[h])
            wire_len = np.repeat(base, cols.size // sizes[h])
            per_wire = np.full(cols.size, B)  # each synapse receives one value per example
            bits_here = width
        elif kind == "Q":
            nz = max(r.synapses for r in reads)
            gap = float(np.abs(fp.centroid(h, sizes[h]) - fp.centroid(k, sizes[k])).sum())
            wire_len = np.full(cols.size, gap)
            per_wire = np.full(cols.size, B)  # every relay sends one value per example
            bits_here = width
        else:
            nz = max(r.synapses for r in reads)
            geom = getattr(_array(trace.net, kind, k, h), "geometry", None)
            if geom is not None and cols.size == geom.taps:  # a kernel bank's columns
                cols = bank_receivers(cols, geom)
            if (k, h) in factored:  # from the relays, at layer h, to its units
                wire_len = np.abs(fp.place(h, sizes[h]) - fp.centroid(h, sizes[h])).sum(axis=1)
            else:
                wire_len = fp.wires(k, sizes[k], h, sizes[h])
            per_wire = _received(trace, h, cols.size)
            bits_here = mbits
        if wire_len.size != cols.size:  # a read of an unexpected shape: counted, not placed
            notes.append(f"{name}: read of {cols.size} receivers, not placed on the floorplan")
            wire_len = np.zeros(cols.size)
        synapses[name] = synapses.get(name, 0) + int(nz)
        read_bits += nz * (wbits if kind == "W" else width)
        wires_by[name] = wires_by.get(name, 0) + int(cols.sum())
        lengths.append(wire_len[cols])
        m = per_wire * cols
        messages += int(m.sum())
        bit_mm += float(bits_here * (m * wire_len).sum())
    # a per-example scalar broadcast to the hidden units (node perturbation)
    fed = {r.dest for rs in groups.values() for r in rs}
    for h in range(1, L):
        tags = rec.sinks.get(Source("weight", h), set())
        if h in fed or not any(t.route == "broadcast" for t in tags):
            continue
        per_wire = _received(trace, h, sizes[h])
        wire_len = fp.wires(L, sizes[L], h, sizes[h])
        name = _edge_name(("B", L, h))
        wires_by[name] = sizes[h]
        lengths.append(wire_len)
        messages += int(per_wire.sum())
        bit_mm += float(width * (per_wire * wire_len).sum())
    # adaptive skipped feedback: C^{k→h} learns from O^h, which reaches layer k only if k = h + 1
    adapt_messages, adapt_bit_mm = 0, 0.0
    for p in rec.sinks:
        if p.kind != "feedback" or p.sender == p.layer + 1:
            continue
        k, h = p.sender, p.layer
        wire_len = fp.wires(k, sizes[k], h, sizes[h])
        name = _edge_name(("A", h, k))
        wires_by[name] = sizes[h]
        lengths.append(wire_len)
        adapt_messages += B * sizes[h]
        adapt_bit_mm += float(width * B * wire_len.sum())
    all_len = np.concatenate(lengths) if lengths else np.zeros(0)
    return ChannelCost(
        synapses=int(sum(synapses.values())),
        synapses_by_edge=synapses,
        wires=int(sum(wires_by.values())),
        wire_lengths_mm=all_len,
        wires_by_edge=wires_by,
        messages=messages,
        message_bits=mbits,
        bits=messages * mbits,
        bit_mm=bit_mm,
        adapt_messages=adapt_messages,
        adapt_bits=adapt_messages * width,
        adapt_bit_mm=adapt_bit_mm,
        read_bits=read_bits,
        channel_macs=macs,
        dead_macs=dead,
        notes=notes,
    )
