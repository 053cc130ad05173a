"""Device physics of an array: pulsed update, noise, bounds, drift and stuck devices.

A :class:`lpfa.config.DeviceConfig` describes one kind of device; every effect is ``None``
(ideal) unless set, so any one effect can be switched on alone. :class:`ArrayDevice` is that
device physics for one array of an ensemble: the forward arrays W (``model.device``), the
feedback arrays C (``channel.device``). The equations and names follow IBM aihwkit's pulsed
devices (``ConstantStepDevice``, ``LinearStepDevice``, ``SoftBoundsDevice``; Rasch et al., "A
flexible and fast PyTorch toolkit for simulating training and inference on analog crossbar
arrays", AICAS 2021):

Pulsed update. A requested change ΔW_ij is sent as n_ij = |k_ij| whole pulses in direction
d = sign(k_ij), k_ij = ⌊ΔW_ij / dw_min + u⌋ with u ~ U[0, 1) (stochastic rounding of a signed
number, so E[k] = ΔW / dw_min), at most ``max_pulses``. Each pulse moves the device by

    w ← w + d · Δw_ij^d · (1 − d · γ_ij^d · w / |b_ij^d|) + Δw_ij^d · σ_c2c · ξ      (*)

with Δw_ij^± = dw_min · (1 ± β_ij + σ_d2d · ξ_ij), β_ij = up_down + up_down_dtod · ξ'_ij (drawn
once per device), bounds b^+ = w_max (1 + w_max_dtod ξ), b^− = w_min (1 + w_min_dtod ξ) (drawn once,
hard: w is clipped to [b^−, b^+]), slopes γ_ij^± = |γ^± + γ_dtod^± ξ| (γ = 0: constant step,
aihwkit ConstantStep; γ = 1: soft bounds, SoftBounds; else LinearStep), and ξ ~ N(0, 1) fresh
for every pulse (cycle to cycle, additive noise: aihwkit's ``mult_noise=False``). The n pulses of
one update are applied at once with the exact solution of (*): with a = Δw^d, k = γ^d/|b^d| and
r = 1 − a k, after n pulses

    w_n = r^n w_0 + d · a · (1 − r^n) / (a k),    Var[w_n] = (a σ_c2c)² (1 − r^{2n}) / (1 − r²)

(the noise is Gaussian, an AR(1) sum), which for k → 0 is w_0 + d a n with variance (a σ_c2c)² n.
The soft-bound fixed point is w* = d · |b^d| / γ^d (= the bound for γ = 1).

Programming noise: the initial weights are written with an error ``program_noise`` · ξ (drawn
once per device). Read noise: every read (forward ``W x``, the transposed read ``Wᵀ e`` of
weight transport, the feedback read ``C e``) sees W + σ_read · ξ with ξ fresh for every synapse
and every read of every example; it is sampled exactly as output noise σ_read ‖x_b‖ ξ_bi (the sum
Σ_j ξ_ij x_bj is N(0, ‖x_b‖²)). Drift: g(t) = g(t_0) · (t / t_0)^(−ν_ij), t counted in training
steps from t_0 (ν_ij = drift_nu + drift_nu_dtod · ξ, once per device). Stuck devices: each device
is stuck with probability ``stuck_prob`` (at zero, or at one of its bounds) and never moves.

Streams: every device-to-device draw comes from its own host generator
(:func:`lpfa.backend.device_rng`: per member, per array, per effect, from the member seed);
pulse rounding, cycle-to-cycle and read noise come from the run's runtime stream
(:class:`lpfa.backend.RuntimeRandom`), so evaluation and diagnostics never consume them. On
numpy these are 16-bit draws (:func:`lpfa.backend.uniform16`, :func:`lpfa.backend.normal16`: u on
a grid of 2^16 points, ξ one of 2^16 normal quantiles), five times cheaper than numpy's own
normals, which dominated a device step; on CuPy the generator's own.
Biases are digital (periphery) and ideal.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from lpfa.backend import device_rng, get_xp, normal16, to_numpy, uniform16
from lpfa.names import _Named

if TYPE_CHECKING:
    from lpfa.config import DeviceConfig

__all__ = [
    "PRESETS",
    "ArrayDevice",
    "StuckAt",
    "describe",
    "plot_response",
    "response",
]

# effects, one device-to-device stream each (lpfa.backend.device_rng)
EFFECT_STEP = 0  # Δw d2d spread
EFFECT_UP_DOWN = 1  # asymmetry β_ij
EFFECT_BOUNDS = 2  # b^+, b^−
EFFECT_GAMMA = 3  # γ^±_ij
EFFECT_PROGRAM = 4  # programming error at init
EFFECT_DRIFT = 5  # ν_ij
EFFECT_STUCK = 6  # which devices are stuck, and where

_TINY = 1e-12  # a k is kept in [_TINY, 1 − 1e-7]: a device whose step is 0 moves by 0, not NaN


class StuckAt(_Named):
    """Where a stuck device sits: ``zero`` (w = 0) or ``bound`` (w_min or w_max, each with
    probability ½; needs bounds)."""

    ZERO = "zero"
    BOUND = "bound"


_GV = (
    "Gokmen & Vlasov, 'Acceleration of deep neural network training with resistive cross-point "
    "devices: design considerations', Front. Neurosci. 10:333 (2016), Table 1, as scaled to the "
    "weight range -1..1 in aihwkit's GokmenVlasovPresetDevice"
)
#: Named devices. Each is ``{"source": ..., "fields": {DeviceConfig field: value}}``; values are in
#: the device's own units (aihwkit's normalised range, w in about −1 … 1): ``scale`` maps them
#: onto lpfa's weights. A preset fills the fields a config leaves ``None``.
PRESETS: dict[str, dict[str, Any]] = {
    "idealized": {
        "source": (
            "aihwkit IdealizedPresetDevice (Rasch, Gokmen & Haensch, 'Training large-scale "
            "ANNs on simulated resistive crossbar arrays', IEEE Design & Test 2019): the "
            "Gokmen & Vlasov 2016 device with 10 000 states and no asymmetry"
        ),
        "fields": {
            "dw_min": 0.0002,
            "dw_min_dtod": 0.3,
            "dw_min_std": 0.3,
            "up_down": 0.0,
            "up_down_dtod": 0.0,
            "w_min": -1.0,
            "w_max": 1.0,
            "w_min_dtod": 0.3,
            "w_max_dtod": 0.3,
        },
    },
    "gokmen2016_rpu": {
        "source": _GV + ": ~1 250 states (dw_min 0.0016 on -1..1), 30 % device-to-device and "
        "30 % cycle-to-cycle spread of the step, 30 % spread of the bounds, 1 % "
        "device-to-device up/down imbalance",
        "fields": {
            "dw_min": 0.0016,
            "dw_min_dtod": 0.3,
            "dw_min_std": 0.3,
            "up_down": 0.0,
            "up_down_dtod": 0.01,
            "w_min": -1.0,
            "w_max": 1.0,
            "w_min_dtod": 0.3,
            "w_max_dtod": 0.3,
        },
    },
    "reram_gong2018": {
        "source": (
            "aihwkit ReRamSBPresetDevice: soft-bounds fit to the ReRAM measurements of Gong et "
            "al., 'Signal and noise extraction from analog memory elements for neuromorphic "
            "computing', Nat. Commun. 9:2102 (2018); symmetry point shifted to 0 (the reference "
            "device is not modelled); every number is aihwkit's fit"
        ),
        "fields": {
            "dw_min": 0.002,
            "dw_min_dtod": 0.3,
            "dw_min_std": 3.75,
            "up_down": 0.0,
            "up_down_dtod": 0.01,
            "w_min": -0.75,
            "w_max": 1.25,
            "w_min_dtod": 0.3 / 0.75,
            "w_max_dtod": 0.3 / 1.25,
            "gamma_up": 1.0,
            "gamma_down": 1.0,
        },
    },
    "ecram_tang2018": {
        "source": (
            "aihwkit EcRamPresetDevice: linear-step fit to the Li-ion ECRAM of Tang et al., "
            "'ECRAM as scalable synaptic cell for high-speed, low-power neuromorphic "
            "computing', IEDM 2018; range shifted so the symmetry point is 0; every number is "
            "aihwkit's fit (aihwkit's noise is multiplicative, here it is additive)"
        ),
        "fields": {
            "dw_min": 0.002,
            "dw_min_dtod": 0.1,
            "dw_min_std": 0.3,
            "up_down": 0.0,
            "up_down_dtod": 0.01,
            "w_min": -0.8276,
            "w_max": 1.1724,
            "w_min_dtod": 0.05,
            "w_max_dtod": 0.05,
            "gamma_up": 0.1153,
            "gamma_down": 0.5085,
            "gamma_up_dtod": 0.05,
            "gamma_down_dtod": 0.05,
        },
    },
}


def _or0(v: float | None) -> float:
    return 0.0 if v is None else float(v)


def describe(cfg: DeviceConfig) -> str:
    """One line: which effects are on, and the derived number of states."""
    parts = []
    if cfg.preset:
        parts.append(f"preset {cfg.preset}")
    if cfg.dw_min is not None:
        kind = (
            "constant step"
            if cfg.gamma_up is None
            else ("soft bounds" if cfg.gamma_up == cfg.gamma_down == 1.0 else "linear step")
        )
        parts.append(f"pulsed ({kind}, dw_min {cfg.dw_min:g})")
    if cfg.states is not None:
        parts.append(f"{cfg.states:.0f} states")
    for name in ("up_down", "dw_min_dtod", "dw_min_std", "program_noise", "read_noise",
                 "drift_nu", "stuck_prob", "max_pulses"):  # fmt: skip
        v = getattr(cfg, name)
        if v is not None:
            parts.append(f"{name} {v:g}")
    if cfg.scale != 1.0:
        parts.append(f"scale {cfg.scale:g}")
    return ", ".join(parts) if parts else "ideal"


class ArrayDevice:
    """The devices of one array (E, n_out, n_in): their drawn parameters and their physics.

    Parameters
    ----------
    cfg : DeviceConfig
    shape : (E, n_out, n_in)
    seeds : sequence of int
        Member seeds, one per ensemble member.
    array : tuple of int
        The array's name in the device streams: ``(0, h)`` forward array of layer h,
        ``(1, k, h)`` feedback array C^{k→h}, ``(2,)`` the top layer's feedback.
    dtype : str
    xp : module
    rng : RuntimeRandom or generator, optional
        Runtime noise (pulse rounding, cycle-to-cycle and read noise); needed for those effects.

    Attributes
    ----------
    steps : int
        Training steps seen (for drift).
    """

    def __init__(self, cfg: DeviceConfig, shape, seeds, array, dtype, xp, rng=None):
        self.cfg, self.shape, self.xp, self.rng = cfg, tuple(shape), xp, rng
        self.dtype = np.dtype(str(dtype))
        self.array = tuple(array)
        self.seeds = list(seeds)
        s = float(cfg.scale)
        self.pulsed = cfg.dw_min is not None
        self.linear = cfg.gamma_up is not None
        self.bounded = cfg.w_max is not None
        self.read_sigma = None if cfg.read_noise is None else cfg.read_noise * s
        self.c2c = _or0(cfg.dw_min_std)
        self._sent = self._pulses = None
        self.steps = 0
        self.write_calls = 0
        n = self.shape[1:]
        dev = lambda a: xp.asarray(np.ascontiguousarray(a, dtype=self.dtype))  # noqa: E731
        if self.bounded:
            g = self._normals(EFFECT_BOUNDS, 2)
            bmax = cfg.w_max * s * (1 + _or0(cfg.w_max_dtod) * g[:, 0])
            bmin = cfg.w_min * s * (1 + _or0(cfg.w_min_dtod) * g[:, 1])
            self.b_max_h, self.b_min_h = np.maximum(bmax, bmin), np.minimum(bmax, bmin)
            self.b_max, self.b_min = dev(self.b_max_h), dev(self.b_min_h)
        if self.pulsed:
            self.dw = cfg.dw_min * s
            self.inv_dw = 1.0 / self.dw
            xi = self._normals(EFFECT_STEP, 1)[:, 0]
            beta = (
                _or0(cfg.up_down) + _or0(cfg.up_down_dtod) * self._normals(EFFECT_UP_DOWN, 1)[:, 0]
            )
            spread = _or0(cfg.dw_min_dtod) * xi
            a_up = np.maximum(self.dw * (1 + beta + spread), 0.0)
            a_dn = np.maximum(self.dw * (1 - beta + spread), 0.0)
            self.a_up_h, self.a_dn_h = a_up, a_dn
            # per-direction quantities x are kept as (x_dn, x_up − x_dn), so that x of each
            # synapse's direction is x_dn + [n > 0]·(x_up − x_dn): two cheap passes, not a select
            pair = lambda u, d: (dev(d), dev(u - d))  # noqa: E731
            self.a = pair(a_up, -a_dn)  # the signed change of one pulse: +Δw⁺ up, −Δw⁻ down
            if self.linear:
                g = self._normals(EFFECT_GAMMA, 2)
                gu = np.abs(cfg.gamma_up + _or0(cfg.gamma_up_dtod) * g[:, 0])
                gd = np.abs(cfg.gamma_down + _or0(cfg.gamma_down_dtod) * g[:, 1])
                self.gamma_up_h, self.gamma_dn_h = gu, gd
                ak_up = np.clip(
                    a_up * gu / np.maximum(np.abs(self.b_max_h), _TINY), _TINY, 1 - 1e-7
                )
                ak_dn = np.clip(
                    a_dn * gd / np.maximum(np.abs(self.b_min_h), _TINY), _TINY, 1 - 1e-7
                )
                self.lnr = pair(np.log1p(-ak_up), np.log1p(-ak_dn))  # ln r
                self.inv_ak = pair(1 / ak_up, 1 / ak_dn)
                self.den = pair(1 / (2 - ak_up), 1 / (2 - ak_dn))  # (1 − r²) = a k (2 − a k)
        self.nu = None
        if cfg.drift_nu is not None:
            nu = cfg.drift_nu + _or0(cfg.drift_nu_dtod) * self._normals(EFFECT_DRIFT, 1)[:, 0]
            self.nu = dev(nu)
            self.t0 = float(cfg.drift_t0)
        self.stuck = None
        if cfg.stuck_prob is not None:
            rs = [device_rng(seed, self.array, EFFECT_STUCK) for seed in self.seeds]
            u = np.stack([r.random((2, *n)) for r in rs])  # (E, 2, n_out, n_in)
            stuck = u[:, 0] < cfg.stuck_prob
            if cfg.stuck_at is StuckAt.BOUND:
                value = np.where(u[:, 1] < 0.5, self.b_max_h, self.b_min_h)
            else:
                value = np.zeros(stuck.shape)
            self.stuck_h, self.stuck_value_h = stuck, value * stuck
            self.stuck = dev(stuck)
            self.keep = dev(~stuck)
            self.stuck_value = dev(value * stuck)

    def _normals(self, effect: int, k: int) -> np.ndarray:
        """(E, k, n_out, n_in) standard normals of one effect, each member from its own stream."""
        n = self.shape[1:]
        return np.stack([device_rng(s, self.array, effect).standard_normal((k, *n))
                         for s in self.seeds])  # fmt: skip

    # --- what the array does with its devices -------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether writes go through the device (pulses, bounds or stuck devices)."""
        return self.pulsed or self.bounded or self.stuck is not None

    def program(self, W):
        """The weights as written at initialisation: target + programming error, clipped to the
        bounds, stuck devices at their value. ``W`` (E, n_out, n_in) is not modified."""
        xp, cfg = self.xp, self.cfg
        if cfg.program_noise is not None:
            noise = self._normals(EFFECT_PROGRAM, 1)[:, 0] * (cfg.program_noise * cfg.scale)
            W = W + xp.asarray(noise.astype(self.dtype))
        else:
            W = W.copy()
        return self._constrain(W)

    def _constrain(self, W):
        """Clip to the bounds and put stuck devices back, in place; returns W."""
        xp = self.xp
        if self.bounded:
            xp.minimum(W, self.b_max, out=W)
            xp.maximum(W, self.b_min, out=W)
        if self.stuck is not None:
            W *= self.keep
            W += self.stuck_value
        return W

    @property
    def pulses(self):
        """Pulses sent in the last update (sum over the array and the ensemble), a 0-d array on
        the device; None before the first pulsed update. Summed when first asked for."""
        if self._sent is not None:
            self._pulses, self._sent = self._sent.sum(), None
        return self._pulses

    def write(self, W, dW):
        """Apply the requested change ``dW`` to ``W`` (both (E, n_out, n_in)) in place.

        With pulsed update the change is sent as pulses (module docstring); otherwise it is
        added exactly. Bounds and stuck devices hold in both cases. Returns W.
        """
        xp = self.xp
        self.write_calls += 1
        if not self.pulsed:
            W += dW
            return self._constrain(W)
        dt = W.dtype
        # signed whole pulses, ⌊ΔW / dw_min + u⌋: stochastic rounding of a signed number, so
        # E[n] = ΔW / dw_min, and |n| = ⌊|ΔW| / dw_min + u'⌋ with u' = u or 1 − u (also uniform)
        n = dW * dt.type(self.inv_dw)
        n += uniform16(self.rng, dW.shape, dt, xp)
        xp.floor(n, out=n)
        if self.cfg.max_pulses is not None:
            bound = dt.type(self.cfg.max_pulses)
            xp.clip(n, -bound, bound, out=n)
        sent = xp.abs(n)
        self._sent = sent  # summed when .pulses is read (the cost audit), not every step
        up = n > 0

        def pick(pair):  # the quantity of each synapse's direction (any where no pulse is sent)
            dn, diff = pair
            return dn + up * diff

        a = pick(self.a)  # signed change of one pulse
        if self.linear:
            en = pick(self.lnr) * sent
            xp.expm1(en, out=en)  # r^n − 1
            m = en * pick(self.inv_ak)
            m *= -1.0  # (1 − r^n) / (a k): the effective number of pulses
            W *= en + 1.0
            if self.c2c:
                # Var = (a σ)² (1 − r^2n)/(1 − r²) = (a σ)² m (1 + r^n) / (2 − a k)
                en += 2.0
                en *= m
                en *= pick(self.den)
                xp.sqrt(en, out=en)
                en *= normal16(self.rng, dW.shape, dt, xp)  # ξ·sign(a) is as normal as ξ
                en *= dt.type(self.c2c)
                m += en
            m *= a
            W += m
        else:
            # n pulses of a (1 + σ ξ_k) each: a (n + σ √n ξ)
            if self.c2c:
                xp.sqrt(sent, out=n)
                n *= normal16(self.rng, dW.shape, dt, xp)
                n *= dt.type(self.c2c)
                n += sent
                n *= a
            else:
                xp.multiply(sent, a, out=n)
            W += n
        return self._constrain(W)

    def read_noise(self, out, signal) -> None:
        """Add read noise in place to ``out`` (E, B, n_out') = a read of ``signal`` (E, B, n) or
        (B, n): σ_read ‖signal_b‖ ξ, what W + σ_read ξ (fresh per synapse and example) gives."""
        if self.read_sigma is None:
            return
        xp = get_xp(out)
        norm = xp.sqrt((signal * signal).sum(axis=-1, keepdims=True))
        if norm.ndim == 2:  # a shared input (B, n): the same for every member
            norm = norm[None]
        noise = normal16(self.rng, out.shape, out.dtype, xp)
        out += noise * (norm * out.dtype.type(self.read_sigma))  # ``norm`` may be traced (hwmodels)

    def tick(self, W) -> None:
        """One training step of drift, in place: W ← W · ((t + t0) / (t − 1 + t0))^(−ν)."""
        self.steps += 1
        if self.nu is None:
            return
        t, t0 = self.steps, self.t0
        ratio = math.log((t + t0) / (t - 1 + t0))
        W *= self.xp.exp(self.nu * W.dtype.type(-ratio))
        if self.stuck is not None:
            self._constrain(W)


