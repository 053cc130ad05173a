"""The audit of a learning rule: locality, operations, synapses, wires, bits and energy, from one
observed training step; tables, JSON and figures for several rules side by side.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwmodels.cost import (
    PHASES,
    ChannelCost,
    channel_closed_form,
    channel_cost,
    eq14_weights,
    eq15_weights,
    format_bits,
    phase_ops,
    pulse_counts,
)
from hwmodels.energy import TechTable, arith_format, energy_terms, joules
from hwmodels.layout import Floorplan
from hwmodels.locality import UpdateAudit, classify, information, trace_step
from lpfa.plots import pyplot, save
from lpfa.rules import Delivery, spec
from lpfa.runfiles import atomic_write_text, dump_json

__all__ = [
    "MACS",
    "Audit",
    "audit",
    "audit_variants",
    "describe_network",
    "format_table",
    "plot_accuracy",
    "plot_audits",
    "read_accuracy",
    "variant",
    "write_json",
]

MACS = {"executed": "macs", "synapses": "macs_syn", "events": "macs_nz"}


@dataclass
class Audit:
    """Everything the audit found for one configuration (one network, one training step).

    Counts are for one network (the first seed) and the whole minibatch of the step unless the
    name says ``per_example``; energies are in joules.
    """

    label: str
    rule: str
    sizes: tuple[int, ...]
    batch_size: int
    steps_per_epoch: int
    verdict: str
    """``local``, ``non-local`` (some update read a non-local source), or ``unverified`` (values
    left the traced arrays — ``np.asarray``, ``float()`` — so provenance may have been lost)."""
    updates: list[UpdateAudit]
    offenses: list[str]
    information: str
    upper_derivatives: bool
    ops: dict[str, dict[str, int]]
    channel_macs_per_example: float
    closed_form: int | None
    closed_form_formula: str
    channel: ChannelCost
    energy_per_step: dict[str, float]
    energy_per_epoch: dict[str, float]
    energy_terms: dict[str, dict[str, float]]
    macs_priced: str
    arith: str
    tech: str
    floorplan: dict[str, Any]
    leaks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pulses_per_step: dict[str, float] = field(default_factory=dict)
    """Update pulses sent to each physical array (pulsed devices of lpfa.devices only)."""
    network: str = ""
    """The network in words (:func:`describe_network`); ``sizes`` joined by ``-`` when empty."""

    @property
    def network_name(self) -> str:
        """:attr:`network`, or the layer sizes as ``784-100-10``."""
        return self.network or "-".join(map(str, self.sizes))

    @property
    def local(self) -> bool:
        return self.verdict == "local"

    @property
    def closed_form_ok(self) -> bool | None:
        """True when the counted channel MACs equal the closed form (None without one)."""
        if self.closed_form is None:
            return None
        return self.channel_macs_per_example == self.closed_form

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (wire lengths as a list, rounded to 1 µm)."""
        cc = self.channel
        return {
            "label": self.label,
            "rule": self.rule,
            "sizes": list(self.sizes),
            "network": self.network_name,
            "batch_size": self.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            "locality": {
                "verdict": self.verdict,
                "offenses": self.offenses,
                "information": self.information,
                "upper_derivatives": self.upper_derivatives,
                "updates": [u.to_dict() for u in self.updates],
                "leaks": self.leaks,
            },
            "ops_per_step": self.ops,
            "channel_macs_per_example": self.channel_macs_per_example,
            "closed_form": self.closed_form,
            "closed_form_formula": self.closed_form_formula,
            "closed_form_ok": self.closed_form_ok,
            "eq14_W": eq14_weights(self.sizes),
            "eq15_W_prime": eq15_weights(self.sizes),
            "channel": {
                "synapses": cc.synapses,
                "synapses_by_edge": cc.synapses_by_edge,
                "wires": cc.wires,
                "wires_by_edge": cc.wires_by_edge,
                "wire_mm_total": float(cc.wire_lengths_mm.sum()),
                "wire_mm_max": float(cc.wire_lengths_mm.max()) if cc.wires else 0.0,
                "wire_lengths_mm": np.round(cc.wire_lengths_mm, 3).tolist(),
                "messages_per_step": cc.messages,
                "bits_per_message": cc.message_bits,
                "bits_per_step": cc.bits,
                "bit_mm_per_step": cc.bit_mm,
                "adapt_messages_per_step": cc.adapt_messages,
                "adapt_bits_per_step": cc.adapt_bits,
                "notes": cc.notes,
            },
            "energy": {
                "per_step_J": self.energy_per_step,
                "per_epoch_J": self.energy_per_epoch,
                "terms": self.energy_terms,
                "macs_priced": self.macs_priced,
                "arith": self.arith,
                "tech": self.tech,
            },
            "floorplan": self.floorplan,
            "pulses_per_step": self.pulses_per_step,
            "notes": self.notes,
        }


