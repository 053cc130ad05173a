"""lpfa: low-precision hardware emulation for learning without weight transport."""

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
from lpfa.train import DivergenceError, RunResult, train

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
