"""A network of crossbar arrays with its learning channel, and one training step.

Shapes: E ensemble members, B examples per minibatch, N_h units in layer h. The input is shared
by all members, (B, N_0); every other signal is (E, B, N_h).

A net with ``model.conv`` has convolutional arrays (:class:`lpfa.conv.ConvArray`) below the
dense ones: conv → f → max-pool → … → flatten → dense. A conv layer's output O^h is its pooled
maps (E, B, C, H, W); its error signal R^h lives on the units before the pool (the conv
array's outputs), where the channel's signal arrives routed by the pool to each window's
maximum (see :meth:`Network.route`).
"""

import contextvars
import itertools
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
from threadpoolctl import ThreadpoolController

from lpfa import metrics
from lpfa.backend import STREAM_INIT, RuntimeRandom, get_xp, member_rng
from lpfa.channel import Channel, Update
from lpfa.config import Activation, Loss, ModelConfig, RunConfig, conv_shapes
from lpfa.conv import ConvArray, MaxPool, flatten, unflatten
from lpfa.crossbar import Crossbar
from lpfa.devices import ArrayDevice
from lpfa.quant import quantizer
from lpfa.wiring import draw

__all__ = ["MemberThreads", "Network", "activate", "derivative"]


def activate(kind: Activation, S, *, exponent: float = 1.0):
    """Apply f in place to the pre-activations ``S`` (E, B, N) and return them.

    ``exponent`` is μ of ``power`` units: f(S) = sign(S)·|S|^μ (odd, so S ≤ 0 is defined).
    """
    xp = get_xp(S)
    if kind is Activation.LINEAR:
        return S
    if kind is Activation.POWER:
        sign = xp.sign(S)
        xp.abs(S, out=S)
        S **= exponent
        S *= sign
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


