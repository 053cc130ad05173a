"""Per-member measures of a network: accuracy, loss, normalised squared error, alignment angles.

Every function takes stacked outputs (E, B, N) and returns one value per member, shape (E,), on
the arrays' own backend; callers move results to the host with :func:`lpfa.backend.to_numpy`.
"""

from lpfa.backend import get_xp
from lpfa.config import Loss

__all__ = ["accuracy", "angle_deg", "example_loss", "loss", "nse"]

_TINY = 1e-30


def accuracy(out, labels):
    """Fraction of examples whose largest output is the label.

    Parameters
    ----------
    out : array, shape (E, B, N_L)
    labels : array of int, shape (B,)

    Returns
    -------
    array, shape (E,)
    """
    return (out.argmax(axis=-1) == labels[None, :]).mean(axis=-1)


def example_loss(out, t, kind: Loss):
    """Loss of every example: ½‖T − O‖² (squared) or −Σ T log O (cross-entropy).

    Parameters
    ----------
    out, t : arrays, shape (E, B, N_L) and (B, N_L)

    Returns
    -------
    array, shape (E, B)
    """
    xp = get_xp(out, t)
    if kind is Loss.SQUARED:
        return 0.5 * ((t - out) ** 2).sum(axis=-1)
    return -(t * xp.log(xp.maximum(out, _TINY))).sum(axis=-1)


def loss(out, t, kind: Loss):
    """Mean loss per example, shape (E,) (see :func:`example_loss`)."""
    return example_loss(out, t, kind).mean(axis=-1)


def nse(out, t):
    """Normalised squared error Σ‖T − O‖² / Σ‖T‖² over the batch (1 for O = 0, 0 when exact).

    Parameters
    ----------
    out, t : arrays, shape (E, B, N_L) and (B, N_L)

    Returns
    -------
    array, shape (E,)
    """
    return ((t - out) ** 2).sum(axis=(-2, -1)) / (t**2).sum()


def angle_deg(a, b):
    """Mean over examples of the angle between the update vectors ``a`` and ``b``, in degrees.

    Lillicrap et al. (2016), Fig. 1e and 2b: the angle between the hidden-unit updates Δh_rule
    and Δh_BP, θ = arccos(aᵀb / (‖a‖‖b‖)), here per example and averaged over the batch; it lies
    in [0°, 180°] (the paper's formula takes |aᵀb| and folds it into [0°, 90°]). Examples where
    either vector is zero are left out; if all are, the result is NaN.

    Parameters
    ----------
    a, b : arrays, shape (E, B, N)

    Returns
    -------
    array, shape (E,)
    """
    xp = get_xp(a, b)
    total, count = angle_sums(a, b)
    return xp.where(count > 0, total / xp.maximum(count, 1), xp.nan)


def angle_sums(a, b):
    """(Σ θ over the examples where both vectors are non-zero, their count), each (E,): what
    :func:`angle_deg` averages, for a mean over several batches."""
    xp = get_xp(a, b)
    dot = (a * b).sum(axis=-1)
    norms = xp.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    valid = norms > 0
    cos = xp.clip(dot / xp.where(valid, norms, 1.0), -1.0, 1.0)
    theta = xp.degrees(xp.arccos(cos))
    return xp.where(valid, theta, 0.0).sum(axis=-1), valid.sum(axis=-1)
