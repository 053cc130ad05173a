"""Exact references for the quantizers: eq. 19 of Baldi et al. (2018) as the paper writes it.

A reference is the formula evaluated plainly, in wider arithmetic, with none of the bit-level
tricks of :mod:`lpfa.quant_kernels`: the fast path must equal it bit for bit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["log_reference"]


def log_reference(
    x: np.ndarray, bits: int, alpha: float, flush_to_zero: bool = False
) -> np.ndarray:
    """Eq. 19 written out, evaluated in float64 after y = x / alpha in x's dtype.

    For float16 and float32 input this is exact: no such float has log2|y| within 2e-8 of a
    half-integer, far above float64's error. For float64 input it is not exact within about 1e-15
    (relative) of the boundaries alpha * 2^k * sqrt(2), where float64's log2 can return k + 1/2 and
    ``rint``'s ties-to-even decides; :func:`lpfa.quant.quantize` decides those exactly.

    Parameters
    ----------
    x : numpy.ndarray, float16, float32 or float64
    bits, alpha, flush_to_zero
        The fields of :class:`lpfa.quant.LogFormat` (a fixed alpha).

    Returns
    -------
    numpy.ndarray, x's shape and dtype
    """
    a = x.dtype.type(alpha)
    with np.errstate(all="ignore"):
        y = (x / a).astype(np.float64)
        e = np.rint(np.log2(np.abs(y)))
        q = np.exp2(np.clip(e, -bits + 1, 0))
        if flush_to_zero:
            q = np.where(e < -bits + 1, 0.0, q)
        return (float(a) * np.sign(y) * q).astype(x.dtype)
