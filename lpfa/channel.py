"""The learning channel: how the output error reaches each hidden layer.

The channel is its own set of wires and synapses. For ``rbp`` and ``srbp`` its synapses are fixed
random feedback arrays; for ``bp`` it borrows the forward arrays read backwards (weight
transport); for ``top`` it carries nothing. Variants of the papers are values of the
configuration (:class:`lpfa.config.ChannelConfig`), not copies of this code.
"""

from collections.abc import Callable, Sequence

import numpy as np

from lpfa.backend import STREAM_FEEDBACK, member_rng
from lpfa.config import ChannelConfig, Rule
from lpfa.crossbar import Crossbar
from lpfa.wiring import draw

__all__ = ["Channel", "feedback_shapes"]


def feedback_shapes(rule: Rule, sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Shapes (n_source, n_hidden) of the feedback matrix of each hidden layer, bottom first.

    ``rbp``: layer h hears layer h+1, so its matrix has the shape of W^{h+1}. ``srbp``: every
    hidden layer hears the output layer directly (N_L, N_h). ``bp`` and ``top`` have none.
    """
    hidden = range(1, len(sizes) - 1)
    if rule is Rule.RBP:
        return [(sizes[h + 1], sizes[h]) for h in hidden]
    if rule is Rule.SRBP:
        return [(sizes[-1], sizes[h]) for h in hidden]
    return []


class Channel:
    """A learning channel for every member of an ensemble.

    Parameters
    ----------
    rule : Rule
        Topology.
    feedback : list of arrays, shape (E, n_source, n_hidden) each
        One fixed random matrix per hidden layer, bottom first (see :func:`feedback_shapes`).
        Stored as Bᵀ in Lillicrap et al.'s notation — the orientation of the forward array
        W^{h+1} it stands in for — so the channel computes ``r @ C`` exactly as backprop computes
        ``r @ W``: with C = W the two are the same operation on the same numbers.
    """

    def __init__(self, rule: Rule, feedback: Sequence = ()):
        expected = rule in (Rule.RBP, Rule.SRBP)
        if expected != bool(feedback):
            raise ValueError(f"rule={rule.value}: feedback matrices given={bool(feedback)}")
        self.rule = rule
        self.feedback = list(feedback)

    @classmethod
    def build(cls, cfg: ChannelConfig, sizes: Sequence[int], seeds: Sequence[int], dtype: str, xp):
        """Draw each member's feedback matrices from its own seed and move them to ``xp``."""
        shapes = feedback_shapes(cfg.rule, sizes)
        per_member = []
        for seed in seeds:
            rng = member_rng(seed, STREAM_FEEDBACK)
            per_member.append(
                [draw(cfg.feedback, s, cfg.feedback_scale, rng, dtype) for s in shapes]
            )
        mats = [xp.asarray(np.stack([m[k] for m in per_member])) for k in range(len(shapes))]
        return cls(cfg.rule, mats)

    def deliver(
        self,
        e,
        r_top,
        outputs: Sequence,
        layers: Sequence[Crossbar],
        fprime: Callable,
    ) -> list:
        """Error signals R^h of the hidden layers, bottom first (None where a layer does not learn).

        Parameters
        ----------
        e : array, shape (E, B, N_L)
            Output error T − O^L, what ``srbp`` sends straight down.
        r_top : array, shape (E, B, N_L)
            Error of the top layer's pre-activations (−∂E/∂S^L), what ``bp`` and ``rbp`` pass on.
        outputs : list of arrays, (E, B, N_h) each
            Outputs O^1 … O^{L−1} of the hidden layers.
        layers : list of Crossbar
            The forward arrays W^1 … W^L; only ``bp`` reads them (through ``transport``).
        fprime : callable
            f′ of the hidden layers from their outputs, ``fprime(O) -> array`` (None if f′ ≡ 1).

        Returns
        -------
        list of arrays (E, B, N_h) or None, length L − 1
            R^h = J^h ∘ f′(S^h), with J^h the signal the channel delivers to layer h.
        """
        n_hidden = len(layers) - 1
        deltas: list = [None] * n_hidden
        if self.rule is Rule.TOP:
            return deltas
        above = r_top
        for h in range(n_hidden - 1, -1, -1):
            if self.rule is Rule.BP:
                j = layers[h + 1].transport(above)
            elif self.rule is Rule.RBP:
                j = above @ self.feedback[h]
            else:  # Rule.SRBP
                j = e @ self.feedback[h]
            d = fprime(outputs[h])
            if d is not None:
                j *= d
            deltas[h] = above = j
        return deltas
