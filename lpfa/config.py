"""Run configuration: frozen dataclasses, loaded from TOML, validated with clear errors.

Every field is checked on construction; :func:`from_dict` also rejects unknown keys and wrong
types and names the field by its dotted path (``train.lr=-1: must be > 0``). Variants are made
with :func:`dataclasses.replace` or with command-line overrides (:func:`apply_overrides`).
"""

import argparse
import dataclasses
import enum
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpfa.devices import PRESETS, StuckAt
from lpfa.names import (
    Activation,
    Backend,
    Backward,
    ConfigError,
    DataName,
    Dist,
    DType,
    Loss,
    Signal,
    Spectrum,
    _as,
    _set_enum,
)
from lpfa.quant import Rounding, parse_format
from lpfa.rules import Carries, Rule, spec


def _carries_target(rule: Rule) -> bool:
    """True for the rules whose channel sends the target rather than the error (DRTP)."""
    return spec(rule).carries is Carries.TARGET


__all__ = [
    "Activation",
    "Backend",
    "Backward",
    "ChannelConfig",
    "ConfigError",
    "ConvLayerConfig",
    "DType",
    "DataConfig",
    "DataName",
    "DeviceConfig",
    "Dist",
    "Loss",
    "ModelConfig",
    "Rule",
    "RunConfig",
    "Spectrum",
    "TrainConfig",
    "add_set_option",
    "apply_overrides",
    "from_dict",
    "load",
    "read_toml",
    "to_dict",
]


# characters that would make a run's name (a folder name) point somewhere else
_NAME_FORBIDDEN = ("/", "\\", "\0")


def _format(path: str, spec: str | None) -> None:
    """Check a number-format spec such as ``log:bits=3,alpha=0.125`` (see lpfa.quant)."""
    if spec is None:
        return
    try:
        parse_format(spec)
    except ValueError as err:
        raise ConfigError(path, spec, f"not a number format: {err}") from None


