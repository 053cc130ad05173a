"""Deprecated: the results store is now :mod:`lpfa.sweep.store` (the SQLite file) and
:mod:`lpfa.sweep.report` (grouped results, the text table, the figure).

Importing this module warns once and gives the same objects under their old names.
"""

import warnings

from lpfa.sweep.report import METRIC_ALIASES, format_table, plot, results
from lpfa.sweep.store import Store, pick_sweep, runs

__all__ = ["METRIC_ALIASES", "Store", "format_table", "pick_sweep", "plot", "results", "runs"]

warnings.warn(
    "lpfa.store has moved: import Store, runs and pick_sweep from lpfa.sweep.store, and "
    "results, format_table, plot and METRIC_ALIASES from lpfa.sweep.report",
    DeprecationWarning,
    stacklevel=2,
)
