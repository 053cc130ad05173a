"""Deprecated: the ``lpfa sweep``, ``lpfa results`` and ``lpfa plot`` commands are now
:mod:`lpfa.sweep.cli`.

Importing this module warns once and gives the same objects under their old names.
"""

import warnings

from lpfa.sweep.cli import add_commands, write_block

__all__ = ["add_commands", "write_block"]

warnings.warn(
    "lpfa.sweep_cli has moved to lpfa.sweep.cli (add_commands, write_block)",
    DeprecationWarning,
    stacklevel=2,
)