def _require(ok: bool, path: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(path, value, allowed)


def _positive_int(path: str, value: int) -> None:
    _require(value >= 1, path, value, "must be an integer >= 1")


def _finite(path: str, value: float, *, lo: float = -math.inf, strict: bool = False) -> None:
    ok = math.isfinite(value) and (value > lo if strict else value >= lo)
    _require(ok, path, value, f"must be finite and {'>' if strict else '>='} {lo:g}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DataConfig:
    """Which data the run learns from."""

    name: DataName = DataName.MNIST
    """Data set: ``mnist``, ``fashion-mnist`` (IDX files, pixels scaled to [0, 1]), ``cifar10``
    (the official archive, which the user puts in place: see docs/conv.md; rows of 3072 =
    (3, 32, 32), pixels scaled to [0, 1]), or a
    synthetic task of Lillicrap et al.: ``linear-teacher`` (y = T x, x ~ N(0, I), T ~ U[−1, 1])
    or ``tanh-teacher`` (a fixed random tanh network of ``teacher_sizes``); or ``lowrank``
    (Garg & Vempala's factorization task: t = Y x, x ~ N(0, I), Y (N_L × N_0) of rank
    ``target_rank`` with singular values ``spectrum``)."""
    n_train: int | None = None
    """Training examples: the first n of the set; None = all (synthetic default 10 000)."""
    n_test: int | None = None
    """Test examples: the first n of the set; None = all (synthetic default 2 000)."""
    seed: int = 0
    """Seed of the synthetic task (teacher and inputs); unused by the image sets."""
    teacher_sizes: tuple[int, ...] = (30, 20, 10, 10)
    """Layer sizes of the ``tanh-teacher`` target network (input first)."""
    target_rank: int | None = None
    """``lowrank`` only: rank k of Y (at most min(N_0, N_L)); None = full rank min(N_0, N_L)."""
    spectrum: Spectrum = Spectrum.FLAT
    """``lowrank`` only: singular values of Y (:class:`Spectrum`): ``flat`` σ_i = 1 or
    ``decaying`` σ_i = 1/i, i = 1 … k; Y = U diag(σ) Vᵀ with Haar-random U, V."""

    def __post_init__(self) -> None:
        _set_enum(self, "name", DataName)
        _set_enum(self, "spectrum", Spectrum)
        if self.target_rank is not None:
            _positive_int("target_rank", self.target_rank)
            _require(
                self.name is DataName.LOWRANK,
                "target_rank",
                self.target_rank,
                f"only applies to name=lowrank (name={self.name.value})",
            )
        for name in ("n_train", "n_test"):
            value = getattr(self, name)
            if value is not None:
                _positive_int(name, value)
        _require(self.seed >= 0, "seed", self.seed, "must be an integer >= 0")
        _require(
            len(self.teacher_sizes) >= 2 and all(n >= 1 for n in self.teacher_sizes),
            "teacher_sizes",
            self.teacher_sizes,
            "must list at least two layer sizes, each >= 1",
        )


_DEVICE_NEEDS_PULSES = ("dw_min_dtod", "dw_min_std", "up_down", "up_down_dtod", "max_pulses",
                        "gamma_up", "gamma_down", "gamma_up_dtod", "gamma_down_dtod")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceConfig:
    """Device physics of the arrays of one role (forward arrays: ``model.device``; feedback
    arrays: ``channel.device``).

    Every effect is None (ideal) unless set, so any one can be switched on alone; the equations
    are aihwkit's pulsed-device equations (see :mod:`lpfa.devices`). *Absolute* quantities are in
    device units, which ``scale`` turns into weight units; *relative* ones are fractions of the
    quantity they spread. *d2d* (device to device) draws are made once per synapse, from the
    member seed; *c2c* (cycle to cycle) draws are fresh at every pulse or read. Biases are
    digital and ideal.
    """

    preset: str | None = None
    """A named device of :data:`lpfa.devices.PRESETS` (``idealized``, ``gokmen2016_rpu``,
    ``reram_gong2018``, ``ecram_tang2018``): it fills every field left None here; the fields set
    here win."""
    scale: float = 1.0
    """Weight value of one device unit (absolute, > 0): every absolute device quantity below is
    multiplied by it (aihwkit's presets live on w ∈ about −1 … 1; scale = 0.1 maps that onto
    weights of ±0.1)."""
    dw_min: float | None = None
    """Pulsed update: mean step Δw_min of one pulse (absolute, device units). A requested change
    ΔW is sent as ⌊|ΔW|/Δw_min + u⌋ pulses (stochastic rounding, u ~ U[0, 1) c2c). None = updates
    are exact."""
    dw_min_dtod: float | None = None
    """d2d spread of the step, relative to dw_min (Gaussian, σ_d2d):
    Δw_ij = Δw_min(1 + σ_d2d ξ_ij)."""
    dw_min_std: float | None = None
    """c2c noise of each pulse, relative to the device's step (Gaussian, σ_c2c, additive):
    a pulse moves by Δw_ij^d(... + σ_c2c ξ)."""
    up_down: float | None = None
    """Up/down asymmetry β (relative to dw_min): Δw^± = Δw_min(1 ± β) (same for every device)."""
    up_down_dtod: float | None = None
    """d2d spread of β (absolute, in units of dw_min, Gaussian):
    β_ij = up_down + up_down_dtod ξ_ij."""
    max_pulses: int | None = None
    """Pulse-train limit: at most this many pulses per synapse per update (aihwkit's desired
    pulse-train length); None = unlimited."""
    w_min: float | None = None
    """Lower bound b^− of every device (absolute, device units, < 0 < w_max); w is clipped to
    [b^−, b^+] after every write. None (with w_max) = unbounded."""
    w_max: float | None = None
    """Upper bound b^+ (absolute, device units, > 0)."""
    w_min_dtod: float | None = None
    """d2d spread of b^−, relative to w_min (Gaussian): b^−_ij = w_min(1 + w_min_dtod ξ_ij)."""
    w_max_dtod: float | None = None
    """d2d spread of b^+, relative to w_max (Gaussian)."""
    gamma_up: float | None = None
    """Slope γ^+ of the step's dependence on w (needs dw_min and bounds): a pulse up moves by
    Δw^+(1 − γ^+ w / b^+) (aihwkit LinearStep); γ = 1 is soft bounds (SoftBounds), None =
    constant step (ConstantStep)."""
    gamma_down: float | None = None
    """Slope γ^− of the down step, Δw^−(1 − γ^− w / b^−); set together with gamma_up."""
    gamma_up_dtod: float | None = None
    """d2d spread of γ^+ (absolute, Gaussian): γ_ij = |γ^+ + gamma_up_dtod ξ_ij|."""
    gamma_down_dtod: float | None = None
    """d2d spread of γ^− (absolute, Gaussian)."""
    program_noise: float | None = None
    """Programming error when the initial weights are written (absolute std, device units,
    Gaussian, drawn once per device)."""
    read_noise: float | None = None
    """Read noise: every read sees W + σ_read ξ with ξ fresh for every synapse, read and example
    (absolute std, device units, c2c); forward reads, weight transport's transposed read and
    feedback reads all see it."""
    drift_nu: float | None = None
    """Drift exponent ν: g(t) = g(t_0)(t/t_0)^(−ν), t in training steps since initialisation
    (mean of ν across devices, absolute)."""
    drift_nu_dtod: float | None = None
    """d2d spread of ν (absolute std, Gaussian): ν_ij = drift_nu + drift_nu_dtod ξ_ij."""
    drift_t0: float = 1.0
    """Reference time t_0 of drift, in training steps (> 0)."""
    stuck_prob: float | None = None
    """Probability that a device is stuck (d2d, drawn once): it holds ``stuck_at`` and never
    moves."""
    stuck_at: StuckAt = StuckAt.ZERO
    """Where stuck devices sit: ``zero`` or ``bound`` (b^+ or b^−, each with probability ½)."""

    def __post_init__(self) -> None:
        if self.preset is not None:
            _require(self.preset in PRESETS, "preset", self.preset,
                     f"must be one of {', '.join(PRESETS)}")  # fmt: skip
            for name, value in PRESETS[self.preset]["fields"].items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
        _set_enum(self, "stuck_at", StuckAt)
        _finite("scale", self.scale, lo=0.0, strict=True)
        _finite("drift_t0", self.drift_t0, lo=0.0, strict=True)
        for name in ("dw_min", "read_noise", "program_noise"):
            v = getattr(self, name)
            if v is not None:
                _finite(name, v, lo=0.0, strict=name == "dw_min")
        for name in ("dw_min_dtod", "dw_min_std", "up_down_dtod", "w_min_dtod", "w_max_dtod",
                     "gamma_up", "gamma_down", "gamma_up_dtod", "gamma_down_dtod",
                     "drift_nu_dtod"):  # fmt: skip
            v = getattr(self, name)
            if v is not None:
                _finite(name, v, lo=0.0)
        if self.up_down is not None:
            _require(math.isfinite(self.up_down) and abs(self.up_down) < 1, "up_down",
                     self.up_down, "must be in (-1, 1)")  # fmt: skip
        if self.drift_nu is not None:
            _finite("drift_nu", self.drift_nu)
        if self.max_pulses is not None:
            _positive_int("max_pulses", self.max_pulses)
        if self.dw_min is None:
            for name in _DEVICE_NEEDS_PULSES:
                _require(getattr(self, name) is None, name, getattr(self, name),
                         "needs pulsed update (dw_min)")  # fmt: skip
        _require((self.w_min is None) == (self.w_max is None), "w_min", self.w_min,
                 "set w_min and w_max together")  # fmt: skip
        if self.w_max is not None:
            _require(math.isfinite(self.w_min) and math.isfinite(self.w_max)
                     and self.w_min < 0 < self.w_max, "w_max", self.w_max,
                     f"need w_min < 0 < w_max (w_min={self.w_min})")  # fmt: skip
        else:
            for name in ("w_min_dtod", "w_max_dtod"):
                _require(getattr(self, name) is None, name, getattr(self, name),
                         "needs bounds (w_min, w_max)")  # fmt: skip
        _require((self.gamma_up is None) == (self.gamma_down is None), "gamma_up",
                 self.gamma_up, "set gamma_up and gamma_down together")  # fmt: skip
        if self.gamma_up is not None:
            _require(self.w_max is not None, "gamma_up", self.gamma_up,
                     "the step's slope is relative to the bounds: set w_min and w_max")  # fmt: skip
        else:
            for name in ("gamma_up_dtod", "gamma_down_dtod"):
                _require(getattr(self, name) is None, name, getattr(self, name),
                         "needs a linear step (gamma_up, gamma_down)")  # fmt: skip
        if self.drift_nu is None:
            _require(self.drift_nu_dtod is None, "drift_nu_dtod", self.drift_nu_dtod,
                     "needs drift (drift_nu)")  # fmt: skip
        if self.stuck_prob is not None:
            _require(0.0 <= self.stuck_prob <= 1.0, "stuck_prob", self.stuck_prob,
                     "must be in [0, 1]")  # fmt: skip
            _require(self.stuck_at is StuckAt.ZERO or self.w_max is not None, "stuck_at",
                     self.stuck_at, "stuck at a bound needs bounds (w_min, w_max)")  # fmt: skip

    @property
    def states(self) -> float | None:
        """Number of states (w_max − w_min)/dw_min (derived; None without pulses and bounds)."""
        if self.dw_min is None or self.w_max is None:
            return None
        return (self.w_max - self.w_min) / self.dw_min


def _toml_value(v: Any) -> str:
    return "none" if v is None else str(v).lower()


def _padding(path: str, value: int | str, *, allowed: str = "'same', 'valid'") -> None:
    ok = value in ("same", "valid") or (
        isinstance(value, int) and not isinstance(value, bool) and value >= 0
    )
    _require(ok, path, value, f"must be {allowed} or an integer >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvLayerConfig:
    """One convolutional layer (:class:`lpfa.conv.ConvArray`): a bank of ``channels`` kernels of
    k × k taps read over the input maps, then f (``model.hidden``), then an optional max-pool."""

    channels: int
    """Output channels C_out (kernels of the bank, the crossbar's rows)."""
    kernel: int
    """Kernel side k: each kernel has C_in · k · k taps (the crossbar's columns)."""
    stride: int = 1
    """Step of the window."""
    padding: int | str = "same"
    """``"same"`` (H' = ⌈H / stride⌉, the smaller half of the padding on top and left),
    ``"valid"`` (none) or an integer p (p zeros on every side)."""
    pool_kernel: int | None = None
    """Side of the max-pool window after f; None = no pooling."""
    pool_stride: int | None = None
    """Step of the max-pool window; None = ``pool_kernel`` (non-overlapping)."""
    pool_padding: int | str = "valid"
    """Padding of the max-pool (``"same"``, ``"valid"`` or an integer); padding never wins."""

    def __post_init__(self) -> None:
        for name in ("channels", "kernel", "stride"):
            _positive_int(name, getattr(self, name))
        _padding("padding", self.padding)
        if self.pool_kernel is None:
            for name in ("pool_stride",):
                _require(getattr(self, name) is None, name, getattr(self, name),
                         "needs a pool (pool_kernel)")  # fmt: skip
            _require(self.pool_padding == "valid", "pool_padding", self.pool_padding,
                     "needs a pool (pool_kernel)")  # fmt: skip
        else:
            _positive_int("pool_kernel", self.pool_kernel)
            if self.pool_stride is not None:
                _positive_int("pool_stride", self.pool_stride)
            _padding("pool_padding", self.pool_padding)


def conv_shapes(
    input_shape: tuple[int, int, int], conv: tuple[ConvLayerConfig, ...], path: str = "conv"
) -> list[tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]]:
    """(input, conv output, pooled output) shapes (C, H, W) of every conv layer, bottom first.

    Raises ConfigError on the first window that does not fit its input."""
    from lpfa.conv import geometry  # lpfa.conv needs no config; imported here, when used

    out, shape = [], tuple(input_shape)
    for i, c in enumerate(conv):
        try:
            g = geometry(shape, c.kernel, c.stride, c.padding)
        except ValueError:
            raise ConfigError(
                f"{path}[{i}].kernel", c.kernel,
                f"the {c.kernel}x{c.kernel} window (padding={c.padding!r}) does not fit the "
                f"{shape[1]}x{shape[2]} maps it reads",
            ) from None  # fmt: skip
        mapped = (c.channels, *g.out_hw)
        pooled = mapped
        if c.pool_kernel is not None:
            stride = c.pool_kernel if c.pool_stride is None else c.pool_stride
            try:
                pool = geometry(mapped, c.pool_kernel, stride, c.pool_padding)
                pooled = (c.channels, *pool.out_hw)
            except ValueError:
                raise ConfigError(
                    f"{path}[{i}].pool_kernel", c.pool_kernel,
                    f"the pool window does not fit the {mapped[1]}x{mapped[2]} maps it reads",
                ) from None  # fmt: skip
        out.append((shape, mapped, pooled))
        shape = pooled
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """The forward network: a stack of crossbar arrays with their transfer functions."""

    sizes: tuple[int, ...] = (784, 100, 100, 100, 100, 10)
    """Units per layer, input first and output last: N_0, N_1, …, N_L."""
    hidden: Activation = Activation.TANH
    """Transfer function of every hidden layer."""
    output: Activation = Activation.SOFTMAX
    """Transfer function of the output layer."""
    loss: Loss = Loss.CROSS_ENTROPY
    """Output loss; cross-entropy needs a softmax or logistic output."""
    power_exponent: float = 1.0
    """Exponent μ > 0 of ``power`` units, f(S) = sign(S)·|S|^μ (unused by other transfer
    functions); μ = 1 is a linear unit."""
    init: Dist = Dist.GLOROT_NORMAL
    """Distribution of the initial forward weights."""
    init_scale: float = 1.0
    """Scale s of ``init`` (see :class:`Dist`); biases start at zero."""
    weight_keep: float | tuple[float, ...] = 1.0
    """Fraction of forward synapses present, for every array or one per array (bottom first);
    the others are missing (0, and stay 0). Lillicrap et al.'s sparse network removes 50 % of W
    (hidden → output) only: ``[1.0, 0.5]`` on 784-1000-10."""
    bias: bool = True
    """Every array has a bias (S = W x + b, b learning like W); false: none, S = W x (e.g. Song,
    Xu & Lafferty's two-layer model)."""
    frozen: tuple[int, ...] = ()
    """Arrays (1 = the lowest, input → first hidden) whose synapses are never written: they keep
    their initial weights and biases while the others learn (Baldi et al. §4.2, observation 4)."""
    input_format: str | None = None
    """Number format of the input lines of every array (DAC), e.g. ``fixed:bits=8,full_scale=1``;
    None = the dtype. Formats are ``name:key=value,…`` specs of :func:`lpfa.quant.parse_format`."""
    output_format: str | None = None
    """Number format of every array's outputs S = W x + b (ADC); None = the dtype."""
    weight_format: str | None = None
    """Conductance levels: every forward weight is kept on this format's grid (clipped to its
    range) at the start and after every update; None = the dtype."""
    rounding: Rounding = Rounding.NEAREST
    """Rounding of the forward-path formats: nearest, stochastic or toward_zero."""
    dtype: DType = DType.FLOAT32
    """Floating-point type of weights and signals: float32 or float64."""
    device: DeviceConfig | None = None
    """Device physics of the forward arrays W (pulsed update, bounds, read, programming and
    drift noise, stuck devices; :class:`DeviceConfig`); the transposed read of weight transport
    reads these devices too. None = ideal arrays."""
    input_shape: tuple[int, ...] | None = None
    """(C, H, W) of the input images (rows of C·H·W, channel first); None = a dense net whose
    input is ``sizes[0]`` numbers. Needed by ``conv``."""
    conv: tuple[ConvLayerConfig, ...] = ()
    """Convolutional layers below the dense ones (:class:`ConvLayerConfig` tables, bottom
    first): conv → f → pool → … → flatten → ``sizes``; ``sizes[0]`` is then the flattened size
    C·H·W of the last pooled map. Arrays are numbered conv first (1 = the lowest conv layer)."""

    def __post_init__(self) -> None:
        _require(
            len(self.sizes) >= 2 and all(n >= 1 for n in self.sizes),
            "sizes",
            self.sizes,
            "must list at least an input and an output size, each >= 1",
        )
        self._check_conv()
        _require(
            self.hidden is not Activation.SOFTMAX,
            "hidden",
            str(self.hidden),
            "softmax is for the output layer only; use linear, logistic, tanh, relu or power",
        )
        if self.loss is Loss.CROSS_ENTROPY:
            _require(
                self.output in (Activation.SOFTMAX, Activation.LOGISTIC),
                "output",
                str(self.output),
                "loss=cross_entropy needs output=softmax or logistic",
            )
        _require(
            not (self.loss is Loss.SQUARED and self.output is Activation.SOFTMAX),
            "output",
            str(self.output),
            "output=softmax is implemented with loss=cross_entropy only; use loss=cross_entropy, "
            "or output=linear, logistic or tanh with loss=squared",
        )
        _finite("init_scale", self.init_scale, lo=0.0, strict=True)
        _finite("power_exponent", self.power_exponent, lo=0.0, strict=True)
        _require(
            self.init is not Dist.BERNOULLI,
            "init",
            str(self.init),
            "bernoulli is for feedback matrices; forward weights need a signed distribution",
        )
        keep = self.weight_keep
        _require(
            all(0.0 < k <= 1.0 for k in (keep if isinstance(keep, tuple) else (keep,)))
            and (not isinstance(keep, tuple) or len(keep) == self.n_layers),
            "weight_keep",
            keep,
            f"must be in (0, 1], one number or one per array ({self.n_layers} for sizes="
            f"{self.sizes})",
        )
        _require(
            all(1 <= h <= self.n_layers for h in self.frozen)
            and len(set(self.frozen)) == len(self.frozen),
            "frozen",
            self.frozen,
            f"must list distinct arrays, 1 = the lowest, up to {self.n_layers}",
        )
        for name in ("input_format", "output_format", "weight_format"):
            _format(name, getattr(self, name))
        _set_enum(self, "rounding", Rounding)
        _set_enum(self, "dtype", DType)

    def _check_conv(self) -> None:
        """input_shape and conv, checked before anything counts the arrays."""
        if self.input_shape is not None:
            _require(
                len(self.input_shape) == 3 and all(n >= 1 for n in self.input_shape),
                "input_shape",
                self.input_shape,
                "must be (C, H, W), each >= 1",
            )
        if not self.conv:
            if self.input_shape is not None:
                n = math.prod(self.input_shape)
                _require(self.sizes[0] == n, "sizes", self.sizes,
                         f"sizes[0] must be C·H·W = {n} of input_shape={self.input_shape} "
                         "(without conv layers)")  # fmt: skip
            return
        _require(self.input_shape is not None, "input_shape", self.input_shape,
                 "conv layers need the input's (C, H, W)")  # fmt: skip
        n = math.prod(conv_shapes(self.input_shape, self.conv)[-1][2])
        _require(self.sizes[0] == n, "sizes", self.sizes,
                 f"sizes[0] must be the flattened size C·H·W = {n} of the last conv layer's "
                 "(pooled) maps")  # fmt: skip

    @property
    def n_conv(self) -> int:
        """Number of convolutional arrays (the lowest ones)."""
        return len(self.conv)

    @property
    def n_layers(self) -> int:
        """Number of forward arrays L, conv layers included."""
        return len(self.conv) + len(self.sizes) - 1

    @property
    def n_inputs(self) -> int:
        """Numbers in one input row: C·H·W of ``input_shape``, else ``sizes[0]``."""
        return self.sizes[0] if self.input_shape is None else math.prod(self.input_shape)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Units of every layer's output as the layer above reads it (flattened, pooled), input
        first: N_0, N_1, …, N_L; equals ``sizes`` without conv layers."""
        if not self.conv:
            return tuple(self.sizes)
        maps = conv_shapes(self.input_shape, self.conv)
        return (self.n_inputs, *(math.prod(p) for _, _, p in maps), *self.sizes[1:])

    @property
    def array_shapes(self) -> tuple[tuple[int, int], ...]:
        """(rows, columns) of every forward array, bottom first: (C_out, C_in·k·k) of a kernel
        bank, (N_h, N_{h−1}) of a dense array."""
        dense = tuple((self.sizes[h + 1], self.sizes[h]) for h in range(len(self.sizes) - 1))
        if not self.conv:
            return dense
        maps = conv_shapes(self.input_shape, self.conv)
        kernels = tuple(
            (c.channels, shape[0] * c.kernel**2)
            for c, (shape, _, _) in zip(self.conv, maps, strict=True)
        )
        return kernels + dense


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelConfig:
    """The learning channel: how the output error reaches each hidden layer.

    Every variant of Lillicrap et al. (2016) and Baldi et al. (2018) is a value of these fields.
    """

    rule: Rule = Rule.BP
    """Topology of the channel (:class:`Rule`)."""
    feedback: Dist = Dist.GLOROT_NORMAL
    """Distribution of the random feedback matrices (rules with random feedback)."""
    feedback_scale: float = 1.0
    """Scale s of ``feedback`` (see :class:`Dist`)."""
    feedback_mean: float = 0.0
    """Added to every drawn feedback entry (non-zero means, Baldi et al. §4.2 item 3)."""
    feedback_nonzeros: float | None = None
    """``feedback = bernoulli`` only: expected non-zeros n per *sending* neuron. Each entry is 1
    with probability p = n / fan-in, the fan-in of the forward array the matrix stands in for
    (the receiving layer's size), times the scale: for Sparse-1 SRBP each output unit reaches
    one unit of each hidden layer on average (Baldi et al. Fig. 3)."""
    feedback_normalize: bool = False
    """``bernoulli`` only: scale the 0/1 entries by 1/√n so RBP's errors do not grow with n."""
    feedback_keep: float = 1.0
    """Fraction of feedback entries kept; the others are removed (set to 0), e.g. 0.5 for
    Lillicrap et al.'s "50 % of B removed"."""
    congruent: bool = False
    """``rbp`` only: every feedback weight takes the sign of the forward weight it stands in for
    (magnitudes stay random); set at the start, or at every draw when ``resample``."""
    feedback_from_init: bool = False
    """``rbp`` only: C^{h+1} = W^{h+1} as first drawn (B = the transpose of the *initial* forward
    weights, before ``model.weight_keep`` removes synapses and ``model.weight_format`` rounds
    them), then fixed while W learns (or adaptive with ``adapt_lr``); ``feedback`` is unused."""
    feedback_rank: int | None = None
    """Low-rank feedback: every feedback matrix is C = QP of rank ≤ r, the best rank-r
    approximation (truncated SVD, Q = U_r Σ_r, P = V_rᵀ) of the matrix drawn from ``feedback``
    (after its mean); a channel through r relay units. None = full rank."""
    resample: bool = False
    """Draw fresh feedback matrices for every minibatch (Baldi et al. §4.2 items 1-2)."""
    fprime: bool = True
    """Multiply the signal delivered to layer h by f′(S^h); False is the "no-f′" variant."""
    dropout: float = 0.0
    """Probability that a hidden unit of the learning channel is dropped for an example; the
    survivors' signals are scaled by 1/(1 − p) (Baldi et al. §6, Fig. 9)."""
    signal: Signal = Signal.FULL
    """What each hidden update keeps of its error signal (:class:`Signal`)."""
    per_weight: bool = False
    """``srbp`` only: every synapse, rather than every neuron, gets its own random projection
    of the output error (Baldi et al. §4.2 item 7, which does not learn)."""
    adapt_lr: float | None = None
    """Adaptive feedback (ARBP / ASRBP): ΔC = adapt_lr · η_t · R^{source} ⊗ O^{receiver},
    relative to the forward learning rate (Baldi et al. used 0.1 for ARBP); None = fixed C."""
    adapt_epochs: int | None = None
    """With ``adapt_lr``: C adapts during the first k training epochs only and is then frozen
    (feedback learned for k epochs, then fixed); None = it adapts throughout."""
    backward: Backward = Backward.LINEAR
    """Non-linearity g of the channel's hidden units (:class:`Backward`): J^h, the sum of what
    layer h's channel unit receives, becomes g(J^h) *before* dropout, the ``error_format``
    quantizer and f′, and g(J^h) ∘ f′ is what a chained channel relays on (so g compounds down
    an ``rbp`` chain); ``linear`` is the papers' channel."""
    top_feedback: bool = False
    """The top layer learns through a random matrix instead of its gradient: R^L = e_top · C^top
    with C^top (N_L × N_L) drawn from ``feedback`` (Baldi et al. §8: "random weights in the
    learning channel for the top layer do not work at all"); the hidden layers' channel still
    carries the true top error. False = the top layer follows the gradient (Fact 1)."""
    skip_layers: tuple[int, ...] = ()
    """``mixed`` only: hidden layers (1 = lowest) that receive the output error directly."""
    perturbation: float = 1e-3
    """``node_perturbation`` only: standard deviation σ of the noise on hidden pre-activations."""
    error_format: str | None = None
    """Number format of the signal J^h each hidden neuron receives, applied before f′ and before
    the signal travels on, so quantization errors accumulate in chained channels (Baldi et al.
    §5, eq. 19: ``log:bits=3,alpha=0.125``); None = the dtype."""
    update_format: str | None = None
    """Number format of each example's weight update η_t · R_b ⊗ O_b, applied before the
    minibatch mean, to every layer (Baldi et al. §5: ``log:bits=3,alpha=0.015625``, α reduced
    "since weight updates need to be small"); None = the dtype."""
    update_top: bool = True
    """With ``update_format``: the top layer's per-example updates are quantized too (false: the
    top layer takes its exact gradient; §5.2 says only "the weight updates")."""
    update_bias: bool = True
    """With ``update_format``: each example's bias update R_b is quantized too (false: biases
    take the exact minibatch mean)."""
    update_sum: bool = False
    """With ``update_format``: the step is the *sum* of the minibatch's quantized per-example
    updates instead of their mean (§5.2: "before summing over the minibatch")."""
    rounding: Rounding = Rounding.NEAREST
    """Rounding of ``error_format`` and ``update_format``: nearest, stochastic or toward_zero."""
    track_signs: bool = False
    """``rbp`` only, sign symmetry (Liao, Leibo & Poggio 2016): before every step the feedback
    takes the *current* signs of the forward weights it stands in for, C ← |C| ∘ sign(W^{h+1})
    (magnitudes kept: uniform for ``feedback = sign``, uSF; fixed random otherwise, frSF). A write
    into C that reads W's signs, so the audit calls it non-local. brSF is ``congruent`` with
    ``resample`` (magnitudes and signs drawn anew every minibatch)."""
    feedback_decay: float = 0.0
    """Decay λ_C of learning feedback (``adapt_lr`` or ``mirror_ratio``) per update,
    C ← C − η_t·λ_C·C, computed as ``train.weight_decay`` is for W: Kolen-Pollack (Kolen &
    Pollack 1994; Akrout et al. 2019) is ``adapt_lr = 1`` with ``feedback_decay`` =
    ``train.weight_decay``, so C − W shrinks by (1 − η_t λ) every step."""
    mirror_ratio: float | None = None
    """``rbp`` only, weight mirror (Akrout et al. 2019): mirror phases per training step (1: one
    after every step, 0.25: one every fourth, 2: two). In a phase, noise ξ ~ N(0, σ²)
    (``mirror_noise``), one minibatch of it, drives layer h's units; the forward array W^{h+1}
    reads it, y = W^{h+1} ξ + b, and C^{h+1→h} learns ΔC = adapt_lr · η_t/B · Σ_b y_b ⊗ ξ_b
    (− η_t λ_C C), so E[ΔC] ∝ W^{h+1} Σ_ξ. C learns in the mirror phase only (needs
    ``adapt_lr``). None = no mirror phase."""
    mirror_noise: float = 1.0
    """Standard deviation σ of the mirror phase's noise (``mirror_ratio``)."""
    error_signal: Signal = Signal.FULL
    """What the channel sends from the output: ``full`` (the error) or ``sign`` (its sign only,
    one bit per output unit and example with no quantizer: sign-DFA with ``srbp``). The top layer
    still learns from its full error."""
    device: DeviceConfig | None = None
    """Device physics of the feedback arrays C (:class:`DeviceConfig`): read noise on every
    feedback read, pulsed update of adaptive feedback, programming noise, drift, stuck devices.
    Not applied to feedback redrawn every minibatch (``resample``) or per-weight feedback.
    None = ideal feedback arrays."""

    def __post_init__(self) -> None:
        _finite("feedback_scale", self.feedback_scale, lo=0.0, strict=True)
        _finite("feedback_mean", self.feedback_mean)
        _finite("perturbation", self.perturbation, lo=0.0, strict=True)
        _format("error_format", self.error_format)
        _format("update_format", self.update_format)
        for name in ("update_top", "update_bias", "update_sum"):
            default = ChannelConfig.__dataclass_fields__[name].default
            _require(
                self.update_format is not None or getattr(self, name) == default,
                name,
                getattr(self, name),
                "only applies with channel.update_format (per-example quantized updates)",
            )
        _finite("feedback_decay", self.feedback_decay, lo=0.0)
        _finite("mirror_noise", self.mirror_noise, lo=0.0, strict=True)
        _set_enum(self, "error_signal", Signal)
        _set_enum(self, "rounding", Rounding)
        rule = self.rule
        _require(
            0.0 < self.feedback_keep <= 1.0 and math.isfinite(self.feedback_keep),
            "feedback_keep",
            self.feedback_keep,
            "must be in (0, 1]",
        )
        _require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        if self.feedback is Dist.BERNOULLI:
            _require(
                self.feedback_nonzeros is not None
                and math.isfinite(self.feedback_nonzeros)
                and self.feedback_nonzeros >= 0,
                "feedback_nonzeros",
                self.feedback_nonzeros,
                "feedback=bernoulli needs the expected non-zeros per neuron, a finite number >= 0"
                " (0: no error reaches the hidden layers, Baldi et al. Fig. 4)",
            )
            _require(
                not self.feedback_normalize or self.feedback_nonzeros > 0,
                "feedback_normalize",
                self.feedback_normalize,
                "scales by 1/sqrt(feedback_nonzeros), which needs feedback_nonzeros > 0",
            )
        else:
            for name in ("feedback_nonzeros", "feedback_normalize"):
                value = getattr(self, name)
                _require(
                    value in (None, False),
                    name,
                    value,
                    f"only applies to feedback=bernoulli (feedback={self.feedback.value})",
                )
        _set_enum(self, "backward", Backward)
        needs_random = {
            "congruent": self.congruent,
            "feedback_from_init": self.feedback_from_init,
            "feedback_rank": self.feedback_rank is not None,
            "resample": self.resample,
            "adapt_lr": self.adapt_lr is not None,
            "feedback_keep": self.feedback_keep != 1.0,
            "per_weight": self.per_weight,
            "track_signs": self.track_signs,
            "mirror_ratio": self.mirror_ratio is not None,
        }
        for name, used in needs_random.items():
            if used and not rule.has_random_feedback:
                raise ConfigError(
                    name,
                    getattr(self, name),
                    f"rule={rule.value} has no random feedback matrices to apply it to; "
                    "use rbp, srbp, mixed or cascade",
                )
        if self.adapt_epochs is not None:
            _require(
                self.adapt_lr is not None,
                "adapt_epochs",
                self.adapt_epochs,
                "freezes adaptive feedback after k epochs: needs adapt_lr",
            )
            _require(self.adapt_epochs >= 0, "adapt_epochs", self.adapt_epochs, "must be >= 0")
        if self.feedback_rank is not None:
            _positive_int("feedback_rank", self.feedback_rank)
            for name in ("congruent", "resample", "per_weight", "feedback_from_init"):
                _require(
                    not getattr(self, name),
                    "feedback_rank",
                    self.feedback_rank,
                    f"low-rank feedback is drawn once as a product QP; {name}=true cannot be one",
                )
            _require(
                self.feedback_keep == 1.0,
                "feedback_rank",
                self.feedback_rank,
                "removing entries (feedback_keep < 1) would raise the rank of C = QP",
            )
        _require(
            not (self.feedback is Dist.ORTHOGONAL and self.resample),
            "resample",
            self.resample,
            "feedback=orthogonal is drawn once on the host; it cannot be redrawn every minibatch",
        )
        if self.feedback_from_init:
            _require(
                rule is Rule.RBP,
                "feedback_from_init",
                self.feedback_from_init,
                f"C^{{h+1}} = W^{{h+1}} pairs chained feedback with a forward array, which only "
                f"rule=rbp has (rule={rule.value})",
            )
            for name in ("congruent", "resample"):
                _require(
                    not getattr(self, name),
                    "feedback_from_init",
                    self.feedback_from_init,
                    f"C is the initial forward weights, not a draw: {name}=true does not apply",
                )
        for name in ("track_signs", "mirror_ratio"):
            _require(
                getattr(self, name) in (False, None) or rule is Rule.RBP,
                name,
                getattr(self, name),
                f"pairs C^{{h+1}} with the forward array W^{{h+1}}, which only rule=rbp has "
                f"(rule={rule.value})",
            )
        if self.track_signs:
            for name in ("resample", "feedback_from_init", "adapt_lr", "mirror_ratio"):
                value = getattr(self, name)
                _require(
                    value in (False, None),
                    "track_signs",
                    self.track_signs,
                    f"C's signs are copied from W every step; {name}={value} would set C too "
                    "(congruent + resample is brSF, with signs tracked already)",
                )
        if self.mirror_ratio is not None:
            _require(
                math.isfinite(self.mirror_ratio) and self.mirror_ratio > 0,
                "mirror_ratio",
                self.mirror_ratio,
                "must be a finite number > 0 (mirror phases per training step)",
            )
            _require(
                self.adapt_lr is not None,
                "mirror_ratio",
                self.mirror_ratio,
                "the mirror phase teaches C at rate adapt_lr: set channel.adapt_lr",
            )
        _require(
            not self.feedback_decay or self.adapt_lr is not None,
            "feedback_decay",
            self.feedback_decay,
            "decays feedback that learns: needs adapt_lr (or mirror_ratio with adapt_lr)",
        )
        _require(
            self.error_signal is not Signal.MAGNITUDE,
            "error_signal",
            str(self.error_signal),
            "must be full or sign",
        )
        _require(
            not (self.error_signal is Signal.SIGN and _carries_target(rule)),
            "error_signal",
            str(self.error_signal),
            f"rule={rule.value} sends the target, not the error",
        )
        if self.adapt_lr is not None:
            _finite("adapt_lr", self.adapt_lr, lo=0.0, strict=True)
            _require(
                self.feedback_rank is None,
                "adapt_lr",
                self.adapt_lr,
                "low-rank feedback is stored as its two factors Q and P; ΔC = η sᵀa is not a "
                "change of either (unset feedback_rank)",
            )
            _require(
                not self.resample,
                "adapt_lr",
                self.adapt_lr,
                "adaptive feedback learns C, a C redrawn every minibatch (resample=true) cannot",
            )
        _require(
            not self.congruent or rule is Rule.RBP,
            "congruent",
            self.congruent,
            f"sign congruence pairs C^{{h+1}} with W^{{h+1}}, which only rule=rbp has "
            f"(rule={rule.value})",
        )
        _require(
            not self.per_weight or rule is Rule.SRBP,
            "per_weight",
            self.per_weight,
            f"per-weight feedback is defined for rule=srbp only (rule={rule.value})",
        )
        _require(
            not (self.per_weight and self.update_format),
            "update_format",
            self.update_format,
            "per-weight feedback computes each synapse's change whole; it has no per-example "
            "outer product to quantize",
        )
        _require(
            not self.skip_layers or rule is Rule.MIXED,
            "skip_layers",
            self.skip_layers,
            f"only applies to rule=mixed (rule={rule.value})",
        )
        _require(
            all(h >= 1 for h in self.skip_layers)
            and len(set(self.skip_layers)) == len(self.skip_layers),
            "skip_layers",
            self.skip_layers,
            "must list distinct hidden layers, 1 = the lowest",
        )
        if rule in (Rule.TOP, Rule.NODE_PERTURBATION):
            for name, default in (
                ("dropout", 0.0),
                ("signal", Signal.FULL),
                ("fprime", True),
                ("error_format", None),
                ("backward", Backward.LINEAR),
                ("error_signal", Signal.FULL),
            ):
                value = getattr(self, name)
                _require(
                    value == default,
                    name,
                    str(value),
                    f"rule={rule.value} sends no signal through the channel to modify",
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Minibatch SGD and what is measured along the way."""

    epochs: int = 100
    """Passes over the training set."""
    batch_size: int = 100
    """Examples per update; the update is the minibatch mean."""
    lr: float = 0.1
    """Learning rate η at update 0."""
    lr_decay: float = 0.0
    """Keras-style decay per update: η_t = η / (1 + lr_decay · t), t = updates so far."""
    weight_decay: float = 0.0
    """L2 decay of forward weights per update: W ← W − η_t · weight_decay · W (not biases)."""
    momentum: float = 0.0
    """Heavy-ball momentum μ in [0, 1): v ← μ v + ΔW, W ← W + v."""
    shuffle_seed: int = 0
    """Seed of the minibatch order, shared by all members of the ensemble."""
    angle_every: int | None = 1
    """Measure the angle between the rule's and BP's hidden updates every this many epochs
    (and before training); None = never."""
    angle_examples: int = 1000
    """Training examples (the first ones) on which the angle is measured."""
    augment_shift: float = 0.0
    """Image nets (``model.input_shape``): the largest translation of a training image, as a
    fraction f of its height and width. Each image of each minibatch moves by whole pixels drawn
    uniformly from −⌊f·H⌋ … ⌊f·H⌋ (rows) and −⌊f·W⌋ … ⌊f·W⌋ (columns), the border pixels
    repeating into the gap (Keras' "nearest" fill); drawn from the run's runtime stream, on the
    device, shared by the members. Baldi et al. §4.3 use 0.1 on CIFAR-10. 0 = none."""
    augment_flip: bool = False
    """Image nets: flip each training image left-right with probability 0.5 (after the shift),
    drawn like ``augment_shift``'s moves."""

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _finite("lr", self.lr, lo=0.0, strict=True)
        _finite("lr_decay", self.lr_decay, lo=0.0)
        _finite("weight_decay", self.weight_decay, lo=0.0)
        _require(
            math.isfinite(self.momentum) and 0.0 <= self.momentum < 1.0,
            "momentum",
            self.momentum,
            "must be in [0, 1)",
        )
        _require(self.shuffle_seed >= 0, "shuffle_seed", self.shuffle_seed, "must be >= 0")
        if self.angle_every is not None:
            _positive_int("angle_every", self.angle_every)
        _positive_int("angle_examples", self.angle_examples)
        _require(math.isfinite(self.augment_shift) and 0.0 <= self.augment_shift < 1.0,
                 "augment_shift", self.augment_shift, "must be in [0, 1)")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """One run: a network, a channel, data and a schedule, for one or more seeds at once.

    Each seed is one member of the ensemble axis E: its own initial weights and feedback
    matrices, the same minibatches as the other members.
    """

    name: str = "run"
    """Label of the run, used in file names and tables."""
    seeds: tuple[int, ...] = (0,)
    """Member seeds; E = len(seeds) members train as one batched program."""
    backend: Backend = Backend.NUMPY
    """Array backend: numpy, cupy, or auto (CuPy when a CUDA device is present)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _require(bool(self.name.strip()), "name", self.name, "must be a non-empty string")
        _require(
            not any(c in self.name for c in _NAME_FORBIDDEN) and self.name not in (".", ".."),
            "name",
            self.name,
            "is used as a folder name: must not contain '/', '\\' or NUL, nor be '.' or '..'",
        )
        _require(
            len(self.seeds) >= 1 and all(s >= 0 for s in self.seeds),
            "seeds",
            self.seeds,
            "must list at least one seed, each an integer >= 0",
        )
        _require(
            len(set(self.seeds)) == len(self.seeds),
            "seeds",
            self.seeds,
            "must not repeat a seed (two members would be identical)",
        )
        _set_enum(self, "backend", Backend)
        sizes = self.model.sizes
        images = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
        if self.data.name in images:
            shape, shown = images[self.data.name], self.data.name
            if self.model.input_shape is not None:
                _require(
                    tuple(self.model.input_shape) == shape,
                    "model.input_shape",
                    self.model.input_shape,
                    f"data.name={shown} has images of (C, H, W) = {shape}",
                )
            n = math.prod(shape)
            _require(
                self.model.n_inputs == n and sizes[-1] == 10,
                "model.sizes",
                sizes,
                f"data.name={shown} needs {n} inputs and 10 outputs",
            )
        if self.data.name == "lowrank" and self.data.target_rank is not None:
            _require(
                self.data.target_rank <= min(sizes[0], sizes[-1]),
                "data.target_rank",
                self.data.target_rank,
                f"must be <= min(N_0, N_L) = {min(sizes[0], sizes[-1])} for model.sizes={sizes}",
            )
        if self.data.name == "tanh-teacher":
            t = self.data.teacher_sizes
            _require(
                sizes[0] == t[0] and sizes[-1] == t[-1],
                "model.sizes",
                sizes,
                f"must start with {t[0]} inputs and end with {t[-1]} outputs "
                f"like data.teacher_sizes={t}",
            )
        hidden = self.model.n_layers - 1
        bad = [h for h in self.channel.skip_layers if h > hidden]
        _require(
            not bad,
            "channel.skip_layers",
            self.channel.skip_layers,
            f"names hidden layer {bad[0] if bad else 0}, but model.sizes={sizes} has "
            f"hidden layers 1..{hidden}"
            if hidden
            else "the net has no hidden layers",
        )
        if self.model.conv:
            self._check_conv_channel()
        for name in ("augment_shift", "augment_flip"):
            value = getattr(self.train, name)
            _require(not value or self.model.input_shape is not None, f"train.{name}", value,
                     "moves images: needs model.input_shape (C, H, W)")  # fmt: skip
        if self.channel.rule is not Rule.BP and self.model.n_layers < 2:
            raise ConfigError(
                "channel.rule",
                str(self.channel.rule),
                "a network without hidden layers has no learning channel; use rule=bp",
            )

    def _check_conv_channel(self) -> None:
        """Refuse the channel settings that are not defined through conv layers."""
        ch = self.channel
        rules = (Rule.BP, Rule.RBP, Rule.SRBP, Rule.MIXED, Rule.TOP, Rule.DRTP)
        _require(ch.rule in rules, "channel.rule", str(ch.rule),
                 "with conv layers: must be one of " + ", ".join(r.value for r in rules)
                 + " (sbp, cascade, pbp and node_perturbation are dense-only)")  # fmt: skip
        for name, off, why in (
            ("per_weight", False, "per-synapse feedback is dense-only"),
            ("feedback_rank", None, "low-rank feedback is dense-only"),
            ("resample", False, "redrawn feedback is dense-only"),
            ("mirror_ratio", None, "the weight mirror is dense-only"),
            ("update_format", None, "quantized per-example updates are dense-only"),
        ):
            value = getattr(ch, name)
            _require(value == off, f"channel.{name}", value, f"must be {_toml_value(off)} with "
                     f"conv layers ({why})")  # fmt: skip

    @property
    def n_members(self) -> int:
        """Size E of the ensemble axis."""
        return len(self.seeds)


# --- loading, converting, overriding ---------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Convert a TOML/JSON value to the annotated type, or raise ConfigError naming ``path``."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if isinstance(value, list | tuple):  # e.g. float | tuple[float, ...]: the list form
            inner = [a for a in inner if typing.get_origin(a) is tuple] or inner
        first = None
        for tp_i in inner:  # e.g. int | str: the first type the value is
            try:
                return _coerce(value, tp_i, path)
            except ConfigError as err:
                first = first or err
        raise first
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(path, value, f"must be a table of {_type_name(tp)} fields")
        return from_dict(tp, value, prefix=path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _as(tp, value, path)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(path, value, "must be a list")
        (item, _) = typing.get_args(tp)
        return tuple(_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, value, "must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, value, "must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, value, "must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, value, "must be a string")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")  # a bug in lpfa, not in input


def from_dict(cls: type, data: dict[str, Any], *, prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from a plain dict, validating every field.

    Raises
    ------
    ConfigError
        Naming the dotted path of the first offending field.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(path, value, f"unknown field; allowed: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise (err.under(prefix) if prefix and "." not in err.path else err) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON/TOML-ready dict of a config (enums as their values, tuples as lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def _parse_scalar(text: str) -> Any:
    """A TOML value (``0.1``, ``[784, 10]``, ``true``, ``"x"``), or the bare text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.field=value`` overrides to a raw config dict (before validation)."""
    out = json.loads(json.dumps(data))  # a deep copy of plain data
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                "--set", item, "must look like section.field=value, e.g. train.lr=0.05"
            )
        *sections, name = key.strip().split(".")
        node = out
        for s in sections:
            if node.get(s) is None:  # an optional table left unset (device = None)
                node[s] = {}
            node = node[s]
            if not isinstance(node, dict):
                raise ConfigError(key, text, f"{s} is not a section")
        node[name] = _parse_scalar(text.strip())
    return out


def add_set_option(parser: argparse.ArgumentParser, what: str = "a field") -> None:
    """The repeatable ``--set SECTION.FIELD=VALUE`` override every lpfa command takes; its
    values go to :func:`apply_overrides`."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help=f"override {what}, e.g. --set train.epochs=5 --set channel.rule=srbp (repeatable)",
    )


def read_toml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The table of a TOML file.

    A missing path, a folder, an unreadable file, one that is not UTF-8 text or not valid TOML
    is a :class:`ConfigError` on ``what``.
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(what, str(path), "file not found") from None
    except IsADirectoryError:
        raise ConfigError(what, str(path), "is a folder; give a .toml file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            what, str(path), f"is not UTF-8 text (byte {err.start}); give a TOML file"
        ) from None
    except OSError as err:
        raise ConfigError(what, str(path), f"cannot be read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(what, str(path), f"is not valid TOML: {err}") from None


def load(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a :class:`RunConfig` from TOML, with optional ``section.field=value`` overrides."""
    path = Path(path)
    data = read_toml(path)
    data = apply_overrides(data, overrides or [])
    data.setdefault("name", path.stem)
    return from_dict(RunConfig, data)
