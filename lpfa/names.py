"""The named choices of a configuration, and the one error that bad input raises.

Every mode a config field names in TOML (an activation, a distribution, the backend, the dtype,
the data set, the rounding) is an enum here (the learning rules' names live with their facts, in
:mod:`lpfa.rules`); :class:`ConfigError` is how
lpfa says ``field=value: what is allowed`` in one line. :mod:`lpfa.config` builds its
dataclasses from these and re-exports them.
"""

import enum
from typing import Any

from lpfa.backend import BACKENDS
from lpfa.quant import Rounding

__all__ = [
    "DATASETS",
    "DTYPES",
    "ROUNDINGS",
    "Activation",
    "Backend",
    "Backward",
    "ConfigError",
    "DType",
    "DataName",
    "Dist",
    "Loss",
    "Signal",
    "Spectrum",
]


class ConfigError(ValueError):
    """A configuration value that is not allowed: ``path=value: what is allowed``."""

    def __init__(self, path: str, value: Any, allowed: str):
        if isinstance(value, enum.Enum):  # named as in the TOML, not as its Python repr
            value = value.value
        self.path, self.value, self.allowed = path, value, allowed
        super().__init__(f"{path}={value!r}: {allowed}")

    def under(self, prefix: str) -> "ConfigError":
        """The same error with its path placed under a section."""
        return ConfigError(f"{prefix}.{self.path}", self.value, self.allowed)


class _Named(enum.StrEnum):
    """A string enum that accepts aliases and lists its values in errors."""

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {}

    @classmethod
    def parse(cls, value: Any, path: str) -> "_Named":
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            raw = value.strip().lower()
            key = raw.replace("-", "_")
            key = cls._aliases().get(key, key)
            for member in cls:
                if member.value in (key, raw):
                    return member
        names = ", ".join(m.value for m in cls)
        aliases = ", ".join(f"{a} (= {v})" for a, v in cls._aliases().items())
        raise ConfigError(
            path, value, f"must be one of {names}" + (f"; aliases {aliases}" if aliases else "")
        )


class Signal(_Named):
    """What a hidden layer's update keeps of its error signal R^h (Baldi et al. §4.2 items 5-6).

    ``full``: R^h itself. ``sign``: sign(R^h) (magnitude removed). ``magnitude``: |R^h| (sign
    removed). Only the update is changed; the channel passes the full signal on.
    """

    FULL = "full"
    SIGN = "sign"
    MAGNITUDE = "magnitude"


class Activation(_Named):
    """Transfer function f of a layer. ``softmax`` is allowed for the output layer only.

    ``power``: f(S) = sign(S)·|S|^μ with μ = ``model.power_exponent`` (Baldi et al. 2018 §7.9's
    power-law unit, defined there for S > 0 and extended oddly to S ≤ 0), f′(S) = μ|S|^(μ−1).
    """

    LINEAR = "linear"
    LOGISTIC = "logistic"
    TANH = "tanh"
    RELU = "relu"
    SOFTMAX = "softmax"
    POWER = "power"

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {"sigmoid": "logistic", "identity": "linear"}


class Loss(_Named):
    """Output loss: ``squared`` is ½‖T − O‖², ``cross_entropy`` is −Σ T log O (per example)."""

    SQUARED = "squared"
    CROSS_ENTROPY = "cross_entropy"

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {"mse": "squared", "ce": "cross_entropy"}


class Dist(_Named):
    """Distribution of an initial forward matrix or of a feedback matrix.

    ``uniform``: U[−s, s] (Lillicrap et al.'s ±ω). ``normal``: N(0, s²). ``glorot_normal``:
    N(0, s²·2/(fan_in + fan_out)), the "scaled normal" of Baldi et al. (Glorot & Bengio 2010).
    ``glorot_uniform``: U[−a, a] with a = s·√(6/(fan_in + fan_out)). ``sign``: ±s with equal
    probability. ``bernoulli``: s with probability p = n / fan_in, else 0 (feedback only; n is
    ``feedback_nonzeros``). ``orthogonal``: s·Q with Q a uniformly (Haar) random semi-orthogonal
    matrix, QQᵀ = I when fan_out ≤ fan_in, else QᵀQ = I. ``s`` is the scale field.
    """

    UNIFORM = "uniform"
    NORMAL = "normal"
    GLOROT_NORMAL = "glorot_normal"
    GLOROT_UNIFORM = "glorot_uniform"
    SIGN = "sign"
    BERNOULLI = "bernoulli"
    ORTHOGONAL = "orthogonal"


class Backward(_Named):
    """A non-linearity g of the learning channel's units (the blog post on Lillicrap et al.: "they
    ignore any nonlinearities in the backward projection path").

    Each hidden unit h of the channel passes its summed input J^h through g before dropout, the
    error quantizer and f′: ``linear`` g(J) = J (the papers' channel); ``tanh`` g(J) = tanh(J);
    ``relu`` g(J) = max(J, 0); ``sign`` g(J) = sign(J) ∈ {−1, 0, 1}; ``hardtanh`` (a saturating
    curve with a linear middle) g(J) = clip(J, −1, 1).
    """

    LINEAR = "linear"
    TANH = "tanh"
    RELU = "relu"
    SIGN = "sign"
    HARDTANH = "hardtanh"


class Spectrum(_Named):
    """Singular values σ_1 ≥ … ≥ σ_k of the ``lowrank`` task's target matrix Y, k =
    ``data.target_rank``: ``flat`` σ_i = 1 (every rank-r subspace of Y's column space is equally
    good); ``decaying`` σ_i = 1/i, a power law (the best rank-r part is unique).
    """

    FLAT = "flat"
    DECAYING = "decaying"


DATASETS = ("mnist", "fashion-mnist", "linear-teacher", "tanh-teacher", "lowrank", "cifar10")
DTYPES = ("float32", "float64")
ROUNDINGS = tuple(r.value for r in Rounding)

# modes named by strings in TOML, as enums here; the names come from the modules that own them
Backend = _Named("Backend", [(b.upper(), b) for b in BACKENDS], module=__name__)
Backend.__doc__ = "Array backend (lpfa.backend.BACKENDS): numpy, cupy, or auto."
DataName = _Named("DataName", [(d.upper().replace("-", "_"), d) for d in DATASETS], module=__name__)
DataName.__doc__ = (
    "Data set: the MNIST-format image sets, CIFAR-10 (user-supplied archive), or Lillicrap et "
    "al.'s synthetic tasks."
)
DType = _Named("DType", [(d.upper(), d) for d in DTYPES], module=__name__)
DType.__doc__ = "Floating-point type of every array of a run."


def _as(kind: type[enum.Enum], value: Any, path: str) -> Any:
    """``value`` as a member of the enum ``kind`` (Python callers may pass the plain string)."""
    if isinstance(value, kind):
        return value
    if issubclass(kind, _Named):
        return kind.parse(value, path)
    try:
        return kind(str(value).strip().lower())
    except ValueError:
        allowed = f"must be one of {', '.join(str(m.value) for m in kind)}"
        raise ConfigError(path, value, allowed) from None


def _set_enum(cfg: Any, field_name: str, kind: type[enum.Enum]) -> None:
    """Normalise an enum field of a frozen config in its ``__post_init__``."""
    object.__setattr__(cfg, field_name, _as(kind, getattr(cfg, field_name), field_name))