def _padding(padding: str | int, default: str) -> str:
    if padding == default:
        return ""
    return f"({padding})" if isinstance(padding, str) else f"(p{padding})"


def describe_network(model) -> str:
    """A network in words: ``784-100-10`` (dense), or for a conv net its input, every conv layer
    and pool, then the dense layers, e.g. ``1×28×28 → conv5·16 → pool2 → conv5·32 → pool2 → 100 →
    10``.

    ``conv{k}·{C}``: C kernels of k × k, ``conv{k}/{s}·{C}`` at stride s ≠ 1; ``pool{k}`` a k × k
    max-pool at stride k, ``pool{k}/{s}`` at stride s. A padding other than the default
    (``"same"`` for a conv, ``"valid"`` for a pool) follows in brackets: ``(valid)``, ``(same)``,
    ``(p1)`` for 1 on every side.
    """
    if not model.conv:
        return "-".join(map(str, model.layer_sizes))
    parts = ["×".join(map(str, model.input_shape))]
    for c in model.conv:
        stride = "" if c.stride == 1 else f"/{c.stride}"
        parts.append(f"conv{c.kernel}{stride}·{c.channels}{_padding(c.padding, 'same')}")
        if c.pool_kernel is not None:
            s = c.pool_kernel if c.pool_stride is None else c.pool_stride
            stride = "" if s == c.pool_kernel else f"/{s}"
            parts.append(f"pool{c.pool_kernel}{stride}{_padding(c.pool_padding, 'valid')}")
    parts += [str(n) for n in model.sizes[1:]]
    return " → ".join(parts)


def _rule_name(ch) -> str:
    rule = str(getattr(ch.rule, "value", ch.rule))
    extra = []
    if getattr(ch, "adapt_lr", None) is not None:
        extra.append("adaptive")
    if getattr(ch, "feedback_nonzeros", None) is not None:
        extra.append(f"sparse n={ch.feedback_nonzeros:g}")
    if getattr(ch, "error_format", None):
        extra.append(f"error {ch.error_format}")
    if getattr(ch, "dropout", 0.0):
        extra.append(f"dropout {ch.dropout:g}")
    if getattr(ch, "per_weight", False):
        extra.append("per-weight")
    if not getattr(ch, "fprime", True):
        extra.append("no f′")
    return rule + (f" ({', '.join(extra)})" if extra else "")


