"""The learning channel: how the output error reaches each hidden layer.

The channel is its own set of wires and synapses. Its rule's declaration
(:data:`lpfa.rules.RULES`) says which layers send to which and how a signal is read on the way;
its feedback arrays are random (fixed, redrawn, sparse, congruent or adaptive) for the
random-feedback rules, or the forward arrays read backwards for the weight-transport rules.
Every variant of the papers is a value of :class:`lpfa.config.ChannelConfig`; this module has
one loop that serves them all.

Signals, top layer L down to 1 (Baldi et al. 2018, §2-3):

    J^h = Σ_{k ∈ sources(h)} read_{k→h}(signal_k)      what the channel delivers to layer h
    R^h = Q(g(J^h) ∘ mask^h) ∘ f′(S^h)                 its error signal (g: ``backward``,
                                                       mask: channel dropout, Q: error_format)

where ``signal_k`` is the output error e for a long-range (skip) connection from the output, and
R^k (J^k for ``sbp``) for a short-range one. Hidden layer h then updates
ΔW^h = η/B · Σ_b R^h_b ⊗ O^{h−1}_b, or with ``signal`` = sign / magnitude of R^h.

Conv layers (``model.conv``): J^h is delivered onto layer h's pooled maps (a random kernel bank
from the conv layer above, :class:`lpfa.conv.ConvFeedback`; a dense matrix from a dense sender
or, for SRBP, from the output, :class:`lpfa.conv.MapFeedback`; a dense sender's transposed read
is unflattened), then routed by the max-pool to each window's maximum; g, dropout, the
``error_format`` quantizer and f′ then act on the conv units before the pool.
"""

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lpfa.backend import STREAM_FEEDBACK, RuntimeRandom, get_xp, member_rng
from lpfa.config import Backward, ChannelConfig, Rule, Signal
from lpfa.crossbar import FeedbackArray  # re-exported: the channel's arrays
from lpfa.quant import DynamicScale, quantizer
from lpfa.rules import Carries, Delivery, sources, spec
from lpfa.wiring import draw, draw_feedback, draw_feedback_factors, with_signs

__all__ = ["Channel", "FactoredFeedback", "FeedbackArray", "Update", "sources"]


def _stacked(per_member: list, xp):
    """One feedback array of the ensemble from each member's host draw: a dense matrix, or the
    factors (Q, P) of low-rank feedback."""
    if isinstance(per_member[0], tuple):
        q, p = zip(*per_member, strict=True)
        return FactoredFeedback(xp.asarray(np.stack(q)), xp.asarray(np.stack(p)))
    return FeedbackArray(xp.asarray(np.stack(per_member)))


def _on_maps(fb, k: int, h: int, conv: Sequence):
    """The feedback array of connection k → h as a conv layer reads it: a kernel bank from conv
    layer k to the layer below, maps of conv layer h from a dense sender, else ``fb`` itself."""
    from lpfa.conv import ConvFeedback, MapFeedback

    if k <= len(conv) and h == k - 1:
        return ConvFeedback(fb.C, conv[k - 1][0])
    if h <= len(conv):
        return MapFeedback(fb.C, conv[h - 1][1])
    return fb


def _skip(k: int, h: int, L: int) -> bool:
    """True for a long-range connection: from the output to a layer below the top hidden one."""
    return k == L and h < L - 1


@dataclass
class Update:
    """A weight change computed whole by the channel (per-synapse feedback), not as an outer
    product: batch sums ``dW`` (E, N_h, N_{h−1}) and ``db`` (E, N_h), to be scaled by η/B."""

    dW: object
    db: object


def _hardtanh(j):
    return get_xp(j).clip(j, -1.0, 1.0)


def _relu(j):
    return get_xp(j).maximum(j, 0.0)


def _tanh(j):
    return get_xp(j).tanh(j)


def _sign(j):
    return get_xp(j).sign(j)


