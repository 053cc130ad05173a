"""Alignment diagnostics: how the learning channel's signals relate to backprop's.

Measured on a probe batch, per hidden layer h and per member (Lillicrap et al. 2016):

- ``angle_h``: angle between the rule's error signal R^h and backprop's on the same forward
  pass (Fig. 1e, 2b);
- ``angle_pbp_h``: the same against pseudobackprop, Δh = W⁺ e (Fig. 4b-c);
- ``angle_wb_h``: angle between vec(W^{h+1}) and vec(C^{h+1}) where layer h hears layer h+1
  through a feedback matrix (C is stored as Bᵀ, so this is W ∠ Bᵀ);
- ``angle_wbpinv_h``: angle between vec(W^{h+1}) and vec(B⁺), the Moore-Penrose pseudo-inverse
  of Lillicrap et al.'s B = Cᵀ (N_h × N_{h+1}), which has W's shape: 0° when W = B⁺, i.e. when
  the forward array undoes the feedback (W B = I for N_{h+1} ≤ N_h), the pseudobackprop
  condition under which B sends W⁺'s hidden changes (Lillicrap et al. Fig. 4, Suppl. Proof 2;
  the blog post: "forward weights come to resemble the pseudo-inverse of feedback weights, more
  than they come to resemble the transpose");
- ``ewbe_pos``: fraction of examples with eᵀ W B e > 0 at the top hidden layer (eq. 1: the
  hidden change the channel asks for moves the output along the error).

Values are NaN where a quantity does not exist (no feedback matrix, a frozen layer, a change
computed per synapse).
"""

import numpy as np

from lpfa import metrics
from lpfa.backend import get_xp, to_numpy
from lpfa.channel import Channel

__all__ = ["alignment", "pinv_feedback", "vector_angle_deg"]


def vector_angle_deg(a, b):
    """Angle (°) between vec(a[m]) and vec(b[m]) for every member m; a, b shaped (E, ...)."""
    xp = get_xp(a, b)
    E = a.shape[0]
    a, b = a.reshape(E, -1), b.reshape(E, -1)
    cos = (a * b).sum(-1) / xp.maximum(xp.sqrt((a * a).sum(-1) * (b * b).sum(-1)), 1e-300)
    return xp.degrees(xp.arccos(xp.clip(cos, -1.0, 1.0)))


def pinv_feedback(C):
    """B⁺ for feedback stored as C = Bᵀ (E, n_src, n_dst): the pseudo-inverse of B = Cᵀ
    (E, n_dst, n_src), shape (E, n_src, n_dst) like C and like the forward array it stands in
    for; B⁺ = (C⁺)ᵀ."""
    xp = get_xp(C)
    return xp.linalg.pinv(C).transpose(0, 2, 1)


def alignment(net, x, t) -> dict[str, np.ndarray]:
    """All diagnostics on the probe batch ``x`` (B, N_0), ``t`` (B, N_L): name -> (E,) array.

    Observes only: runs inside :meth:`lpfa.network.Network.observing`, so its random draws
    (dropout, redrawn feedback, stochastic rounding) come from the diagnostic stream and the run
    trains exactly as it would unmeasured.
    """
    with net.observing():
        return _alignment(net, x, t)


def _alignment(net, x, t) -> dict[str, np.ndarray]:
    L = len(net.layers)
    E = net.n_members
    nan = np.full(E, np.nan)
    outs = net.forward(x)
    rule = net.deltas(outs, t)[:-1]
    bp = net.deltas(outs, t, Channel.backprop(L))[:-1]
    pbp = net.deltas(outs, t, Channel.pseudobackprop(L))[:-1]
    res: dict[str, np.ndarray] = {}
    for h in range(1, L):
        r = rule[h - 1]
        usable = r is not None and not hasattr(r, "dW")
        res[f"angle_{h}"] = to_numpy(metrics.angle_deg(r, bp[h - 1])) if usable else nan
        res[f"angle_pbp_{h}"] = to_numpy(metrics.angle_deg(r, pbp[h - 1])) if usable else nan
    for h in range(1, L):
        fb = net.channel.feedback.get((h + 1, h))
        W = net.layers[h].W
        res[f"angle_wb_{h}"] = nan if fb is None else to_numpy(vector_angle_deg(W, fb.C))
        res[f"angle_wbpinv_{h}"] = (
            nan if fb is None else to_numpy(vector_angle_deg(W, pinv_feedback(fb.C)))
        )
    top = net.channel.feedback.get((L, L - 1))
    if top is None:
        res["ewbe_pos"] = nan
    else:
        e = t - outs[-1]
        moved = (e @ top.C) @ net.layers[-1].W.transpose(0, 2, 1)  # (W B e)ᵀ per example
        res["ewbe_pos"] = to_numpy(((moved * e).sum(-1) > 0).mean(-1))
    return res
