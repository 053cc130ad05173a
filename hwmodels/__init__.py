"""hwmodels: what learning costs in hardware (locality, operations, wires, bits, energy).

Reads an lpfa network and its channel; lpfa never imports hwmodels. Everything is observed
from one real training step run with traced arrays (:mod:`hwmodels.trace`):

    from lpfa import config
    from hwmodels import audit

    a = audit(config.load("configs/baldi2018_mnist.toml", ["channel.rule=srbp"]))
    a.verdict, a.channel_macs_per_example, a.channel.bits, a.energy_per_step["total"]
    # ('local', 4000.0, 1280000.0, 0.000104...)

Modules: :mod:`~hwmodels.locality` (which signals every update read), :mod:`~hwmodels.cost`
(operations, feedback synapses, wires, bits), :mod:`~hwmodels.layout` (floorplan, wire
lengths), :mod:`~hwmodels.energy` (technology tables), :mod:`~hwmodels.audit` (the whole audit,
tables, JSON, figures), :mod:`~hwmodels.cli` (``lpfa audit``).
"""

from hwmodels.audit import (
    Audit,
    audit,
    audit_variants,
    describe_network,
    format_table,
    variant,
    write_json,
)
from hwmodels.cost import (
    channel_closed_form,
    connection_macs,
    eq14_weights,
    eq15_weights,
    format_bits,
)
from hwmodels.energy import TechTable
from hwmodels.layout import Floorplan
from hwmodels.locality import classify, trace_step

__all__ = [
    "Audit",
    "Floorplan",
    "TechTable",
    "audit",
    "audit_variants",
    "channel_closed_form",
    "classify",
    "connection_macs",
    "describe_network",
    "eq14_weights",
    "eq15_weights",
    "format_bits",
    "format_table",
    "trace_step",
    "variant",
    "write_json",
]