#: g of each :class:`lpfa.config.Backward`, applied to J^h (None: the identity, nothing computed)
_BACKWARD: dict[Backward, Callable | None] = {
    Backward.LINEAR: None,
    Backward.TANH: _tanh,
    Backward.RELU: _relu,
    Backward.SIGN: _sign,
    Backward.HARDTANH: _hardtanh,
}


class FactoredFeedback:
    """Low-rank feedback C = Q P stored as its two factors: a channel through r relay units.

    ``Q`` (E, n_src, r) takes the sender's signal to the r relays, ``P`` (E, r, n_dst) the relays
    to the receiving units; a read is the two products, (signal Q) P, so the channel has
    r·(n_src + n_dst) synapses instead of n_src·n_dst. ``C`` is the product, for diagnostics
    (angles, alignment); the factors are what the channel reads and the audit sees.
    """

    def __init__(self, Q, P):
        if Q.shape[:-2] != P.shape[:-2] or Q.shape[-1] != P.shape[-2]:
            raise ValueError(f"Q.shape={Q.shape}, P.shape={P.shape}: need (E, n, r), (E, r, m)")
        self.Q, self.P = Q, P

    @property
    def C(self):
        """The dense product Q P (E, n_src, n_dst), computed on demand (not stored)."""
        return self.Q @ self.P

    @property
    def rank(self) -> int:
        """The number r of relay units."""
        return self.Q.shape[-1]

    def read(self, signal):
        """Deliver ``signal`` (E, B, n_src) through the relays: (signal Q) P, (E, B, n_dst)."""
        return (signal @ self.Q) @ self.P

    def tick(self) -> None:
        """One training step has passed (fixed factors: nothing changes)."""

    def members(self, sl: slice) -> "FactoredFeedback":
        """The factors of members ``sl``, as views."""
        return FactoredFeedback(self.Q[sl], self.P[sl])


