"""Quantizer test kit: hypothesis strategies and contracts that any quantizer callable must keep.

:func:`check_quantizer` runs each contract as a hypothesis search for a counterexample (seeded, so
a run is reproducible) and reports, per contract, whether it held and the minimal (shrunk) failing
input if it did not. :func:`check_quantizer_main` is the command-line front end
(``lpfa check-quantizer module:callable``). Needs hypothesis (the ``dev`` extra); ``import lpfa``
does not import this module. The kit checks numpy callables on the host.

The kit, in the manner of ``cupy.testing``: :mod:`~lpfa.testing.strategies` (hypothesis
strategies), :mod:`~lpfa.testing.contracts` (what a quantizer must keep, and
:func:`check_quantizer`), :mod:`~lpfa.testing.oracles` (exact references, such as eq. 19 written
out) and :mod:`~lpfa.testing.cli` (the command).
"""

from lpfa.quant import parse_format
from lpfa.testing.cli import check_quantizer_main
from lpfa.testing.contracts import CONTRACTS, ContractResult, Outcome, Report, check_quantizer
from lpfa.testing.oracles import log_reference
from lpfa.testing.strategies import float_arrays, format_values, formats

__all__ = [
    "CONTRACTS",
    "ContractResult",
    "Outcome",
    "Report",
    "check_quantizer",
    "check_quantizer_main",
    "float_arrays",
    "format_values",
    "formats",
    "log_reference",
    "parse_format",
]
