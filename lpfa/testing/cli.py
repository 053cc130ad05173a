"""``lpfa check-quantizer module:callable``: the test kit on the command line."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from lpfa.quant import _FORMAT_NAMES, _PRESETS, Format, Rounding, parse_format
from lpfa.testing.contracts import CONTRACTS, check_quantizer

__all__ = ["check_quantizer_main"]


def _load(spec: str) -> Callable[..., Any]:
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"spec={spec!r}: must be module:callable, e.g. mypkg.quant:q8")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError:
        raise
    except SyntaxError as err:  # the user's module does not parse
        raise ValueError(
            f"spec={spec!r}: {err.filename}, line {err.lineno}: SyntaxError: {err.msg}"
        ) from None
    except Exception as err:  # the user's module raised while it was imported
        raise ValueError(
            f"spec={spec!r}: importing {module} raised {type(err).__name__}: {err}"
        ) from None
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"spec={spec!r}: {attr} is not callable")
    return obj


def _bind(q: Callable[..., Any], fmt: Format | None, rounding: Rounding) -> Callable[..., Any]:
    """Pass ``fmt=`` and ``rounding=`` to callables that take them (like lpfa.quant.quantize)."""
    try:
        params = inspect.signature(q).parameters
    except (TypeError, ValueError):
        return q
    kw: dict[str, Any] = {}
    if fmt is not None and "fmt" in params:
        kw["fmt"] = fmt
    if "rounding" in params:
        kw["rounding"] = rounding
    return partial(q, **kw) if kw else q


def check_quantizer_main(argv: Sequence[str] | None = None) -> int:
    """Command line: check ``module:callable`` against the kit; one line per contract.

    Returns 0 when every contract holds (or is skipped), 1 when one fails, 2 for a usage error
    (bad spec, import failure, bad format).
    """
    p = argparse.ArgumentParser(
        prog="lpfa check-quantizer",
        description="Check a quantizer callable q(x) (q(x, rng=...) for stochastic rounding) "
        "against the contracts of lpfa.testing. Callables with fmt=/rounding= parameters (like "
        "lpfa.quant:quantize) get them from --format/--rounding.",
    )
    p.add_argument("spec", help="module:callable, e.g. mypkg.quant:q8")
    p.add_argument(
        "--format",
        dest="fmt",
        help="format the callable implements: name[:key=value,...], e.g. log:bits=4,alpha=0.125; "
        "names: " + ", ".join([*_FORMAT_NAMES, *_PRESETS]),
    )
    p.add_argument(
        "--grid",
        help="instead of --format: comma-separated representable values (write --grid=-1,0,1 "
        "when the first value is negative)",
    )
    p.add_argument(
        "--odd-symmetric",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="require q(-x) == -q(x) (default: from the format, or a symmetric grid)",
    )
    p.add_argument(
        "--rounding",
        default="nearest",
        choices=[r.value for r in Rounding],
        help="rounding the callable claims (default nearest)",
    )
    p.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    p.add_argument("--max-examples", type=int, default=100, help="hypothesis examples per contract")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--contracts", help="comma-separated subset of: " + ", ".join(CONTRACTS))
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        fmt = parse_format(args.fmt) if args.fmt else None
        grid = None
        if args.grid:
            grid = [float(v) for v in args.grid.split(",") if v.strip()]
        q = _bind(_load(args.spec), fmt, Rounding(args.rounding))
        contracts = CONTRACTS
        if args.contracts:
            contracts = tuple(c.strip() for c in args.contracts.split(",") if c.strip())
        report = check_quantizer(
            q,
            fmt,
            grid=grid,
            rounding=args.rounding,
            odd_symmetric=args.odd_symmetric,
            dtype=args.dtype,
            contracts=contracts,
            max_examples=args.max_examples,
            seed=args.seed,
        )
    except (ValueError, ImportError, AttributeError) as e:
        print(f"lpfa check-quantizer: error: {e}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1
