"""Sweeps: a grid of runs from a TOML spec, packed by seed, run by an executor into the store.

The rooms, in the order data flows through them (see ``docs/sweeps.md``):

- :mod:`lpfa.sweep.spec`: the spec (TOML) expanded into validated runs; :class:`Sweep`,
  :class:`Run`, :class:`Pack` (the seeds of one configuration, trained as one ensemble).
- :mod:`lpfa.sweep.execute`: :func:`run_sweep` trains the packs and records each member;
  resume, failures, Ctrl-C. :mod:`lpfa.sweep.executors`: in-process, process pool, Dask.
- :mod:`lpfa.sweep.store`: the SQLite results file (:class:`~lpfa.sweep.store.Store`).
- :mod:`lpfa.sweep.report`: grouped results, text tables, the paper comparison, the figure.
- :mod:`lpfa.sweep.cli`: the ``lpfa sweep``, ``lpfa results`` and ``lpfa plot`` commands.

The names below are re-exported here, where they were before the package had rooms.
"""

from lpfa.sweep.execute import SweepInterrupted, SweepOutcome, execute_pack, run_sweep
from lpfa.sweep.executors import EXECUTORS
from lpfa.sweep.report import dry_run, paper_table
from lpfa.sweep.spec import (
    GRID_KEYS,
    PAPER_KEYS,
    QUICK_KEYS,
    SPEC_KEYS,
    Pack,
    Run,
    Sweep,
    config_hash,
    load_spec,
    parse_spec,
)

__all__ = [
    "EXECUTORS",
    "GRID_KEYS",
    "PAPER_KEYS",
    "QUICK_KEYS",
    "SPEC_KEYS",
    "Pack",
    "Run",
    "Sweep",
    "SweepInterrupted",
    "SweepOutcome",
    "config_hash",
    "dry_run",
    "execute_pack",
    "load_spec",
    "paper_table",
    "parse_spec",
    "run_sweep",
]