def derivative(kind: Activation, out, *, exponent: float = 1.0):
    """f′(S) computed from the output ``out`` = f(S); None when f′ ≡ 1 (linear units).

    ``power`` units: f′ = μ|S|^(μ−1) = μ|out|^((μ−1)/μ), μ = ``exponent`` (at S = 0 this is
    +inf for μ < 1 and 0 for μ > 1).
    """
    if kind is Activation.LINEAR:
        return None
    if kind is Activation.POWER:
        return exponent * get_xp(out).abs(out) ** ((exponent - 1.0) / exponent)
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
    random : RuntimeRandom, optional
        The run's runtime noise source (shared by the channel and the forward-path quantizers),
        switched to its diagnostic stream by :meth:`observing`.
    """

    def __init__(
        self,
        layers: Sequence[Crossbar],
        channel: Channel,
        model: ModelConfig,
        random: RuntimeRandom | None = None,
        pools: Sequence[MaxPool | None] = (),
    ):
        self.layers = list(layers)
        self.channel = channel
        self.model = model
        self.random = random
        self.xp = self.layers[0].xp
        #: conv layers (the lowest arrays, ConvArray) and the max-pool after each (or None)
        self.n_conv = sum(isinstance(a, ConvArray) for a in self.layers)
        self.pools = list(pools) or [None] * self.n_conv
        if any(not isinstance(a, ConvArray) for a in self.layers[: self.n_conv]):
            raise ValueError("conv layers must be the lowest arrays, below every dense one")
        if len(self.pools) != self.n_conv:
            raise ValueError(f"pools: need one (MaxPool or None) per conv layer ({self.n_conv})")
        # a pooled conv output O^h -> (O^h, f(S^h) before pooling, the maxima's taps), for the
        # channel's routing and f′; the last few forward passes are kept
        self._unpooled: OrderedDict = OrderedDict()
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
        per_member, masks = [], []
        keep = m.weight_keep if isinstance(m.weight_keep, tuple) else (m.weight_keep,) * m.n_layers
        for seed in cfg.seeds:
            rng = member_rng(seed, STREAM_INIT)
            shapes = list(m.array_shapes)  # (C_out, C_in·k·k) of a kernel bank: fan-in C_in·k·k
            per_member.append([draw(m.init, s, m.init_scale, rng, m.dtype) for s in shapes])
            if min(keep) < 1.0:  # every array draws its mask, so one keep's stream is fixed
                masks.append([rng.random(s) < k for s, k in zip(shapes, keep, strict=True)])
        host = [np.stack([w[h] for w in per_member]) for h in range(m.n_layers)]
        rng = RuntimeRandom(cfg.seeds, xp)
        path = {
            f"{kind}_q": quantizer(getattr(m, f"{kind}_format"), m.rounding, rng)
            for kind in ("input", "output", "weight")
        }
        path["bias"] = m.bias
        maps = conv_shapes(m.input_shape, m.conv) if m.conv else []
        layers, pools, geoms = [], [], []
        for h in range(m.n_layers):
            mask = xp.asarray(np.stack([k[h] for k in masks])) if keep[h] < 1.0 else None
            W = xp.asarray(host[h])
            dev = None
            if m.device is not None:  # the forward array (0, h + 1) of the device streams
                dev = ArrayDevice(m.device, W.shape, cfg.seeds, (0, h + 1), m.dtype, xp, rng)
            b = xp.zeros(W.shape[:2], dtype=m.dtype)
            if h < m.n_conv:
                c, (shape, mapped, _) = m.conv[h], maps[h]
                conv = ConvArray(W, b, mask, in_shape=shape, kernel=c.kernel, stride=c.stride,
                                 padding=c.padding, device=dev, **path)  # fmt: skip
                pool = None
                if c.pool_kernel is not None:
                    pool = MaxPool(mapped, c.pool_kernel, c.pool_stride, c.pool_padding)
                layers.append(conv)
                pools.append(pool)
                geoms.append((conv.geometry, pool.out_shape if pool else mapped))
            else:
                layers.append(Crossbar(W, b, mask, device=dev, **path))
        channel = Channel.build(
            cfg.channel, m.layer_sizes, cfg.seeds, m.dtype, xp, forward=host, rng=rng, conv=geoms
        )
        if cfg.channel.device is not None:  # feedback arrays (1, k, h); C^top is (2,)
            arrays = [((1, k, h), fb) for (k, h), fb in sorted(channel.feedback.items())]
            arrays += [((2,), channel.top)] if channel.top is not None else []
            for key, fb in arrays:
                dev = ArrayDevice(cfg.channel.device, fb.C.shape, cfg.seeds, key, m.dtype, xp, rng)
                fb.attach(dev)
        return cls(layers, channel, m, random=rng, pools=pools)

    @contextmanager
    def observing(self) -> Iterator[None]:
        """A block that measures the network without changing its run.

        Inside it, every random draw (dropout masks, redrawn feedback, perturbations, stochastic
        rounding on any signal path) comes from the diagnostic stream, and the channel's state
        (feedback arrays, the pending signals of adaptive feedback) is put back when it ends.
        Evaluation and the alignment diagnostics run inside it.
        """
        with self.channel.observing():
            if self.random is None:
                yield
            else:
                with self.random.observing():
                    yield

    @property
    def n_members(self) -> int:
        """Size E of the ensemble axis."""
        return self.layers[0].shape[0]

    def forward(self, x, noise: Sequence | None = None) -> list:
        """Outputs of every layer for input ``x`` (B, N_0): [x, O^1, …, O^L], O^h (E, B, N_h).

        ``noise`` (node perturbation) is added to the hidden pre-activations S^1 … S^{L−1}.

        With conv layers, x may be rows (B, C·H·W) or images (B, C, H, W) (or per member, E
        first); outs[0] is then the images, and O^h of a conv layer h its pooled maps
        (E, B, C, H', W') (f before the max-pool); the first dense layer reads them flattened.
        """
        if self.n_conv:
            shape = self.layers[0].in_shape
            if tuple(x.shape[-3:]) != shape:
                x = unflatten(x, shape)
        outs = [x]
        last = len(self.layers) - 1
        for h, layer in enumerate(self.layers):
            S = layer.read(self.input_of(h + 1, outs[-1]))
            if noise is not None and h < last:
                S += noise[h]
            kind = self.model.output if h == last else self.model.hidden
            out = activate(kind, S, exponent=self.model.power_exponent)
            if h < self.n_conv and self.pools[h] is not None:
                unpooled, (out, arg) = out, self.pools[h].forward(out)
                self._unpooled[id(out)] = (out, unpooled, arg)
                while len(self._unpooled) > 4 * self.n_conv:  # the last few passes
                    self._unpooled.popitem(last=False)
            outs.append(out)
        return outs

    def input_of(self, h: int, below):
        """What array h (1 = the lowest) reads of the output ``below`` of layer h − 1: the
        first dense layer above conv layers reads their maps flattened."""
        return flatten(below) if h == self.n_conv + 1 and self.n_conv else below

    def to_maps(self, h: int, j):
        """A signal delivered to conv layer h's output, as its pooled maps (E, B, C, H', W')
        (a dense sender's rows are unflattened)."""
        return j if j.ndim == 5 else unflatten(j, self.channel_maps(h))

    def channel_maps(self, h: int) -> tuple[int, int, int]:
        """(C, H', W') of conv layer h's output after its pool."""
        pool = self.pools[h - 1]
        return pool.out_shape if pool is not None else self.layers[h - 1].out_shape

    def _pooling(self, h: int, out):
        """(f(S^h) before the pool, the maxima's taps) of conv layer h's pooled output ``out``."""
        kept = self._unpooled.get(id(out))
        if kept is None or kept[0] is not out:
            raise ValueError(
                f"conv layer {h}: this pooled output is not from one of the last forward passes"
            )
        return kept[1], kept[2]

    def route(self, h: int, j, outs):
        """The signal on conv layer h's pooled maps sent, through the max-pool, to the unit of
        each window that held the maximum (E, B, C, H, W before pooling); no pool: ``j``."""
        if self.pools[h - 1] is None:
            return j
        _, arg = self._pooling(h, outs[h])
        return self.pools[h - 1].backward(j, arg)

    def fprime_at(self, h: int, outs):
        """f′ of conv layer h at its units before pooling (what :meth:`route` delivers to)."""
        out = outs[h] if self.pools[h - 1] is None else self._pooling(h, outs[h])[0]
        return self.fprime(out)

    def fprime(self, out):
        """f′ of the hidden layers from their output (None for linear units)."""
        return derivative(self.model.hidden, out, exponent=self.model.power_exponent)

    def example_loss(self, out, t):
        """Loss of every example, (E, B): ½‖T − O‖² or −Σ T log O."""
        return metrics.example_loss(out, t, self.model.loss)

    def top_error(self, e, out):
        """−∂E/∂S^L from the output error e = T − O^L: e for matched loss/output, else e ∘ f′."""
        if self._matched:
            return e
        return e * derivative(self.model.output, out, exponent=self.model.power_exponent)

    def deltas(self, outs: list, t, channel: Channel | None = None) -> list:
        """Error signals R^1 … R^L of every layer for a forward pass ``outs`` and targets ``t``.

        ``channel`` defaults to the network's own; diagnostics pass a backprop (or
        pseudobackprop) channel here to measure what it would have sent on the same pass.
        """
        channel = self.channel if channel is None else channel
        e = t - outs[-1]
        r_top = self.top_error(e, outs[-1])
        # the hidden layers hear the true top error; the top layer itself may not (top_feedback)
        return [*channel.deliver(self, outs, t, e, r_top), channel.top_signal(r_top)]

    def step(
        self,
        x,
        t,
        lr: float,
        *,
        weight_decay: float | Sequence[float] = 0.0,
        momentum: float = 0.0,
    ):
        """One minibatch SGD step on the mean loss; returns the outputs O^L (E, B, N_L) before it.

        Parameters
        ----------
        x : array, shape (B, N_0) or (E, B, N_0)
        t : array, shape (B, N_L)
            Targets (one-hot for classification).
        lr : float
            Learning rate η of this update.
        weight_decay : float or sequence of L floats
            Decay λ of every forward array, or one per array (bottom first).
        momentum : float
        """
        L = len(self.layers)
        decays = [weight_decay] * L if np.isscalar(weight_decay) else list(weight_decay)
        if len(decays) != L:
            raise ValueError(
                f"weight_decay={weight_decay!r}: need one float or {L} (one per array)"
            )
        outs = self.forward(x)
        batch = t.shape[-2]  # (B, N_0) shared by the members, or (E, B, N_0) each its own
        scale = lr / batch
        deltas = self.deltas(outs, t)
        pres = [self.input_of(h, o) for h, o in enumerate(outs[:-1], start=1)]
        for h, (layer, R, pre, wd) in enumerate(
            zip(self.layers, deltas, pres, decays, strict=True), start=1
        ):
            kw = {"weight_decay": wd, "momentum": momentum}
            if h in self.model.frozen:
                continue
            if isinstance(R, Update):
                layer.apply(R.dW * scale, R.db * scale, lr, **kw)
            elif R is not None:
                ch = self.channel.cfg
                q = self.channel.update_q if h < L or ch.update_top else None
                if q is not None:
                    kw |= {"quantize_bias": ch.update_bias, "reduce_sum": ch.update_sum}
                layer.update(R, pre, scale, per_example=q, **kw)
        self.channel.adapt(scale)
        self.channel.mirror(self, scale, batch)  # weight mirror's phases (mirror_ratio)
        for array in self.devices():
            array.tick()
        return outs[-1]

    def members(self, sl: slice) -> "Network":
        """The network of members ``sl``: every array is a view of this one's, so a step of the
        view trains those members here. Dense arrays without device physics only."""
        if (why := self.no_member_views()) is not None:
            raise ValueError(why)
        layers = [layer.members(sl) for layer in self.layers]
        # the runtime source stays the whole network's (its arrays and channel still hold it);
        # the view has none of its own, so measuring a view switches no shared stream
        return Network(layers, self.channel.members(sl), self.model)

    def no_member_views(self) -> str | None:
        """Why :meth:`members` cannot view this network (conv arrays, device physics), or None."""
        if self.n_conv or self.devices():
            return "conv arrays and device physics have no member views"
        return None

    def devices(self) -> list:
        """The arrays with device physics (Crossbar and FeedbackArray objects), forward first."""
        fb = [self.channel.feedback[k] for k in sorted(self.channel.feedback)]
        fb += [self.channel.top] if self.channel.top is not None else []
        return [a for a in (*self.layers, *fb) if getattr(a, "device", None) is not None]


class MemberThreads:
    """Steps of a network as sub-ensembles at once, one Python thread each (member threads).

    On a CPU a small net's matrix products parallelise poorly over BLAS threads; splitting the
    E members into ``parts`` contiguous groups, each stepped by its own thread on views of the
    network's arrays (:meth:`Network.members`) with one BLAS thread, keeps every core busy
    (numpy releases the GIL in BLAS and in its element-wise loops). Each member computes what
    it computes in the whole ensemble (the first layer's shared-input product runs over fewer
    rows, which may change the last bits of a sum).

    It applies where a step draws nothing from the runtime stream: dropout, stochastic
    rounding, redrawn feedback and perturbations draw for the whole ensemble in one call, so a
    split ensemble would draw other numbers. The first step therefore runs on the whole network
    and counts its draws (:attr:`lpfa.backend.RuntimeRandom.draws`); the threads start from the
    second step only when it drew none (every draw of lpfa's steps comes at every step, except
    the weight mirror's scheduled phases, which run whole), and a later draw is an error, not
    other numbers. Conv nets, device physics, one member and CuPy (one GPU stream) run whole as
    well. :attr:`reason` says why a network runs whole (None: in threads).

    Parameters
    ----------
    net : Network
    parts : int
        Threads wanted (≥ 1); at most one per member. With more than one, this object sets
        the BLAS threads until :meth:`close`: ``parts`` where the network steps and measures
        whole (before the check, or when it fails), one while the threads run.
    """

    def __init__(self, net: Network, parts: int):
        self.net = net
        self.parts = max(1, min(int(parts), net.n_members))
        self.reason: str | None = None
        self._views: list[Network] | None = None  # and their member slices, from step 2 on
        self._slices: list[slice] = []
        self._pool = None
        self._limit = None  # the BLAS limit this object set (None: it set none)
        if int(parts) > 1:
            self._controller = ThreadpoolController()
            self._blas(int(parts))
        if self.parts == 1:
            self.reason = "one member" if net.n_members == 1 else "one thread asked for"
        elif net.xp is not np:
            self.reason = "CuPy runs one GPU stream"
        elif net.no_member_views() is not None:
            self.reason = net.no_member_views()
        elif net.channel.cfg.mirror_ratio is not None:  # draws at some steps only
            self.reason = "weight mirror phases follow a schedule of steps"
        elif net.random is None:
            self.reason = "no runtime stream to check"
        if self.reason is not None:
            self.parts = 1

    def step(self, x, t, lr: float, **kw):
        """:meth:`Network.step` of every member: in threads once the first step drew nothing."""
        net = self.net
        if self.parts == 1:
            return net.step(x, t, lr, **kw)
        if self._views is None:
            before = net.random.draws
            out = net.step(x, t, lr, **kw)
            if net.random.draws != before:
                self.reason, self.parts = "the step draws from the runtime stream", 1
                return out
            cuts = np.linspace(0, net.n_members, self.parts + 1).round().astype(int)
            self._slices = [slice(a, b) for a, b in itertools.pairwise(cuts)]
            self._views = [net.members(sl) for sl in self._slices]
            self._pool = ThreadPoolExecutor(self.parts, thread_name_prefix="lpfa-members")
            self._blas(1)
            return out
        before = net.random.draws
        jobs = []
        for view, sl in zip(self._views, self._slices, strict=True):
            view.channel.adapting = net.channel.adapting  # the training loop sets the whole's
            xs = x[sl] if x.ndim == 3 else x
            # each thread in a copy of this context: numpy's errstate travels with it
            call = contextvars.copy_context().run
            jobs.append(self._pool.submit(call, view.step, xs, t, lr, **kw))
        outs = [job.result() for job in jobs]
        if net.random.draws != before:  # the first step's count said it never would
            raise RuntimeError("member threads: a step drew from the runtime stream")
        return net.xp.concatenate(outs, axis=0)  # (E, B, N_L) in member order

    def map(self, measure) -> dict:
        """``measure(network)``, a dict of per-member host arrays (E,), for every member: on
        the sub-ensembles in their threads once the steps run there (joined in member order,
        inside the whole network's :meth:`Network.observing`), else on the whole network."""
        if self._views is None:
            return measure(self.net)
        with self.net.observing():
            run = [contextvars.copy_context().run for _ in self._views]
            jobs = [self._pool.submit(r, measure, v) for r, v in zip(run, self._views, strict=True)]
            parts = [job.result() for job in jobs]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def _blas(self, n: int) -> None:
        """BLAS threads ``n`` from now on (the limit before this object's first one comes back
        at :meth:`close`)."""
        if self._limit is not None:
            self._limit.restore_original_limits()
        self._limit = self._controller.limit(limits=n, user_api="blas")

    def __enter__(self) -> "MemberThreads":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the threads and put BLAS back as it was (the network keeps its state)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._limit is not None:
            self._limit.restore_original_limits()
            self._limit = None
