"""The contracts a quantizer must keep, and :func:`check_quantizer`, which searches for a
counterexample to each.

The contracts, for a quantizer ``q`` with grid ``G`` (sorted values) and
``c = clip(x, G[0], G[-1])``:

dtype_shape
    ``q(x)`` is a new numpy array of x's dtype and shape (float32 and float64, empty and 0-d
    included) that shares no memory with ``x``; ``x`` is left unchanged.
on_grid
    Every output for finite input is in ``G``.
in_range
    ``G[0] <= q(x) <= G[-1]`` for finite input.
idempotent
    ``q(q(x)) == q(x)``.
monotone
    ``x <= x'`` implies ``q(x) <= q(x')`` (nearest and toward-zero rounding).
odd_symmetric
    ``q(-x) == -q(x)`` for ``x != 0``, where the format is odd-symmetric (deterministic rounding).
error_bound
    ``q(x)`` is one of the two grid neighbours ``lo <= c <= hi``: for nearest rounding the one on
    the correct side of the format's decision point (``fmt.decision_points()``: the midpoint for
    uniform grids and minifloats, so ``|q(x) - c| <= (hi - lo) / 2``; the geometric mean for
    :class:`~lpfa.quant.LogFormat`, and next to 0 either 0 or, with ``flush_to_zero``, the lowest
    level / sqrt(2); the dead zone for :class:`~lpfa.quant.Ternary`), for toward-zero the one
    nearer to 0, for stochastic either (error below one step). Decisions within ``ulps`` units in
    the last place of a decision point may go either way, to allow for the rounding of
    ``x / step``.
unbiased
    Stochastic rounding: the mean of ``samples`` draws at one value ``c`` is within
    ``z * sqrt((hi - c)(c - lo) / samples)`` of ``c`` (the Bernoulli variance), plus a few ulps.
    The generator is seeded: no unseeded Monte Carlo.
reproducible
    Stochastic rounding: the same seed gives the same output.
nonfinite
    NaN maps to NaN; +-inf map to the format's documented values (``fmt.nonfinite()``: saturation
    for most formats, see each format's docstring). Without a format: NaN maps to NaN and +-inf
    to a non-NaN value.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, find, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, NoSuchExample
from hypothesis.extra import numpy as hnp

from lpfa.quant import Format, Rounding
from lpfa.testing.claims import Claims, claims_of
from lpfa.testing.strategies import _values, float_arrays

__all__ = ["CONTRACTS", "ContractResult", "Outcome", "Report", "check_quantizer"]

CONTRACTS = (
    "dtype_shape",
    "on_grid",
    "in_range",
    "idempotent",
    "monotone",
    "odd_symmetric",
    "error_bound",
    "unbiased",
    "reproducible",
    "nonfinite",
)


# --- results ------------------------------------------------------------------------------------


class Outcome(Enum):
    """How a contract came out."""

    HOLDS = "holds"
    FAILS = "FAILS"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractResult:
    """One contract's outcome.

    Attributes
    ----------
    name : str
        One of :data:`CONTRACTS`.
    outcome : Outcome
        Whether it held, failed, or did not apply.
    example : numpy.ndarray or float or None
        The minimal failing input found by hypothesis (shrunk); None unless it failed.
    detail : str
        What went wrong on that input, or why the contract was skipped.
    """

    name: str
    outcome: Outcome
    example: Any = None
    detail: str = ""

    @property
    def held(self) -> bool:
        """True unless the contract failed (a skipped contract did not fail)."""
        return self.outcome is not Outcome.FAILS

    def line(self) -> str:
        """One line: ``holds    name``, ``FAILS    name: x=...: what``, ``skipped  name (why)``."""
        head = f"{self.outcome.value:<8} {self.name}"
        if self.outcome is Outcome.FAILS:
            return f"{head}: x={_show(self.example)}: {self.detail}"
        if self.outcome is Outcome.SKIPPED:
            return f"{head} ({self.detail})"
        return head


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The outcome of :func:`check_quantizer`, one :class:`ContractResult` per contract."""

    results: tuple[ContractResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when no contract failed."""
        return all(r.held for r in self.results)

    @property
    def failures(self) -> tuple[ContractResult, ...]:
        """The contracts that failed."""
        return tuple(r for r in self.results if not r.held)

    def __getitem__(self, name: str) -> ContractResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def lines(self) -> list[str]:
        """One line per contract."""
        return [r.line() for r in self.results]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _f(v: Any) -> str:
    """A number as Python writes a float (no numpy scalar reprs in messages)."""
    return repr(float(v))


def _show(v: Any) -> str:
    if isinstance(v, np.ndarray):
        body = np.array2string(v, separator=", ", floatmode="unique", threshold=50)
        return f"{body} ({v.dtype})"
    return repr(v)


# --- the contracts ------------------------------------------------------------------------------


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def _allowed(
    spec: Claims, c: np.ndarray, rounding: Rounding, ulps: int, dtype: Any
) -> list[np.ndarray]:
    """Per element of c (finite, clipped to the range), the grid values q may return.

    Evaluated at c and at c +- ``ulps`` ulps, so decisions next to a boundary may go either way.
    """
    g, t = spec.grid, spec.thresholds
    if g.size == 1:
        return [np.full(c.shape, g[0])]
    tol = ulps * np.spacing(np.abs(c).astype(dtype)).astype(np.float64)
    out = []
    for cc in (np.clip(c - tol, g[0], g[-1]), c, np.clip(c + tol, g[0], g[-1])):
        i = np.clip(np.searchsorted(g, cc, side="right") - 1, 0, g.size - 1)
        j = np.minimum(i + 1, g.size - 1)
        lo, hi = g[i], g[j]
        on = lo == cc
        if rounding is Rounding.NEAREST:
            pick = np.where(cc > t[np.minimum(i, t.size - 1)], hi, lo)
            out.append(np.where(on, lo, pick))
        elif rounding is Rounding.TOWARD_ZERO:
            out.append(np.where(on, lo, np.where(cc >= 0, lo, hi)))
        else:
            out.extend([lo, hi])
    return out


class _Checker:
    """Runs the contracts of one quantizer; each contract is a ``violation(example)`` function that
    returns None when the contract holds on the example and a description when it does not."""

    def __init__(
        self,
        q: Callable[..., Any],
        spec: Claims,
        rounding: Rounding,
        dtype: np.dtype,
        *,
        dtypes: Sequence[Any],
        seed: int,
        samples: int,
        z: float,
        ulps: int,
        max_examples: int,
    ) -> None:
        self.q, self.spec, self.rounding, self.dtype = q, spec, rounding, dtype
        self.dtypes = tuple(np.dtype(d) for d in dtypes)
        self.seed, self.samples, self.z, self.ulps = seed, samples, z, ulps
        self.stochastic = rounding is Rounding.STOCHASTIC
        self.settings = settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            derandomize=False,
            verbosity=Verbosity.quiet,
            suppress_health_check=list(HealthCheck),
            phases=(Phase.generate, Phase.shrink),
        )
        self.values = _values(spec, dtype)
        narrowest = min((dtype, *self.dtypes), key=lambda d: d.itemsize)
        self.values_any_dtype = _values(spec, narrowest)

    def call(self, x: np.ndarray, seed: int | None = None) -> Any:
        if self.stochastic:
            return self.q(x, rng=np.random.default_rng(self.seed if seed is None else seed))
        return self.q(x)

    def arrays(self, dtype: Any = None, **kw: Any) -> st.SearchStrategy[np.ndarray]:
        kw.setdefault("min_dims", 1)
        kw.setdefault("max_dims", 2)
        kw.setdefault("min_side", 1)
        return float_arrays(self.dtype if dtype is None else dtype, elements=self.values, **kw)

    def run(self, name: str, strategy: st.SearchStrategy, violation: Callable) -> ContractResult:
        last: list[tuple[Any, str]] = []  # the latest failing example and what went wrong

        def guarded(ex: Any) -> str | None:
            try:
                what = violation(ex)
            except Exception as e:  # the quantizer under test may raise anything
                what = f"raised {type(e).__name__}: {e}"
            if what is not None:
                last[:] = [(ex, what)]
            return what

        try:
            ex = find(
                strategy,
                lambda v: guarded(v) is not None,
                settings=self.settings,
                random=random.Random(self.seed),
            )
        except NoSuchExample:
            return ContractResult(name=name, outcome=Outcome.HOLDS)
        except Flaky:
            # The quantizer answered differently when hypothesis repeated an input: report the
            # failure that was seen (not shrunk further).
            ex, what = last[0]
            what += " (flaky: repeating the call did not reproduce it; is q deterministic?)"
            return ContractResult(name=name, outcome=Outcome.FAILS, example=ex, detail=what)
        what = guarded(ex) or last[0][1]
        return ContractResult(name=name, outcome=Outcome.FAILS, example=ex, detail=what)

    # Each contract below returns a ContractResult.

    def dtype_shape(self) -> ContractResult:
        shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
        strategy = st.sampled_from(self.dtypes).flatmap(
            lambda d: float_arrays(d, elements=self.values_any_dtype, shape=shapes)
        )

        def violation(x: np.ndarray) -> str | None:
            before = x.copy()
            out = self.call(x)
            if not isinstance(out, np.ndarray):
                return f"returned {type(out).__name__}, not numpy.ndarray"
            if out.dtype != x.dtype or out.shape != x.shape:
                return f"returned dtype {out.dtype} shape {out.shape}"
            if out is x or np.may_share_memory(out, x):
                return "returned x itself or a view of it, not a new array"
            if not _same(x, before):
                return "modified its input"
            return None

        return self.run("dtype_shape", strategy, violation)

    def on_grid(self) -> ContractResult:
        g = self.spec.grid
        if g is None:
            return self._grid_free("on_grid")

        def violation(x: np.ndarray) -> str | None:
            out = np.asarray(self.call(x), dtype=np.float64)
            bad = ~np.isin(out, g)
            if bad.any():
                i = int(np.argmax(bad))
                return f"q(x)[{i}] = {_f(out.flat[i])} is not a grid value"
            return None

        return self.run("on_grid", self.arrays(), violation)

    def in_range(self) -> ContractResult:
        g = self.spec.grid
        if g is None:
            return self._grid_free("in_range")

        def violation(x: np.ndarray) -> str | None:
            out = np.asarray(self.call(x), dtype=np.float64)
            bad = ~((out >= g[0]) & (out <= g[-1]))
            if bad.any():
                i = int(np.argmax(bad))
                return f"q(x)[{i}] = {_f(out.flat[i])} outside [{_f(g[0])}, {_f(g[-1])}]"
            return None

        return self.run("in_range", self.arrays(), violation)

    def idempotent(self) -> ContractResult:
        def violation(x: np.ndarray) -> str | None:
            once = np.asarray(self.call(x))
            twice = np.asarray(self.call(once, seed=self.seed + 1))
            if not _same(once, twice):
                return f"q(x) = {_show(once)} but q(q(x)) = {_show(twice)}"
            return None

        return self.run("idempotent", self.arrays(), violation)

    def monotone(self) -> ContractResult:
        if self.stochastic:
            return _skip("monotone", "stochastic rounding is monotone only in distribution")

        def violation(x: np.ndarray) -> str | None:
            xs = np.sort(x.ravel())
            out = np.asarray(self.call(xs), dtype=np.float64)
            d = np.diff(out)
            if (d < 0).any():
                i = int(np.argmax(d < 0))
                return (
                    f"x[{i}] <= x[{i + 1}] but q gives {_f(out[i])} > {_f(out[i + 1])} "
                    f"(x sorted: {_show(xs)})"
                )
            return None

        return self.run("monotone", self.arrays(max_dims=1), violation)

    def odd_symmetric(self) -> ContractResult:
        if self.stochastic:
            return _skip("odd_symmetric", "stochastic rounding is odd only in distribution")
        if not self.spec.odd:
            return _skip("odd_symmetric", "not odd-symmetric (per format, grid or odd_symmetric=)")

        def violation(x: np.ndarray) -> str | None:
            x = x[x != 0]
            pos = np.asarray(self.call(x), dtype=np.float64)
            neg = np.asarray(self.call(-x), dtype=np.float64)
            bad = ~((neg == -pos) | (np.isnan(neg) & np.isnan(pos)))
            if bad.any():
                i = int(np.argmax(bad))
                return f"q({_f(x[i])}) = {_f(pos[i])} but q({_f(-x[i])}) = {_f(neg[i])}"
            return None

        return self.run("odd_symmetric", self.arrays(), violation)

    def error_bound(self) -> ContractResult:
        spec = self.spec
        if spec.identity:

            def identity(x: np.ndarray) -> str | None:
                out = np.asarray(self.call(x))
                bad = out != x
                if bad.any():
                    i = int(np.argmax(bad))
                    return f"q(x)[{i}] = {_f(out.flat[i])} != x = {_f(x.flat[i])} (identity format)"
                return None

            return self.run("error_bound", self.arrays(), identity)
        if spec.grid is None:
            return self._grid_free("error_bound")
        what = {
            Rounding.NEAREST: "the nearest grid value (half a step in the format's metric)",
            Rounding.TOWARD_ZERO: "the grid neighbour nearer to 0",
            Rounding.STOCHASTIC: "one of the two grid neighbours (less than one step away)",
        }[self.rounding]

        def violation(x: np.ndarray) -> str | None:
            out = np.asarray(self.call(x), dtype=np.float64).ravel()
            c = np.clip(x.astype(np.float64).ravel(), spec.grid[0], spec.grid[-1])
            ok = np.zeros(c.shape, dtype=bool)
            for a in _allowed(spec, c, self.rounding, self.ulps, self.dtype):
                ok |= out == a
            if not ok.all():
                i = int(np.argmax(~ok))
                want = sorted(
                    {float(a[i]) for a in _allowed(spec, c, self.rounding, 0, self.dtype)}
                )
                return f"q({_f(x.flat[i])}) = {_f(out[i])}, expected {what}: {want}"
            return None

        return self.run("error_bound", self.arrays(), violation)

    def unbiased(self) -> ContractResult:
        if not self.stochastic:
            return _skip("unbiased", "deterministic rounding")
        g = self.spec.grid
        if g is None:
            return self._grid_free("unbiased")
        n = self.samples
        lo_v, hi_v = float(g[0]), float(g[-1])
        values = self.values.filter(lambda v: lo_v <= v <= hi_v)

        def violation(v: float) -> str | None:
            x = np.full(n, v, dtype=self.dtype)
            out = np.asarray(self.call(x), dtype=np.float64)
            i = int(np.clip(np.searchsorted(g, v, side="right") - 1, 0, g.size - 1))
            lo, hi = g[i], g[min(i + 1, g.size - 1)]
            sd = math.sqrt(max((hi - v) * (v - lo), 0.0) / n)
            slack = 4 * float(np.spacing(np.asarray(abs(v), dtype=self.dtype))) + 2**-20 * (hi - lo)
            tol = self.z * sd + slack
            mean = float(np.mean(out))
            if not abs(mean - v) <= tol:
                return (
                    f"mean of {n} draws = {_f(mean)}, off by {mean - v:.3g} > {self.z:g} sd "
                    f"({tol:.3g}) from {_f(v)} (neighbours {_f(lo)}, {_f(hi)})"
                )
            return None

        return self.run("unbiased", values, violation)

    def reproducible(self) -> ContractResult:
        if not self.stochastic:
            return _skip("reproducible", "deterministic rounding")

        def violation(x: np.ndarray) -> str | None:
            a, b = np.asarray(self.call(x)), np.asarray(self.call(x))
            if not _same(a, b):
                return f"same seed, different outputs: {_show(a)} and {_show(b)}"
            return None

        return self.run("reproducible", self.arrays(), violation)

    def nonfinite(self) -> ContractResult:
        specials = st.sampled_from([math.nan, math.inf, -math.inf])
        strategy = float_arrays(
            self.dtype,
            elements=st.one_of(specials, self.values),
            min_dims=1,
            max_dims=1,
            min_side=1,
        )
        image = self.spec.inf_image

        def violation(x: np.ndarray) -> str | None:
            out = np.asarray(self.call(x), dtype=np.float64)
            for i, (v, o) in enumerate(zip(x.tolist(), out.tolist(), strict=True)):
                if math.isnan(v) and not math.isnan(o):
                    return f"q(nan) = {_f(o)} at [{i}], expected nan"
                if math.isinf(v):
                    if image is None:
                        if math.isnan(o):
                            return f"q({_f(v)}) = nan at [{i}], expected a value or {_f(v)}"
                        continue
                    want = image[0] if v > 0 else image[1]
                    if not (o == want or (math.isnan(o) and math.isnan(want))):
                        return f"q({_f(v)}) = {_f(o)} at [{i}], expected {_f(want)}"
            return None

        return self.run("nonfinite", strategy, violation)

    def _grid_free(self, name: str) -> ContractResult:
        return _skip(name, "no grid: give fmt= or grid=")


def _skip(name: str, why: str) -> ContractResult:
    return ContractResult(name=name, outcome=Outcome.SKIPPED, detail=why)


def check_quantizer(
    q: Callable[..., Any],
    fmt: Format | None = None,
    *,
    grid: Any = None,
    rounding: Rounding | str = Rounding.NEAREST,
    odd_symmetric: bool | None = None,
    dtype: Any = np.float32,
    dtypes: Sequence[Any] = (np.float32, np.float64),
    contracts: Sequence[str] = CONTRACTS,
    max_examples: int = 100,
    seed: int = 0,
    samples: int = 4000,
    z: float = 6.0,
    ulps: int = 2,
) -> Report:
    """Check a quantizer callable against the contracts of the kit (see the module docstring).

    Parameters
    ----------
    q : callable
        ``q(x) -> array`` for numpy ``x``; with stochastic rounding it is called as
        ``q(x, rng=numpy.random.Generator)``.
    fmt : Format, optional
        The lpfa format ``q`` claims to implement (fixed scale); gives the grid, the decision
        points of nearest rounding, odd symmetry and the documented non-finite behaviour.
    grid : array-like, optional
        Instead of ``fmt``: the representable values (decision points are the midpoints, odd
        symmetry is assumed when the grid is symmetric, +-inf may saturate or pass through). With
        neither, only the grid-free contracts run.
    rounding : Rounding or str
        The rounding ``q`` claims: selects which contracts apply and the error bound.
    odd_symmetric : bool, optional
        Override whether ``q(-x) == -q(x)`` is required.
    dtype : numpy float dtype
        Input dtype for the value contracts.
    dtypes : sequence of numpy float dtypes
        Input dtypes for the dtype_shape contract.
    contracts : sequence of str
        Which of :data:`CONTRACTS` to run (in the order of :data:`CONTRACTS`).
    max_examples : int
        Hypothesis examples per contract (before shrinking).
    seed : int
        Seeds hypothesis and the generators passed to ``q``: a run is reproducible.
    samples : int
        Draws per value in the unbiasedness contract.
    z : float
        Tolerance of the unbiasedness contract, in standard deviations of the sample mean.
    ulps : int
        Rounding decisions this close (units in the last place) to a decision point may go either
        way in the error_bound contract.

    Returns
    -------
    Report
        One :class:`ContractResult` per requested contract.
    """
    try:
        rounding = Rounding(rounding)
    except ValueError:
        allowed = ", ".join(r.value for r in Rounding)
        raise ValueError(f"rounding={rounding!r}: must be one of {allowed}") from None
    unknown = [c for c in contracts if c not in CONTRACTS]
    if unknown:
        raise ValueError(f"contracts={unknown!r}: must be among {', '.join(CONTRACTS)}")
    if not _is_pos_int(max_examples):
        raise ValueError(f"max_examples={max_examples!r}: must be an int >= 1")
    if not _is_pos_int(samples):
        raise ValueError(f"samples={samples!r}: must be an int >= 1")
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype={dt}: must be a float dtype")
    spec = claims_of(fmt, grid, dt, odd_symmetric)
    checker = _Checker(
        q,
        spec,
        rounding,
        dt,
        dtypes=dtypes,
        seed=seed,
        samples=samples,
        z=z,
        ulps=ulps,
        max_examples=max_examples,
    )
    return Report(results=tuple(getattr(checker, c)() for c in CONTRACTS if c in contracts))


def _is_pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1
