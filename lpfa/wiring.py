"""Random matrices: initial forward weights and the feedback matrices of the learning channel.

Initial weights and fixed feedback are drawn on the host with a member's own numpy generator,
so they are the same whatever backend trains the member and whichever other members share its
ensemble. Matrices redrawn during training use the backend's generator. Every draw is made in
float64 from ``rng.random`` / ``rng.standard_normal`` (which numpy and CuPy generators share)
and then cast, so float32 and float64 runs start from the same numbers.
"""

import math

from lpfa.backend import get_xp
from lpfa.config import ChannelConfig, Dist

__all__ = [
    "draw",
    "draw_feedback",
    "draw_feedback_factors",
    "low_rank",
    "low_rank_factors",
    "orthogonal",
    "with_signs",
]


def draw(dist: Dist, shape: tuple[int, ...], scale: float, rng, dtype: str, *, nonzeros=None):
    """A random array of ``shape`` = (..., fan_out, fan_in) from ``dist`` with scale ``scale``.

    Parameters
    ----------
    dist : Dist
        ``uniform`` U[−s, s]; ``normal`` N(0, s²); ``glorot_normal`` N(0, s²·2/(fan_in+fan_out));
        ``glorot_uniform`` U[−a, a], a = s·√(6/(fan_in+fan_out)); ``sign`` ±s; ``bernoulli``
        s with probability n / fan_in, else 0; ``orthogonal`` s·Q, Q semi-orthogonal
        (:func:`orthogonal`).
    shape : tuple of int
        Leading axes, then rows (fan-out) and columns (fan-in).
    scale : float
        The scale s.
    rng : numpy.random.Generator or cupy.random.Generator
        Draws land on the generator's backend.
    dtype : str
        float32 or float64.
    nonzeros : float, optional
        n of ``bernoulli``.

    Returns
    -------
    array, shape ``shape``, dtype ``dtype``
    """
    fan_out, fan_in = shape[-2], shape[-1]
    if dist is Dist.UNIFORM:
        m = (2.0 * scale) * rng.random(shape) - scale
    elif dist is Dist.NORMAL:
        m = scale * rng.standard_normal(shape)
    elif dist is Dist.GLOROT_NORMAL:
        m = (scale * math.sqrt(2.0 / (fan_in + fan_out))) * rng.standard_normal(shape)
    elif dist is Dist.GLOROT_UNIFORM:
        a = scale * math.sqrt(6.0 / (fan_in + fan_out))
        m = (2.0 * a) * rng.random(shape) - a
    elif dist is Dist.SIGN:
        m = scale * (2.0 * (rng.random(shape) < 0.5) - 1.0)
    elif dist is Dist.BERNOULLI:
        if nonzeros is None:
            raise ValueError("dist=bernoulli needs nonzeros (expected non-zeros per sender)")
        m = scale * (rng.random(shape) < min(1.0, nonzeros / fan_in))
    elif dist is Dist.ORTHOGONAL:
        m = scale * orthogonal(rng.standard_normal(shape))
    else:  # an Enum member added without a branch here is a bug in lpfa
        raise NotImplementedError(dist)
    return m.astype(dtype, copy=False)


def orthogonal(g):
    """The Haar-random semi-orthogonal matrices of i.i.d. N(0, 1) draws ``g`` (..., n, m).

    Q of the QR decomposition of the taller orientation, its columns' signs fixed by
    sign(diag R) so that Q is uniformly distributed (Mezzadri 2007). Returns (..., n, m) with
    Q Qᵀ = I_n when n ≤ m, else Qᵀ Q = I_m.
    """
    xp = get_xp(g)
    wide = g.shape[-2] < g.shape[-1]
    a = g.swapaxes(-1, -2) if wide else g
    q, r = xp.linalg.qr(a)
    q = q * xp.sign(xp.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    return q.swapaxes(-1, -2) if wide else q


def low_rank_factors(m, rank: int):
    """The factors (Q, P) of the best rank-``rank`` approximation QP of ``m`` (..., n, k).

    Q = U_r Σ_r (..., n, r) and P = V_rᵀ (..., r, k) from the SVD of ``m`` (Eckart-Young), for
    ``rank`` < min(n, k).
    """
    xp = get_xp(m)
    u, s, vt = xp.linalg.svd(m, full_matrices=False)
    return u[..., :rank] * s[..., None, :rank], vt[..., :rank, :]


def low_rank(m, rank: int):
    """The best rank-``rank`` approximation of ``m`` (..., n, k) in Frobenius norm.

    C = Q P of :func:`low_rank_factors`; ``m`` itself when ``rank`` ≥ min(n, k).
    """
    if rank >= min(m.shape[-2:]):
        return m
    q, p = low_rank_factors(m, rank)
    return q @ p


def draw_feedback(cfg: ChannelConfig, shape: tuple[int, ...], rng, dtype: str, forward=None):
    """One feedback matrix of the channel ``cfg`` (storage orientation, see :class:`Channel`).

    Applies, in order: the distribution with its scale, the 1/√n normalisation of sparse 0/1
    matrices, the non-zero mean, the rank-r truncation (``feedback_rank``), the random removal
    of a fraction of entries, and sign congruence with ``forward`` (the forward weights the
    matrix stands in for, same shape). With ``feedback_from_init`` the matrix is a copy of
    ``forward`` and nothing is drawn.
    """
    if cfg.feedback_from_init:
        return forward.astype(dtype, copy=True)
    return _draw(cfg, shape, rng, forward, rank=True).astype(dtype, copy=False)


def draw_feedback_factors(cfg: ChannelConfig, shape: tuple[int, ...], rng, dtype: str):
    """Low-rank feedback as it is stored: the factors (Q, P) of :func:`draw_feedback`'s matrix.

    ``shape`` is (..., n_src, n_dst); Q is (..., n_src, r), P (..., r, n_dst), r =
    ``cfg.feedback_rank``, from the same draws as :func:`draw_feedback`. None when the channel
    is not low-rank or r ≥ min(n_src, n_dst) (then C is full rank and stored dense).
    """
    r = cfg.feedback_rank
    if r is None or r >= min(shape[-2:]):
        return None
    q, p = low_rank_factors(_draw(cfg, shape, rng, None, rank=False), r)
    return q.astype(dtype, copy=False), p.astype(dtype, copy=False)


def _draw(cfg: ChannelConfig, shape, rng, forward, *, rank: bool):
    """:func:`draw_feedback` in float64, with or without the rank-r truncation."""
    m = draw(
        cfg.feedback, shape, cfg.feedback_scale, rng, "float64", nonzeros=cfg.feedback_nonzeros
    )
    if cfg.feedback_normalize:
        m = m / math.sqrt(cfg.feedback_nonzeros)
    if cfg.feedback_mean:
        m = m + cfg.feedback_mean
    if rank and cfg.feedback_rank is not None:
        m = low_rank(m, cfg.feedback_rank)
    if cfg.feedback_keep < 1.0:
        m = m * (rng.random(shape) < cfg.feedback_keep)
    if cfg.congruent or cfg.track_signs:
        m = with_signs(m, forward)
    return m


def with_signs(m, forward):
    """|m| with the signs of ``forward`` (a zero weight counts as positive, so no magnitude is
    lost): sign congruence, and sign symmetry's tracking."""
    return abs(m) * ((forward >= 0) * 2.0 - 1.0)
