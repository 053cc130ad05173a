"""Similarity of learned factors: principal angles, subspace overlap, linear CKA, and alignment.

Every function takes arrays with any leading (ensemble) axes, works on host float64 copies (they
observe a run, never change it) and returns one value per leading index. The matrices compared
are the trailing two axes: a factor ``A`` (…, n, p) is read as p vectors in R^n (its columns).
"""

from __future__ import annotations

import numpy as np

from lpfa.backend import to_numpy

__all__ = ["alignment_deg", "linear_cka", "principal_angles_deg", "subspace_overlap"]


def _host_pair(A, B, what: str) -> tuple[np.ndarray, np.ndarray]:
    A = np.asarray(to_numpy(A), dtype=np.float64)
    B = np.asarray(to_numpy(B), dtype=np.float64)
    if A.ndim < 2 or B.ndim < 2 or A.shape[:-1] != B.shape[:-1]:
        raise ValueError(
            f"A.shape={A.shape}, B.shape={B.shape}: {what} need (..., n, p) and (..., n, q) "
            "with the same leading axes and n"
        )
    return A, B


def principal_angles_deg(A, B) -> np.ndarray:
    """Principal angles between the column spaces of ``A`` and ``B``, in degrees, ascending.

    Parameters
    ----------
    A : array, shape (..., n, p)
    B : array, shape (..., n, q)

    Returns
    -------
    array, shape (..., min(p, q))
        θ_1 ≤ … ≤ θ_min(p,q) in [0°, 90°]; cos θ_i are the singular values of Q_Aᵀ Q_B for
        orthonormal bases Q_A, Q_B (Björck & Golub 1973, via ``scipy.linalg.subspace_angles``,
        which stays accurate for small angles). 0° along a shared direction, 90° along one
        orthogonal to the other space.
    """
    from scipy.linalg import subspace_angles

    A, B = _host_pair(A, B, "principal angles")
    lead = A.shape[:-2]
    out = np.empty((*lead, min(A.shape[-1], B.shape[-1])))
    for i in np.ndindex(*lead):
        out[i] = np.degrees(subspace_angles(A[i], B[i]))[::-1]
    return out


def subspace_overlap(A, B) -> np.ndarray:
    """Mean squared cosine of the principal angles: ‖Q_Aᵀ Q_B‖²_F / min(p, q), in [0, 1].

    1 when the smaller column space lies in the other, 0 when they are orthogonal. Two
    independent uniformly random subspaces of dimensions p ≤ q in R^n have expected overlap q/n
    (E[Q_Aᵀ P_B Q_A] = (q/n)·I), the chance level to compare a measurement with.

    Parameters
    ----------
    A : array, shape (..., n, p)
    B : array, shape (..., n, q)

    Returns
    -------
    array, shape (...)
    """
    theta = np.radians(principal_angles_deg(A, B))
    return (np.cos(theta) ** 2).mean(axis=-1)


def linear_cka(A, B) -> np.ndarray:
    """Linear centred kernel alignment of two representations of the same n items (rows).

    CKA(A, B) = ‖B̃ᵀÃ‖²_F / (‖ÃᵀÃ‖_F ‖B̃ᵀB̃‖_F) with Ã, B̃ the column-centred matrices (Kornblith
    et al. 2019, eq. for linear HSIC); in [0, 1], invariant to orthogonal transforms and
    isotropic scaling of either representation's features, 1 for identical representations.

    Parameters
    ----------
    A : array, shape (..., n, p)
        Row i is item i's p features (for a factor Z (n × r): unit i's r loadings).
    B : array, shape (..., n, q)

    Returns
    -------
    array, shape (...); NaN where a centred matrix is zero.
    """
    A, B = _host_pair(A, B, "linear CKA")
    A = A - A.mean(axis=-2, keepdims=True)
    B = B - B.mean(axis=-2, keepdims=True)
    cross = (np.swapaxes(B, -1, -2) @ A) ** 2
    gram_a = np.linalg.norm(np.swapaxes(A, -1, -2) @ A, axis=(-2, -1))
    gram_b = np.linalg.norm(np.swapaxes(B, -1, -2) @ B, axis=(-2, -1))
    denom = gram_a * gram_b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, cross.sum(axis=(-2, -1)) / denom, np.nan)


def alignment_deg(A, B) -> np.ndarray:
    """Angle between two matrices (or vectors) read as vectors: arccos(⟨A, B⟩ / (‖A‖‖B‖)), in
    degrees.

    The alignment of a factor with the feedback matrix that stands in for it (Lillicrap et al.
    2016's angle between W and Bᵀ; Garg & Vempala's Z and C; Song et al.'s v and b). In
    [0°, 180°]: 0° aligned, 90° unrelated; NaN where either is zero.

    Parameters
    ----------
    A, B : arrays, shape (..., n, p), the same
        Vectors are (..., 1, n) or (..., n, 1).

    Returns
    -------
    array, shape (...)
    """
    A, B = _host_pair(A, B, "alignment")
    if A.shape != B.shape:
        raise ValueError(f"A.shape={A.shape}, B.shape={B.shape}: alignment needs equal shapes")
    dot = (A * B).sum(axis=(-2, -1))
    norms = np.sqrt((A * A).sum(axis=(-2, -1)) * (B * B).sum(axis=(-2, -1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / norms, np.nan)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
