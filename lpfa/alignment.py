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


def alignment(net, x, t, chunk: int | None = None) -> dict[str, np.ndarray]:
    """All diagnostics on the probe batch ``x`` (B, N_0), ``t`` (B, N_L): name -> (E,) array.

    Observes only: runs inside :meth:`lpfa.network.Network.observing`, so its random draws
    (dropout, redrawn feedback, stochastic rounding) come from the diagnostic stream and the run
    trains exactly as it would unmeasured. ``chunk``: examples per forward pass (default all);
    the per-example means are summed over chunks, so the memory is bounded by the chunk and the
    result does not depend on it (beyond rounding, and the diagnostic draws' shapes).
    """
    with net.observing():
        return _alignment(net, x, t, x.shape[0] if chunk is None else max(1, int(chunk)))


def _alignment(net, x, t, chunk: int) -> dict[str, np.ndarray]:
    L = len(net.layers)
    E = net.n_members
    nan = np.full(E, np.nan)
    top = net.channel.feedback.get((L, L - 1))
    sums: dict[str, tuple] = {}  # key -> (Σ, count) over the chunks; None: not defined

    def add(key, total, count):
        if key not in sums or sums[key] is not None:
            old = sums.get(key, (0, 0))
            sums[key] = (old[0] + total, old[1] + count)

    for i in range(0, x.shape[0], chunk):
        xb, tb = x[i : i + chunk], t[i : i + chunk]
        outs = net.forward(xb)
        rule = net.deltas(outs, tb)[:-1]
        bp = net.deltas(outs, tb, Channel.backprop(L))[:-1]
        pbp = net.deltas(outs, tb, Channel.pseudobackprop(L))[:-1]
        for h in range(1, L):
            r = rule[h - 1]
            if r is None or hasattr(r, "dW"):
                sums[f"angle_{h}"] = sums[f"angle_pbp_{h}"] = None
                continue
            add(f"angle_{h}", *metrics.angle_sums(r, bp[h - 1]))
            add(f"angle_pbp_{h}", *metrics.angle_sums(r, pbp[h - 1]))
        if top is not None:
            e = tb - outs[-1]
            moved = (e @ top.C) @ net.layers[-1].W.transpose(0, 2, 1)  # (W B e)ᵀ per example
            add("ewbe_pos", ((moved * e).sum(-1) > 0).sum(-1), e.shape[-2])
    res: dict[str, np.ndarray] = {}
    for h in range(1, L):
        for key in (f"angle_{h}", f"angle_pbp_{h}"):
            s = sums.get(key)
            if s is None:
                res[key] = nan
            else:
                total, count = s
                xp = get_xp(total)  # the mean on the device: one transfer per diagnostic
                res[key] = to_numpy(xp.where(count > 0, total / xp.maximum(count, 1), xp.nan))
    for h in range(1, L):
        fb = net.channel.feedback.get((h + 1, h))
        W = net.layers[h].W
        res[f"angle_wb_{h}"] = nan if fb is None else to_numpy(vector_angle_deg(W, fb.C))
        res[f"angle_wbpinv_{h}"] = (
            nan if fb is None else to_numpy(vector_angle_deg(W, pinv_feedback(fb.C)))
        )
    if top is None:
        res["ewbe_pos"] = nan
    else:
        total, count = sums["ewbe_pos"]
        res["ewbe_pos"] = to_numpy(total) / count
    return res
