"""A network of crossbar arrays with its learning channel, and one training step.

Shapes: E ensemble members, B examples per minibatch, N_h units in layer h. The input is shared
by all members, (B, N_0); every other signal is (E, B, N_h).
"""

from collections.abc import Sequence

import numpy as np

from lpfa.backend import STREAM_INIT, get_xp, member_rng
from lpfa.channel import Channel
from lpfa.config import Activation, Loss, ModelConfig, Rule, RunConfig
from lpfa.crossbar import Crossbar
from lpfa.wiring import draw

__all__ = ["Network", "activate", "derivative"]


def activate(kind: Activation, S):
    """Apply f in place to the pre-activations ``S`` (E, B, N) and return them."""
    xp = get_xp(S)
    if kind is Activation.LINEAR:
        return S
    if kind is Activation.TANH:
        return xp.tanh(S, out=S)
    if kind is Activation.LOGISTIC:
        # 1/(1+exp(-S)) = (1 + tanh(S/2)) / 2, which never overflows
        S *= 0.5
        xp.tanh(S, out=S)
        S += 1.0
        S *= 0.5
        return S
    if kind is Activation.RELU:
        return xp.maximum(S, 0, out=S)
    if kind is Activation.SOFTMAX:
        S -= S.max(axis=-1, keepdims=True)
        xp.exp(S, out=S)
        S /= S.sum(axis=-1, keepdims=True)
        return S
    raise NotImplementedError(kind)


def derivative(kind: Activation, out):
    """f′(S) computed from the output ``out`` = f(S); None when f′ ≡ 1 (linear units)."""
    if kind is Activation.LINEAR:
        return None
    if kind is Activation.TANH:
        return 1.0 - out * out
    if kind is Activation.LOGISTIC:
        return out * (1.0 - out)
    if kind is Activation.RELU:
        return (out > 0).astype(out.dtype)
    raise NotImplementedError(f"f' of {kind.value} is not used by any learning rule")


class Network:
    """Forward arrays W^1 … W^L, their transfer functions, a loss and a learning channel.

    Parameters
    ----------
    layers : list of Crossbar
        Bottom first; all with the same ensemble size E.
    channel : Channel
        How the output error reaches the hidden layers.
    model : ModelConfig
        Transfer functions and loss.
    """

    def __init__(self, layers: Sequence[Crossbar], channel: Channel, model: ModelConfig):
        self.layers = list(layers)
        self.channel = channel
        self.model = model
        self.xp = self.layers[0].xp
        # the top layer's error is e itself when the loss is matched to the output function
        self._matched = (model.output, model.loss) in {
            (Activation.SOFTMAX, Loss.CROSS_ENTROPY),
            (Activation.LOGISTIC, Loss.CROSS_ENTROPY),
            (Activation.LINEAR, Loss.SQUARED),
        }

    @classmethod
    def build(cls, cfg: RunConfig, xp=np) -> "Network":
        """Draw each member's initial weights and feedback from its own seed, on backend ``xp``."""
        m = cfg.model
        sizes = m.sizes
        per_member = []
        for seed in cfg.seeds:
            rng = member_rng(seed, STREAM_INIT)
            per_member.append(
                [
                    draw(m.init, (sizes[h + 1], sizes[h]), m.init_scale, rng, m.dtype)
                    for h in range(m.n_layers)
                ]
            )
        layers = []
        for h in range(m.n_layers):
            W = xp.asarray(np.stack([w[h] for w in per_member]))
            layers.append(Crossbar(W, xp.zeros(W.shape[:2], dtype=m.dtype)))
        channel = Channel.build(cfg.channel, sizes, cfg.seeds, m.dtype, xp)
        return cls(layers, channel, m)

    @property
    def n_members(self) -> int:
        """Size E of the ensemble axis."""
        return self.layers[0].shape[0]

    def forward(self, x) -> list:
        """Outputs of every layer for input ``x`` (B, N_0): [x, O^1, …, O^L], O^h (E, B, N_h)."""
        outs = [x]
        last = len(self.layers) - 1
        for h, layer in enumerate(self.layers):
            kind = self.model.output if h == last else self.model.hidden
            outs.append(activate(kind, layer.read(outs[-1])))
        return outs

    def top_error(self, e, out):
        """−∂E/∂S^L from the output error e = T − O^L: e for matched loss/output, else e ∘ f′."""
        if self._matched:
            return e
        return e * derivative(self.model.output, out)

    def deltas(self, outs: list, t, channel: Channel | None = None) -> list:
        """Error signals R^1 … R^L of every layer for a forward pass ``outs`` and targets ``t``.

        ``channel`` defaults to the network's own; diagnostics pass a backprop channel here to
        measure what BP would have sent on the same forward pass.
        """
        channel = self.channel if channel is None else channel
        e = t - outs[-1]
        r_top = self.top_error(e, outs[-1])
        hidden = channel.deliver(
            e, r_top, outs[1:-1], self.layers, lambda out: derivative(self.model.hidden, out)
        )
        return [*hidden, r_top]

    def step(self, x, t, lr: float, *, weight_decay: float = 0.0, momentum: float = 0.0):
        """One minibatch SGD step on the mean loss; returns the outputs O^L (E, B, N_L) before it.

        Parameters
        ----------
        x : array, shape (B, N_0)
        t : array, shape (B, N_L)
            Targets (one-hot for classification).
        lr : float
            Learning rate η of this update.
        """
        outs = self.forward(x)
        scale = lr / x.shape[0]
        for layer, R, pre in zip(self.layers, self.deltas(outs, t), outs[:-1], strict=True):
            if R is not None:
                layer.update(R, pre, scale, weight_decay=weight_decay, momentum=momentum)
        return outs[-1]

    def backprop_channel(self) -> Channel:
        """A BP channel over the same arrays, for measuring how far a rule is from the gradient."""
        return Channel(Rule.BP)