# --- the response to a pulse train (the curve every device paper shows) -------------------------


def response(cfg: DeviceConfig, n_pulses: int = 1000, n_devices: int = 4, seed: int = 0,
             cycles: int = 1) -> np.ndarray:  # fmt: skip
    """Weights of ``n_devices`` sampled devices under ``cycles`` × (n up pulses, then n down).

    Each pulse is one update of exactly dw_min (so one pulse, whatever the rounding), starting
    from w = 0 (programmed, with ``program_noise``). Returns an array (2 n cycles + 1,
    n_devices) in weight units.
    """
    from lpfa.backend import runtime_rng

    if cfg.dw_min is None:
        raise ValueError("device.dw_min is None: the device has no pulsed update to respond with")
    rng = runtime_rng(seed, np)
    dev = ArrayDevice(cfg, (1, 1, n_devices), [seed], (9,), "float64", np, rng)
    W = dev.program(np.zeros((1, 1, n_devices)))
    out = [W[0, 0].copy()]
    step = np.full_like(W, dev.dw)
    for _ in range(cycles):
        for sign in (1.0, -1.0):
            for _ in range(n_pulses):
                dev.write(W, sign * step)
                out.append(W[0, 0].copy())
    return np.asarray(out)


def plot_response(cfg: DeviceConfig, path, *, title: str = "", n_pulses: int | None = None,
                  n_devices: int = 4, seed: int = 0):  # fmt: skip
    """Plot :func:`response` to ``path`` (PNG or PDF); returns the curve. ``n_pulses`` defaults
    to the number of states (capped at 5 000), so a train spans the range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if n_pulses is None:
        n_pulses = int(min(cfg.states or 1000, 5000))
    w = response(cfg, n_pulses, n_devices, seed)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(len(w)), w, lw=0.8)
    ax.axvline(n_pulses, color="0.6", lw=0.5, ls="--")
    ax.set_xlabel(f"pulse number ({n_pulses} up, then {n_pulses} down)")
    ax.set_ylabel("weight")
    import textwrap

    ax.set_title(textwrap.fill(title or describe(cfg), 100), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return to_numpy(w)


# --- the command line: lpfa device-response PRESET --------------------------------------------


def _device_response(args) -> int:
    from pathlib import Path

    from lpfa import config as C

    fields: dict[str, Any] = {"preset": args.preset}
    fields = C.apply_overrides(fields, list(args.set))
    cfg = C.from_dict(C.DeviceConfig, fields, prefix="device")
    out = Path(args.out or f"results/device_response_{args.preset}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    w = plot_response(cfg, out, n_pulses=args.pulses, n_devices=args.devices, seed=args.seed)
    print(f"{args.preset}: {describe(cfg)}")
    print(f"source: {PRESETS[args.preset]['source']}")
    if cfg.states is not None:
        print(f"states (w_max - w_min) / dw_min = {cfg.states:.0f}")
    top = (len(w) - 1) // 2
    print(f"{w.shape[1]} devices, {top} pulses up then down: w after the up train "
          f"{np.round(w[top], 4).tolist()}, at the end {np.round(w[-1], 4).tolist()}")  # fmt: skip
    print(f"wrote {out}")
    return 0


def add_commands(sub) -> None:
    """``lpfa device-response PRESET``: the response of sampled devices to pulse trains."""
    p = sub.add_parser(
        "device-response",
        help="plot a device preset's response to a train of up, then down pulses",
    )
    p.add_argument("preset", choices=sorted(PRESETS), help="a named device of lpfa.devices")
    p.add_argument("--out", help="image file (default: results/device_response_PRESET.png)")
    p.add_argument(
        "--pulses",
        type=int,
        default=None,
        help="pulses per direction (default: the number of states, at most 5000)",
    )
    p.add_argument("--devices", type=int, default=4, help="devices sampled (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled devices")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a device field, e.g. --set dw_min_std=0 (repeatable)",
    )
    p.set_defaults(func=_device_response)