def audit(
    cfg,
    label: str | None = None,
    *,
    batch: tuple | None = None,
    source: str = "data",
    floorplan: Floorplan | None = None,
    tech: TechTable | str | Path | None = None,
    arith: str | None = None,
    macs: str = "synapses",
) -> Audit:
    """Audit one configuration by observing one training step of its network.

    Parameters
    ----------
    cfg : lpfa.config.RunConfig
    label : str, optional
        Name in tables (default: the rule and its channel options).
    batch : (x, t) or (x, t, n_train), optional
        The minibatch to step on (default: the first minibatch of the run's data, or random
        data with ``source="random"``).
    floorplan : Floorplan, optional
        Placement of the layers (default: on a line, 1 mm apart, units 10 µm apart).
    tech : TechTable or path, optional
        Energy table (default: Horowitz, ISSCC 2014, 45 nm).
    arith : str, optional
        Arithmetic entry of the table to price operations with (default: the model's dtype).
    macs : {"synapses", "executed", "events"}
        Which multiply-accumulates are priced: those whose synapse is non-zero (default; a sparse
        array skips absent synapses), all executed by the emulator's dense GEMMs, or only those
        with both factors non-zero (an event-driven machine).
    """
    if macs not in MACS:
        raise ValueError(f"macs={macs!r}: must be one of {', '.join(MACS)}")
    table = tech if isinstance(tech, TechTable) else TechTable.load(tech)
    fp = floorplan or Floorplan()
    trace = trace_step(cfg, batch, source=source)
    rec, sizes = trace.rec, trace.sizes
    L, B = len(sizes) - 1, trace.batch_size
    updates = [classify(p, tags, L) for p, tags in sorted(rec.sinks.items())]
    offenses = sorted({o for u in updates for o in u.offenses})
    _, formula, upper = information(rec.sinks, L)
    ops = phase_ops(trace)
    cc = channel_cost(trace, fp)
    for k, n in cc.dead_macs.items():  # reads whose result no update used
        ops["channel"][k] = ops["channel"].get(k, 0) - n
        ops["channel"]["unused_" + k] = n
    closed, formula_cf = channel_closed_form(trace.cfg.channel, sizes, trace.cfg.model)
    dtype = trace.cfg.model.dtype
    wbits = format_bits(getattr(trace.cfg.model, "weight_format", None), dtype)
    width = format_bits(None, dtype)
    writes_w = sum(n for p, n in rec.writes.items() if p.kind in ("weight", "bias"))
    writes_c = sum(n for p, n in rec.writes.items() if p.kind == "feedback")
    key = MACS[macs]
    activity = {}
    for phase in PHASES:
        o = ops.get(phase, {})
        activity[phase] = {
            "macs": o.get(key, 0),
            "mults": o.get("mults", 0),
            "adds": o.get("adds", 0),
            "other": o.get("other", 0) + o.get("quant", 0),
            "read_bits": 0.0,
            "write_bits": 0.0,
            "bit_mm": 0.0,
        }
    activity["forward"]["read_bits"] = ops.get("forward", {}).get("reads", 0) * wbits
    activity["channel"]["read_bits"] = cc.read_bits
    activity["channel"]["bit_mm"] = cc.bit_mm
    # feedback that learns (adaptive, Kolen-Pollack, weight mirror) is the channel's own work
    activity["update"]["write_bits"] = writes_w * wbits
    activity["channel"]["write_bits"] = writes_c * width
    activity["channel"]["bit_mm"] += cc.adapt_bit_mm
    # update pulses of physical devices (lpfa.devices), priced per pulse: W's are the update's,
    # learning feedback arrays' the channel's
    pulses = pulse_counts(trace)
    activity["update"]["pulses"] = sum(n for a, n in pulses.items() if a.startswith("W"))
    activity["channel"]["pulses"] = sum(n for a, n in pulses.items() if not a.startswith("W"))
    fmt = arith or arith_format(dtype)
    terms = energy_terms(activity, fmt, table)
    per_step = joules(terms, table)
    per_step["total"] = sum(per_step[p] for p in PHASES)
    steps = max(trace.n_train // B, 1)
    notes = list(cc.notes)
    if spec(trace.cfg.channel.rule).delivery is Delivery.PSEUDO_INVERSE:
        notes.append("the pseudo-inverse (an SVD per step) is not counted in the channel's MACs")
    return Audit(
        label=label or _rule_name(trace.cfg.channel),
        rule=_rule_name(trace.cfg.channel),
        sizes=sizes,
        batch_size=B,
        steps_per_epoch=steps,
        verdict="non-local" if offenses else "unverified" if rec.leaks else "local",
        updates=updates,
        offenses=offenses,
        information=formula,
        upper_derivatives=upper,
        ops=ops,
        channel_macs_per_example=cc.channel_macs / B,
        closed_form=closed,
        closed_form_formula=formula_cf,
        channel=cc,
        energy_per_step=per_step,
        energy_per_epoch={k: v * steps for k, v in per_step.items()},
        energy_terms=terms,
        pulses_per_step=pulses,
        macs_priced=macs,
        arith=fmt,
        tech=table.name,
        floorplan=fp.to_dict(),
        leaks=list(rec.leaks),
        notes=notes,
        network=describe_network(trace.cfg.model),
    )


# --- several configurations -------------------------------------------------------------------


def variant(base, overrides: Sequence[str], name: str | None = None):
    """``base`` with ``section.field=value`` overrides applied (validated as a new config)."""
    from lpfa import config as C

    data = C.apply_overrides(C.to_dict(base), list(overrides))
    if name:
        data["name"] = name
    return C.from_dict(C.RunConfig, data)


def audit_variants(base, variants: Mapping[str, Sequence[str]], **kw) -> list[Audit]:
    """Audit ``base`` under each labelled list of overrides.

    ``variants`` maps labels to ``section.field=value`` lists, e.g.
    ``{"srbp": ["channel.rule=srbp"]}``; keyword arguments go to :func:`audit`.
    """
    return [audit(variant(base, ov, label), label, **kw) for label, ov in variants.items()]


# --- reports ----------------------------------------------------------------------------------


def _si(x: float, unit: str) -> str:
    for scale, prefix in ((1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")):
        if abs(x) >= scale or scale == 1e-12:
            if abs(x) >= 1:
                return f"{x:.3g} {unit}"
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _row(a: Audit) -> dict[str, str]:
    cc = a.channel
    cf = "—" if a.closed_form is None else ("=" if a.closed_form_ok else f"≠{a.closed_form}")
    return {
        "label": a.label,
        "verdict": a.verdict,
        "upper f′": "yes" if a.upper_derivatives else "no",
        "ch MACs/ex": f"{a.channel_macs_per_example:g}",
        "closed": cf,
        "fb synapses": f"{cc.synapses}",
        "wires": f"{cc.wires}",
        "wire mm": f"{cc.wire_lengths_mm.sum():.4g}",
        "max mm": f"{cc.wire_lengths_mm.max():.3g}" if cc.wires else "0",
        "msgs/step": f"{cc.messages}",
        "bits/msg": f"{cc.message_bits:g}",
        "kbit/step": f"{(cc.bits + cc.adapt_bits) / 1e3:.4g}",
        "E fwd": _si(a.energy_per_step["forward"], "J"),
        "E chan": _si(a.energy_per_step["channel"], "J"),
        "E upd": _si(a.energy_per_step["update"], "J"),
        "E step": _si(a.energy_per_step["total"], "J"),
        "E epoch": _si(a.energy_per_epoch["total"], "J"),
    }


def format_table(audits: Sequence[Audit]) -> str:
    """A plain-text table, one row per configuration, then each one's verdict in words."""
    from lpfa.report import text_table

    rows = [_row(a) for a in audits]
    head = list(rows[0])
    out = text_table(head, [[r[h] for h in head] for r in rows]).splitlines()
    a0 = audits[0]
    out.append("")
    out.append(
        f"network {a0.network_name}, batch {a0.batch_size}, "
        f"{a0.steps_per_epoch} steps/epoch; energy: {a0.tech}, {a0.arith} arithmetic, "
        f"MACs priced: {a0.macs_priced}; floorplan: layers {a0.floorplan['layer_pitch_mm']} mm "
        f"apart, units {a0.floorplan['unit_pitch_mm']} mm apart"
    )
    out.append("")
    for a in audits:
        why = a.offenses[0] if a.offenses else "every update reads only local signals"
        more = f" (+{len(a.offenses) - 1} more)" if len(a.offenses) > 1 else ""
        out.append(f"{a.label}: {a.verdict} — {why}{more}")
        out.append(f"    {a.information}")
        for note in a.notes:
            out.append(f"    note: {note}")
        if a.leaks:
            out.append(f"    WARNING: {len(a.leaks)} untraced conversions: {a.leaks[0]}")
    return "\n".join(out)


def write_json(audits: Sequence[Audit], path: str | Path) -> Path:
    """All audits as JSON (a list of :meth:`Audit.to_dict`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = dump_json([a.to_dict() for a in audits], indent=1, ensure_ascii=False)
    atomic_write_text(path, text)
    return path


def plot_audits(audits: Sequence[Audit], out: str | Path) -> list[Path]:
    """Bars per configuration (channel MACs, synapses, bits, energy by phase) and the histogram
    of feedback-wire lengths. Returns the files written."""
    plt = pyplot()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = [a.label for a in audits]
    x = np.arange(len(audits))
    fig, axes = plt.subplots(2, 2, figsize=(max(8, 0.7 * len(audits) + 4), 7), sharex=True)
    panels = [
        ("channel MACs per example", [a.channel_macs_per_example for a in audits]),
        ("feedback synapses", [a.channel.synapses for a in audits]),
        ("channel bits per step", [a.channel.bits + a.channel.adapt_bits for a in audits]),
    ]
    for ax, (title, values) in zip(axes.flat[:3], panels, strict=True):
        colors = ["tab:red" if not a.local else "tab:blue" for a in audits]
        ax.bar(x, values, color=colors)
        ax.set_title(title)
        nonzero = [v for v in values if v]  # all zero for rules without a channel (top, NP)
        ax.set_yscale("log" if nonzero and min(nonzero) * 100 < max(nonzero) else "linear")
    ax = axes.flat[3]
    bottom = np.zeros(len(audits))
    for phase, color in zip(PHASES, ("tab:gray", "tab:orange", "tab:green"), strict=True):
        vals = np.array([a.energy_per_step[phase] * 1e6 for a in audits])
        ax.bar(x, vals, bottom=bottom, label=phase, color=color)
        bottom += vals
    ax.set_title("energy per step (µJ)")
    ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    fig.suptitle(f"audit of {audits[0].network_name} (red: non-local)")
    bars = save(fig, out / "audit_bars.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    lengths = [a.channel.wire_lengths_mm for a in audits if a.channel.wires]
    top = max((float(v.max()) for v in lengths), default=1.0)
    bins = np.linspace(0, top * 1.02 + 1e-9, 41)
    groups: dict[tuple, list[Audit]] = {}
    for a in audits:  # same wiring (e.g. quantized variants of one rule): one line
        if a.channel.wires:
            key = (a.channel.wires, round(float(a.channel.wire_lengths_mm.sum()), 6))
            groups.setdefault(key, []).append(a)
    for same in groups.values():
        label = same[0].label + (f" (+{len(same) - 1} same)" if len(same) > 1 else "")
        ax.hist(same[0].channel.wire_lengths_mm, bins=bins, histtype="step", label=label, lw=1.5)
    ax.set_xlabel("feedback wire length (mm)")
    ax.set_ylabel("wires")
    ax.set_yscale("log")
    if groups:  # rules without a channel (top, node perturbation) have no wires to draw
        ax.legend(fontsize=8)
    ax.set_title("learning-channel wire lengths")
    hist = save(fig, out / "wire_lengths.png")
    return [bars, hist]


def read_accuracy(path: str | Path) -> dict[str, float]:
    """Final test accuracy per label from a results CSV (columns ``label``, ``test_acc``; rows of
    the last ``epoch`` when there is one, averaged over members), in percent."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "label" not in rows[0] or "test_acc" not in rows[0]:
        raise ValueError(f"{path}: needs columns label and test_acc")
    out: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    for r in rows:
        if r.get("epoch") not in (None, ""):
            last[r["label"]] = max(last.get(r["label"], -1), float(r["epoch"]))
    for r in rows:
        if r["test_acc"] in ("", None):
            continue
        if r.get("epoch") not in (None, "") and float(r["epoch"]) != last[r["label"]]:
            continue
        v = float(r["test_acc"])
        out.setdefault(r["label"], []).append(100 * v if v <= 1 else v)
    return {k: float(np.mean(v)) for k, v in out.items()}


def plot_accuracy(audits: Sequence[Audit], accuracy: Mapping[str, float], path: str | Path) -> Path:
    """Test accuracy against channel bits, channel energy and total energy per step, one point
    per label (o: local rule, x: non-local)."""
    plt = pyplot()
    pts = [(a, accuracy[a.label]) for a in audits if a.label in accuracy]
    if not pts:
        raise ValueError(
            f"no audited label has an accuracy: audited {[a.label for a in audits]}, "
            f"results have {sorted(accuracy)}"
        )
    panels = (
        ("learning-channel bits per step", lambda a: a.channel.bits + a.channel.adapt_bits, "log"),
        ("channel energy per step (µJ)", lambda a: a.energy_per_step["channel"] * 1e6, "log"),
        ("total energy per step (µJ)", lambda a: a.energy_per_step["total"] * 1e6, "linear"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), sharey=True)
    for ax, (name, get, scale) in zip(axes, panels, strict=True):
        for a, acc in pts:
            ax.scatter(get(a), acc, marker="o" if a.local else "x", s=40)
            ax.annotate(
                a.label, (get(a), acc), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax.set_xlabel(name)
        ax.set_xscale(scale)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle(f"accuracy vs cost, {audits[0].network_name} (o: local rule, x: non-local)")
    return save(fig, path)
