"""Random matrices: initial forward weights and the fixed feedback matrices of the channel.

All draws happen on the host with a member's own numpy generator, so a member's matrices are
the same whatever backend trains it and whichever other members share its ensemble.
"""

import math

import numpy as np

from lpfa.config import Dist

__all__ = ["draw"]


def draw(
    dist: Dist, shape: tuple[int, int], scale: float, rng: np.random.Generator, dtype: str
) -> np.ndarray:
    """One random matrix of ``shape`` = (fan_out, fan_in) from ``dist`` with scale ``scale``.

    Parameters
    ----------
    dist : Dist
        ``uniform`` U[−s, s]; ``normal`` N(0, s²); ``glorot_normal`` N(0, s²·2/(fan_in+fan_out));
        ``glorot_uniform`` U[−a, a], a = s·√(6/(fan_in+fan_out)).
    shape : (int, int)
        Rows (fan-out) and columns (fan-in); the Glorot scales are symmetric in the two.
    scale : float
        The scale s.
    rng : numpy.random.Generator
        The member's generator for this stream.
    dtype : str
        float32 or float64.

    Returns
    -------
    numpy.ndarray, shape ``shape``, dtype ``dtype``
    """
    fan_out, fan_in = shape
    if dist is Dist.UNIFORM:
        m = rng.uniform(-scale, scale, size=shape)
    elif dist is Dist.NORMAL:
        m = rng.normal(0.0, scale, size=shape)
    elif dist is Dist.GLOROT_NORMAL:
        m = rng.normal(0.0, scale * math.sqrt(2.0 / (fan_in + fan_out)), size=shape)
    elif dist is Dist.GLOROT_UNIFORM:
        a = scale * math.sqrt(6.0 / (fan_in + fan_out))
        m = rng.uniform(-a, a, size=shape)
    else:  # an Enum member added without a branch here is a bug in lpfa
        raise NotImplementedError(dist)
    return m.astype(dtype, copy=False)
