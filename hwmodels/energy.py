"""Technology tables (pJ per operation, per bit read or written, per bit per mm of wire) and the
energy of a training step as a linear function of their entries.

A table is a TOML file of ``{pj = value, source = "..."}`` entries (see ``tech/horowitz45.toml``,
the default, from Horowitz, ISSCC 2014). :func:`energy_terms` turns counted activity into one
coefficient per entry and phase; the energy is Σ coefficient × entry, so it is linear in every
entry by construction and each entry's share can be read off.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["TechTable", "arith_format", "energy_terms", "joules"]

PJ = 1e-12


@dataclass(frozen=True)
class TechTable:
    """Flat entries ``"ops.float32.mult"`` → pJ, each with the source it came from.

    Keys: ``ops.<fmt>.add|mult|other`` (per operation, fmt in float32, float16, float64, int32,
    int8, ...), ``array.read_pj_per_bit``, ``array.write_pj_per_bit``, ``wire.pj_per_bit_mm``,
    and optionally ``device.pj_per_pulse`` (one update pulse of a physical device).
    """

    name: str
    entries: dict[str, float]
    sources: dict[str, str]
    description: str = ""

    @classmethod
    def load(cls, path: str | Path | None = None) -> TechTable:
        """Read a table; None (or ``"horowitz45"``) is the bundled default."""
        if path is None or str(path) == "horowitz45":
            text = resources.files("hwmodels").joinpath("tech/horowitz45.toml").read_text()
        else:
            text = Path(path).read_text()
        data = tomllib.loads(text)
        entries: dict[str, float] = {}
        sources: dict[str, str] = {}

        def walk(node: dict[str, Any], prefix: str) -> None:
            for key, value in node.items():
                if not isinstance(value, dict):
                    continue
                name = f"{prefix}{key}"
                if "pj" in value:
                    pj = value["pj"]
                    if not isinstance(pj, int | float) or pj < 0:
                        raise ValueError(f"{name}.pj={pj!r}: must be a number >= 0 (pJ)")
                    if not str(value.get("source", "")).strip():
                        raise ValueError(f"{name}.source: every entry must cite its source")
                    entries[name] = float(pj)
                    sources[name] = str(value["source"])
                else:
                    walk(value, name + ".")

        walk(data, "")
        for need in ("array.read_pj_per_bit", "array.write_pj_per_bit", "wire.pj_per_bit_mm"):
            if need not in entries:
                raise ValueError(f"{need}: missing from the technology table {path}")
        return cls(
            data.get("name", Path(str(path)).stem), entries, sources, data.get("description", "")
        )

    def replace(self, **changes: float) -> TechTable:
        """A copy with some entries changed; keys use ``__`` for dots (``ops__float32__add``)."""
        entries = dict(self.entries)
        for key, value in changes.items():
            name = key.replace("__", ".")
            if name not in entries:
                raise KeyError(f"{name}: not an entry of {self.name}")
            entries[name] = float(value)
        return dataclasses.replace(self, entries=entries)

    def op(self, fmt: str, kind: str) -> str:
        """The key of an operation, checking the table has it."""
        key = f"ops.{fmt}.{kind}"
        if key not in self.entries:
            have = sorted({k.split(".")[1] for k in self.entries if k.startswith("ops.")})
            raise KeyError(f"{key}: the table {self.name} has arithmetic for {', '.join(have)}")
        return key


def arith_format(dtype: str) -> str:
    """The arithmetic entry used for a dtype (``float32`` → ``float32``)."""
    return str(dtype)


def energy_terms(activity: dict[str, dict[str, float]], fmt: str, table: TechTable):
    """Coefficients per phase and table entry: ``{phase: {entry: count}}``.

    Parameters
    ----------
    activity : {phase: {"macs", "mults", "adds", "other", "read_bits", "write_bits",
        "bit_mm", "pulses"}}
        Counted activity of one training step (see :mod:`hwmodels.cost`); ``macs`` is the
        number priced (as executed, synapses present, or both factors non-zero).
    fmt : str
        Arithmetic entry, e.g. ``float32``.
    """
    out: dict[str, dict[str, float]] = {}
    for phase, a in activity.items():
        terms = {
            table.op(fmt, "mult"): a.get("macs", 0) + a.get("mults", 0),
            table.op(fmt, "add"): a.get("macs", 0) + a.get("adds", 0),
            table.op(fmt, "other"): a.get("other", 0),
            "array.read_pj_per_bit": a.get("read_bits", 0),
            "array.write_pj_per_bit": a.get("write_bits", 0),
            "wire.pj_per_bit_mm": a.get("bit_mm", 0.0),
        }
        if a.get("pulses"):  # device update pulses (lpfa.devices): priced only when sent
            if "device.pj_per_pulse" not in table.entries:
                raise KeyError(f"device.pj_per_pulse: the table {table.name} prices no pulses")
            terms["device.pj_per_pulse"] = a["pulses"]
        out[phase] = {k: float(v) for k, v in terms.items()}
    return out


def joules(terms: dict[str, dict[str, float]], table: TechTable) -> dict[str, float]:
    """Energy per phase (J): Σ coefficient × entry (pJ) × 1e−12."""
    return {
        phase: sum(c * table.entries[k] for k, c in coeffs.items()) * PJ
        for phase, coeffs in terms.items()
    }