class Channel:
    """A learning channel for every member of an ensemble.

    Parameters
    ----------
    cfg : ChannelConfig
    n_layers : int
        Number of forward arrays L.
    feedback : dict (k, h) -> FeedbackArray
        One array per connection of the topology (random-feedback rules only).
    per_weight : list of arrays (E, N_L, N_h, N_{h−1} + 1), optional
        Per-synapse feedback of ``per_weight`` SRBP, one per hidden layer.
    rng : RuntimeRandom or generator, optional
        Runtime noise source on the backend (dropout, redrawn feedback, perturbations, stochastic
        rounding); :meth:`build` makes the ensemble's :class:`lpfa.backend.RuntimeRandom`.
    top : FeedbackArray, optional
        C^top (E, N_L, N_L) of ``top_feedback``: the top layer's random feedback.

    Attributes
    ----------
    spec : lpfa.rules.RuleSpec
        The declaration of the channel's rule: topology and delivery.
    adapting : bool
        Whether adaptive feedback (``adapt_lr``) learns in this step; the training loop sets it
        False after ``adapt_epochs`` epochs. True by default.
    on_feedback : callable ``(C, k, h) -> C`` or None
        Called with every feedback array C^{k→h} (E, N_k, N_h) the channel draws while it runs
        (``resample``: fresh arrays each minibatch), before it is used; what it returns is used
        instead. For
        observers (the hardware audit tags each new array); None by default.
    """

    def __init__(
        self, cfg: ChannelConfig, n_layers: int, feedback=None, per_weight=None, rng=None, top=None
    ):
        self.cfg = cfg
        self.error_q = quantizer(cfg.error_format, cfg.rounding, rng)
        self.update_q = quantizer(cfg.update_format, cfg.rounding, rng)
        if self.update_q is not None and self.update_q.fmt.dynamic_scale is DynamicScale.PER_TENSOR:
            raise ValueError(
                f"channel.update_format={cfg.update_format!r}: a per_tensor scale would pool the "
                "examples of a chunk of per-example updates; use per_row or a fixed scale"
            )
        self.rule = cfg.rule
        self.spec = spec(cfg.rule)
        self.n_layers = n_layers
        self.sources = sources(cfg, n_layers)
        self.feedback: dict[tuple[int, int], FeedbackArray] = dict(feedback or {})
        self.per_weight = per_weight
        self.rng = rng
        self.top = top
        self.adapting = True
        self._pending = None  # this step's signals, kept for adaptive feedback
        self._steps = 0  # training steps so far (the mirror phase's schedule)
        self.on_feedback: Callable | None = None
        wanted = {(k, h) for h, ks in enumerate(self.sources, 1) for k in ks}
        drawn_per_step = cfg.resample or cfg.per_weight
        if self.spec.random_feedback and set(self.feedback) != wanted and not drawn_per_step:
            raise ValueError(f"rule={cfg.rule.value}: feedback for {sorted(wanted)} expected")
        if cfg.top_feedback and top is None:
            raise ValueError("channel.top_feedback=true: the top feedback array C^top expected")

    @classmethod
    def backprop(cls, n_layers: int) -> "Channel":
        """A plain BP channel (used to measure how far a rule is from the gradient)."""
        return cls(ChannelConfig(rule=Rule.BP), n_layers)

    @classmethod
    def pseudobackprop(cls, n_layers: int) -> "Channel":
        """A plain pseudobackprop channel (Lillicrap et al. Fig. 4b-c)."""
        return cls(ChannelConfig(rule=Rule.PBP), n_layers)

    @classmethod
    def build(
        cls,
        cfg: ChannelConfig,
        sizes: Sequence[int],
        seeds: Sequence[int],
        dtype: str,
        xp,
        forward: Sequence[np.ndarray] = (),
        rng=None,
        conv: Sequence = (),
    ):
        """Draw each member's feedback from its own seed (host) and move it to ``xp``.

        ``conv`` holds (geometry, pooled shape) of each conv layer, bottom first (arrays 1 …
        len(conv)): a connection from conv layer k to the layer below it is a random kernel bank
        of W^k's shape (:class:`lpfa.conv.ConvFeedback`); one from a dense layer (or the output)
        to conv layer h lands on h's pooled maps (:class:`lpfa.conv.MapFeedback`), ``sizes[h]``
        being their flattened size.

        ``forward`` holds the host initial forward weights (E, N_h, N_{h−1}) for congruence and
        ``feedback_from_init``. The top layer's C^top (``top_feedback``) is drawn from
        ``feedback`` with its scale after every other array of a member, so switching it on
        leaves the others as they were.
        """
        L = len(sizes) - 1
        # per-synapse feedback replaces the per-neuron matrices
        edges = (
            []
            if cfg.per_weight
            else [(k, h) for h, ks in enumerate(sources(cfg, L), 1) for k in ks]
        )
        feedback, per_weight, top = {}, None, None
        random_feedback = spec(cfg.rule).random_feedback
        if random_feedback or cfg.top_feedback:
            stacks: dict[tuple[int, int], list] = {e: [] for e in edges if random_feedback}
            pw: list[list] = [[] for _ in range(L - 1)]
            tops = []
            for m, seed in enumerate(seeds):
                host = member_rng(seed, STREAM_FEEDBACK)  # this member's feedback, on the host
                for k, h in stacks:
                    paired = cfg.congruent or cfg.feedback_from_init or cfg.track_signs
                    fw = forward[k - 1][m] if paired else None
                    shape = (sizes[k], sizes[h])
                    if k <= len(conv) and h == k - 1:  # a kernel bank: (C_out, C_in·k·k)
                        shape = tuple(forward[k - 1].shape[1:])
                    factors = draw_feedback_factors(cfg, shape, host, dtype)
                    stacks[(k, h)].append(
                        draw_feedback(cfg, shape, host, dtype, fw) if factors is None else factors
                    )
                if cfg.per_weight:
                    for h in range(1, L):
                        shape = (sizes[L], sizes[h], sizes[h - 1] + 1)
                        pw[h - 1].append(draw_feedback(cfg, shape, host, dtype))
                if cfg.top_feedback:  # last, so the arrays above are the same with or without it
                    shape = (sizes[L], sizes[L])
                    tops.append(draw(cfg.feedback, shape, cfg.feedback_scale, host, dtype,
                                     nonzeros=cfg.feedback_nonzeros))  # fmt: skip
            if not cfg.resample and stacks:
                feedback = {e: _stacked(v, xp) for e, v in stacks.items()}
                feedback = {e: _on_maps(fb, *e, conv) for e, fb in feedback.items()}
            if cfg.per_weight:
                per_weight = [xp.asarray(np.stack(v)) for v in pw]
            if cfg.top_feedback:
                top = FeedbackArray(xp.asarray(np.stack(tops)))
        rng = RuntimeRandom(list(seeds), xp) if rng is None else rng
        return cls(cfg, L, feedback, per_weight, rng, top)

    def members(self, sl: slice) -> "Channel":
        """The channel of members ``sl``: its feedback arrays are views of this one's, so
        adaptive feedback learning in the view learns here (member threads,
        :class:`lpfa.network.MemberThreads`). It shares this channel's runtime generator."""
        view = copy.copy(self)
        view.feedback = {key: fb.members(sl) for key, fb in self.feedback.items()}
        view.top = None if self.top is None else self.top.members(sl)
        view.per_weight = None if self.per_weight is None else [p[sl] for p in self.per_weight]
        view._pending = None
        return view

    @contextmanager
    def observing(self) -> Iterator[None]:
        """Put the channel's state back after a block that only measures (see Network.observing).

        Delivering signals for a diagnostic may redraw feedback (``resample``) and keeps this step's
        signals for adaptive feedback; both are restored so the run continues as if unobserved.
        """
        feedback, pending = dict(self.feedback), self._pending
        try:
            yield
        finally:
            self.feedback, self._pending = feedback, pending

    # --- one step ------------------------------------------------------------------------------

    def _redraw(self, layers, sizes: Sequence[int], n_members: int, dtype) -> None:
        """Fresh feedback for this minibatch (``resample``), drawn on the backend."""
        for h, ks in enumerate(self.sources, 1):
            for k in ks:
                fw = layers[k - 1].W if self.cfg.congruent else None
                shape = (n_members, sizes[k], sizes[h])
                C = draw_feedback(self.cfg, shape, self.rng, str(dtype), fw)
                if self.on_feedback is not None:
                    C = self.on_feedback(C, k, h)
                self.feedback[(k, h)] = FeedbackArray(C)

    def deliver(self, net, outs: Sequence, t, e, r_top) -> list:
        """Error signals of the hidden layers, bottom first (None where a layer does not learn).

        Parameters
        ----------
        net : Network
            The forward arrays (read backwards only by the weight-transport rules), transfer
            functions and loss.
        outs : list of arrays
            [x, O^1, …, O^L] of the forward pass; x (B, N_0), O^h (E, B, N_h).
        t : array, shape (B, N_L)
            Targets.
        e : array, shape (E, B, N_L)
            Output error T − O^L, what long-range connections carry.
        r_top : array, shape (E, B, N_L)
            −∂E/∂S^L, what short-range connections from the output carry.

        Returns
        -------
        list, length L − 1, of arrays (E, B, N_h), :class:`Update` or None
        """
        L, cfg, layers = self.n_layers, self.cfg, net.layers
        deltas: list = [None] * (L - 1)
        if self.spec.delivery is Delivery.NONE:
            return deltas
        if self.spec.delivery is Delivery.PERTURBATION:
            return self._perturb(net, outs, t)
        if cfg.error_signal is Signal.SIGN:  # sign-DFA: one bit per output unit leaves the output
            xp = get_xp(e)
            e, r_top = xp.sign(e), xp.sign(r_top)
        if self.spec.carries is Carries.TARGET:  # DRTP: the target, whatever the output did
            e = r_top = get_xp(e).broadcast_to(t, e.shape)
        if self.per_weight is not None:
            return [self._per_weight_update(h, outs, e, net) for h in range(1, L)]
        if cfg.track_signs:
            self._track_signs(layers)
        if cfg.resample:
            self._redraw(layers, net.model.sizes, net.n_members, outs[-1].dtype)
        read = self._reads[self.spec.delivery]
        backward = _BACKWARD[cfg.backward]
        passed = {L: r_top}
        for h in range(L - 1, 0, -1):
            j = None
            on_maps = h <= getattr(net, "n_conv", 0)
            for k in self.sources[h - 1]:
                part = read(self, layers, k, h, e if _skip(k, h, L) else passed[k])
                part = net.to_maps(h, part) if on_maps else part
                j = part if j is None else j + part
            if on_maps:  # the pool routes each window's signal to its maximum's unit
                j = net.route(h, j, outs)
            if backward is not None:  # the channel unit's own transfer function
                j = backward(j)
            if cfg.dropout:
                keep = self.rng.random(j.shape) >= cfg.dropout
                j = j * (keep * (1.0 / (1.0 - cfg.dropout))).astype(j.dtype)
            if self.error_q is not None:  # what the neuron receives, before f′ and relaying
                j = self.error_q(j)
            if not cfg.fprime:
                d = None
            else:  # a conv layer's f′ is read at its (unpooled) units
                d = net.fprime_at(h, outs) if on_maps else net.fprime(outs[h])
            r = j if d is None else j * d
            passed[h] = r if self.spec.relays_derivative else j
            deltas[h - 1] = r
        if cfg.adapt_lr is not None and cfg.mirror_ratio is None and self.adapting:
            self._pending = (outs, e, passed)
        if cfg.signal is not Signal.FULL:
            xp = get_xp(r_top)
            f = xp.sign if cfg.signal is Signal.SIGN else xp.abs
            deltas = [f(r) for r in deltas]
        return deltas

    def _track_signs(self, layers) -> None:
        """Sign symmetry: every C^{k→h} takes the current signs of W^k, C ← |C| ∘ sign(W^k).

        A write into the feedback array (so an audit sees what it read: W's signs)."""
        for (k, _h), fb in self.feedback.items():
            fb.C[...] = with_signs(fb.C, layers[k - 1].W)

    # --- the deliveries of lpfa.rules.Delivery: what sender k's signal becomes at layer h -------

    def _transport(self, layers, k: int, h: int, signal):
        """W^kᵀ signal: the forward array of layer k read backwards (weight transport)."""
        return layers[k - 1].transport(signal)

    def _pseudo_inverse(self, layers, k: int, h: int, signal):
        """(W^k)⁺ signal (pseudobackprop)."""
        return layers[k - 1].transport(signal, pseudo_inverse=True)

    def _feedback(self, layers, k: int, h: int, signal):
        """C^{k→h} signal: the channel's own feedback array."""
        return self.feedback[(k, h)].read(signal)

    _reads: ClassVar[dict[Delivery, Callable]] = {
        Delivery.TRANSPORT: _transport,
        Delivery.PSEUDO_INVERSE: _pseudo_inverse,
        Delivery.FEEDBACK: _feedback,
    }

    def _per_weight_update(self, h: int, outs, e, net) -> Update:
        """ΔW_ij = Σ_b Σ_k c_kij e_bk f′_bi O_bj: every synapse hears its own projection of e.

        The bias is the synapse from a constant input 1 and has its own projection (last column).
        """
        xp = get_xp(e)
        d = net.fprime(outs[h]) if self.cfg.fprime else None
        C = self.per_weight[h - 1]  # (E, N_L, N_h, N_{h-1} + 1)
        pre = outs[h - 1]
        shape = (*e.shape[:2], C.shape[2])
        dW, db = 0, 0
        for k in range(C.shape[1]):
            post = xp.broadcast_to(e[..., k : k + 1], shape) if d is None else e[..., k : k + 1] * d
            dW = dW + C[:, k, :, :-1] * (post.transpose(0, 2, 1) @ pre)
            db = db + C[:, k, :, -1] * post.sum(axis=1)
        return Update(dW, db)

    def _perturb(self, net, outs, t) -> list:
        """Node perturbation: R^h = −(ℓ(S + ξ) − ℓ(S)) ξ^h / σ², one scalar per example."""
        sigma = self.cfg.perturbation
        noise = [(sigma * self.rng.standard_normal(o.shape)).astype(o.dtype) for o in outs[1:-1]]
        noisy = net.forward(outs[0], noise=noise)[-1]
        dl = net.example_loss(noisy, t) - net.example_loss(outs[-1], t)  # (E, B)
        gain = (-dl / sigma**2)[..., None]
        return [gain * n for n in noise]

    def top_signal(self, r_top):
        """The top layer's error signal R^L: −∂E/∂S^L (``r_top``, E × B × N_L) itself, or
        ``r_top`` · C^top with ``top_feedback`` (Baldi et al. §8)."""
        return r_top if self.top is None else self.top.read(r_top)

    def adapt(self, lr_scale: float) -> None:
        """ARBP / ASRBP: C_{k→h} += adapt_lr · η/B · signal_kᵀ O^h − η λ_C C, with this step's
        signals (nothing while :attr:`adapting` is False, nor with a mirror phase). With
        ``adapt_lr = 1`` and ``feedback_decay`` = the forward decay this is Kolen-Pollack: C gets
        the update and decay of the forward array it stands in for."""
        if self.cfg.adapt_lr is None or not self.adapting or self._pending is None:
            return
        outs, e, passed = self._pending
        L = self.n_layers
        for (k, h), fb in self.feedback.items():
            signal = e if _skip(k, h, L) else passed[k]
            fb.update(signal, outs[h], self.cfg.adapt_lr * lr_scale, self._decay(lr_scale, signal))
        self._pending = None

    def _decay(self, lr_scale: float, signal) -> float:
        """η_t · λ_C, computed as :meth:`lpfa.crossbar.Crossbar.update` computes η_t · λ."""
        lr = lr_scale * signal.shape[1]
        return lr * self.cfg.feedback_decay if self.cfg.feedback_decay else 0.0

    def mirror(self, net, lr_scale: float, n: int) -> int:
        """The weight mirror's phases due after this training step (``mirror_ratio``).

        In each phase, for every chained pair, n examples of noise ξ ~ N(0, σ²) (E, n, N_h) drive
        layer h, the forward array W^{h+1} reads them (its ordinary forward read, bias included,
        no transfer function), and C^{h+1→h} learns the outer products of what each of its
        synapses sees at its two ends: ΔC = adapt_lr · lr_scale · Σ_b y_b ⊗ ξ_b − η λ_C C, with
        E[ΔC] = adapt_lr · η · W^{h+1} σ² (Akrout et al. 2019, §3: "weight mirrors").

        Parameters
        ----------
        net : Network
        lr_scale : float
            η_t / B of the training step.
        n : int
            Noise examples per phase (the training minibatch size).

        Returns
        -------
        int
            The number of phases run (0 without ``mirror_ratio`` or while not adapting).
        """
        ratio = self.cfg.mirror_ratio
        t, self._steps = self._steps, self._steps + 1
        if ratio is None or not self.adapting:
            return 0
        # phases due by the end of step t: floor((t + 1)·ratio), exact for ratios like 1/4
        due = int((t + 1) * ratio + 1e-9) - int(t * ratio + 1e-9)
        sigma, rate = self.cfg.mirror_noise, self.cfg.adapt_lr * lr_scale
        for _ in range(due):
            for (k, _h), fb in self.feedback.items():
                layer = net.layers[k - 1]
                xi = self.rng.standard_normal((net.n_members, n, layer.shape[2]))
                xi = (sigma * xi).astype(layer.W.dtype)
                y = layer.read(xi)
                fb.update(y, xi, rate, self._decay(lr_scale, y))
        return due
