"""lpfa: low-precision hardware emulation for learning without weight transport.

``lpfa.train`` is the function that trains a configuration; the training loop's module is
:mod:`lpfa.training` (``from lpfa.train import X``, the module's old name, still works).
"""

import sys

__version__ = "0.1.0"

from lpfa.backend import get_xp, resolve, to_numpy
from lpfa.config import (
    Activation,
    ChannelConfig,
    ConfigError,
    DataConfig,
    Dist,
    Loss,
    ModelConfig,
    Rule,
    RunConfig,
    TrainConfig,
)
from lpfa.network import Network
from lpfa.training import DivergenceError, RunResult, train

# the module's old name: a function and a module cannot share ``lpfa.train``
sys.modules.setdefault("lpfa.train", sys.modules["lpfa.training"])

__all__ = [
    "Activation",
    "ChannelConfig",
    "ConfigError",
    "DataConfig",
    "Dist",
    "DivergenceError",
    "Loss",
    "ModelConfig",
    "Network",
    "Rule",
    "RunConfig",
    "RunResult",
    "TrainConfig",
    "__version__",
    "get_xp",
    "resolve",
    "to_numpy",
    "train",
]
