"""A physical crossbar array of one-way synapses, for every member of an ensemble at once.

An array can be *read forward* (each output line sums its row of conductances times the input
lines) and *updated locally* (each synapse changes by the product of the signal on its row and
the signal on its column). It cannot be read backwards: the transposed read that backprop needs
is the separate, explicitly named :meth:`Crossbar.transport`, so that whoever uses it can be seen.
"""

import copy
from types import ModuleType

from lpfa.backend import PRODUCT_BLOCK, add_product, get_xp, is_host

__all__ = ["Crossbar", "FeedbackArray", "outer_sum"]


def outer_sum(target, post, pre, *, beta: float = 1.0):
    """target ← beta · target + Σ_b post_bᵀ ⊗ pre_b for every member, in place; returns target.

    ``target`` (E, n_out, n_in), ``post`` (E, B, n_out), ``pre`` (E, B, n_in) or (B, n_in) when
    the members share it (then all members' products are one GEMM over a (E·n_out, n_in) view).
    The products accumulate into ``target`` a cache-sized block of rows at a time
    (:func:`lpfa.backend.add_product`): no temporary of the array's size, which is what a
    crossbar's local update is, every synapse adding its own row × column product. Members with
    their own inputs and small arrays (under :data:`lpfa.backend.PRODUCT_BLOCK` synapses per
    member) take one batched product and one pass instead.
    """
    xp = get_xp(target, post, pre)
    E, n_out, n_in = target.shape
    if pre.ndim == 2:
        rows = post.transpose(1, 0, 2).reshape(post.shape[1], E * n_out)
        add_product(target.reshape(E * n_out, n_in), rows.T, pre, beta=beta)
        return target
    if n_out * n_in > PRODUCT_BLOCK:
        for e in range(E):
            add_product(target[e], post[e].T, pre[e], beta=beta)
        return target
    product = xp.matmul(post.transpose(0, 2, 1), pre)
    if beta != 1.0:
        target *= beta
    target += product
    return target


class Crossbar:
    """Forward weights ``W`` (E, n_out, n_in) and biases ``b`` (E, n_out) of one layer.

    Parameters
    ----------
    W : array, shape (E, n_out, n_in)
        Conductances, one matrix per ensemble member, C-contiguous.
    b : array, shape (E, n_out)
        Biases.
    mask : array, shape (E, n_out, n_in), optional
        1 where a synapse exists, 0 where it is missing; missing synapses stay at 0.
    input_q, output_q, weight_q : callable, optional
        Quantizers of the input lines (a DAC), of the outputs S (an ADC), and of the
        conductances (applied at the start and after every update), made from the config's
        ``input_format``, ``output_format`` and ``weight_format``; None = exact in the dtype.
    device : lpfa.devices.ArrayDevice, optional
        Device physics of the array (``model.device``): the initial weights are programmed
        through it, every read (forward and transposed) gets its read noise, every update its
        pulses, bounds and stuck devices, every step its drift (:meth:`tick`). None = ideal.
    bias : bool
        False: the array has no bias (``model.bias``): ``b`` stays at its initial zeros.

    Notes
    -----
    Signals are row-major batches: an input ``x`` is (E, B, n_in), or (B, n_in) when every
    member reads the same minibatch (the first layer). In that case the forward read and the
    update of all members are each one GEMM over a (E·n_out, n_in) view of ``W``.
    """

    def __init__(
        self,
        W,
        b,
        mask=None,
        *,
        input_q=None,
        output_q=None,
        weight_q=None,
        device=None,
        bias: bool = True,
    ):
        if W.ndim != 3 or b.shape != W.shape[:2]:
            raise ValueError(
                f"W.shape={W.shape}, b.shape={b.shape}: need (E, n_out, n_in), (E, n_out)"
            )
        if mask is not None and mask.shape != W.shape:
            raise ValueError(f"mask.shape={mask.shape}: need W.shape={W.shape}")
        self.xp: ModuleType = get_xp(W, b, mask)
        self.mask = None if mask is None else mask.astype(W.dtype)
        self.input_q, self.output_q, self.weight_q = input_q, output_q, weight_q
        W = W if mask is None else W * self.mask
        self.device = device
        if device is not None:  # written through the devices: programming error, bounds, stuck
            W = device.program(W)
            W = W if mask is None else W * self.mask
        self.W = self.xp.ascontiguousarray(W if weight_q is None else weight_q(W))
        self.b = self.xp.ascontiguousarray(b)
        self.has_bias = bias  # False: b stays as given (zeros) and learns nothing
        self._vW = None  # momentum buffers, allocated on first use
        self._vb = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(E, n_out, n_in)."""
        return self.W.shape

    def read(self, x):
        """Forward read S = W x + b for every member.

        Parameters
        ----------
        x : array, shape (E, B, n_in) or (B, n_in)
            Input lines; 2-D when all members read the same input.

        Returns
        -------
        array, shape (E, B, n_out)
        """
        E, n_out, n_in = self.W.shape
        if self.input_q is not None:
            x = self.input_q(x)
        if x.ndim == 2:  # shared input: one GEMM for all members
            S = x @ self.W.reshape(E * n_out, n_in).T
            S = S.reshape(x.shape[0], E, n_out).transpose(1, 0, 2)
        else:
            S = self.xp.matmul(x, self.W.transpose(0, 2, 1))
        if self.device is not None:
            self.device.read_noise(S, x)
        S += self.b[:, None, :]
        return S if self.output_q is None else self.output_q(S)

    def update(
        self,
        post,
        pre,
        scale: float,
        *,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        per_example=None,
        quantize_bias: bool = True,
        reduce_sum: bool = False,
    ):
        """Local outer-product update: W += scale · postᵀ pre (batch sum), b += scale · Σ post.

        Parameters
        ----------
        post : array, shape (E, B, n_out)
            Signal on each synapse's row (the error delivered to the post-synaptic neuron).
        pre : array, shape (E, B, n_in) or (B, n_in)
            Signal on each synapse's column (the pre-synaptic activity).
        scale : float
            Learning rate over batch size (η / B for a minibatch mean).
        weight_decay : float
            Decay W ← W − (scale·B)·weight_decay·W, i.e. η · weight_decay per update (without
            momentum computed as W ← (1 − η λ) W + ΔW, the product accumulating into W).
        momentum : float
            μ of v ← μ v + ΔW, W ← W + v.
        per_example : callable, optional
            Quantizer of every example's weight update η · post_b ⊗ pre_b (η = scale · B)
            before the minibatch mean (Baldi et al. §5); the outer products are then formed
            explicitly, a chunk of examples at a time.
        quantize_bias : bool
            With ``per_example``: each example's bias update is quantized too (else the exact
            mean of η · post_b).
        reduce_sum : bool
            With ``per_example``: the step is the sum of the quantized per-example updates, not
            their mean.
        """
        batch = post.shape[1]
        lr = scale * batch
        if per_example is not None:  # each example's update η·post_b ⊗ pre_b, then the mean
            dW, db = self._quantized_sum(post * lr, pre, per_example)
            if not quantize_bias:
                db = (post * lr).sum(axis=1)
            n = 1 if reduce_sum else batch
            self.apply(dW / n, db / n, lr, weight_decay=weight_decay, momentum=momentum)
            return
        post = post * scale  # scale the small signal, not the large outer product
        db = post.sum(axis=1)
        physical = self.device is not None and self.device.active
        if (weight_decay and momentum) or self.mask is not None or physical:  # ΔW is needed
            dW = outer_sum(self.xp.zeros_like(self.W), post, pre)
            self.apply(dW, db, lr, weight_decay=weight_decay, momentum=momentum)
            return
        # the product accumulates into W itself, W ← (1 − η λ) W + ΔW, or into the momentum
        # buffer, v ← μ v + ΔW, W ← W + v
        if momentum:
            self._momentum_buffers()
            outer_sum(self._vW, post, pre, beta=momentum)
            self._vb *= momentum
            self._vb += db
            self.W += self._vW
            db = self._vb
        else:
            outer_sum(self.W, post, pre, beta=1.0 - lr * weight_decay)
        self._finish(db)

    def _quantized_sum(self, post, pre, q, budget: int | None = None):
        """Σ_b q(post_b ⊗ pre_b) and Σ_b q(post_b), in chunks of at most ``budget`` elements.

        On the host (numpy), small chunks (128 Ki elements) keep the outer products in cache, and
        where q(0) = 0 (``q.keeps_zero``) the columns that are 0 in every example of a chunk add
        nothing and are skipped (most MNIST pixels of one image are 0, and the first layer holds
        two thirds of the Baldi net's synapses). One CPU thread, Baldi net, MNIST batch: 12.9 ms
        per step, against 25 ms with 16 MiB chunks and no skipping. On a device the skipping is
        off: finding the zero columns is a data-dependent shape, a device sync per layer and step;
        chunks of 64 Mi elements make a batch a few kernel launches, not one per example.

        Where q(x) = c · sign(x) (``q.sign_level``, eq. 19 as written at 1 bit), q(r · o) =
        c · sign(r) · sign(o), and the sum is c times one GEMM of the signs: no outer product is
        formed (the Baldi net's 1-bit RBP step on an MNIST batch, one CPU thread: 1.4 ms, against
        20 ms for the same step with ``flush_to_zero``, which forms every example's product). It
        equals the elementwise sum except where a product r · o underflows to 0 in the dtype
        (|r · o| below its smallest subnormal), which the elementwise path quantizes to 0.
        """
        xp = self.xp
        level = getattr(q, "sign_level", None)
        if level is not None:
            dW = outer_sum(xp.zeros_like(self.W), xp.sign(post), xp.sign(pre))
            dW *= level
            return dW, q(post).sum(axis=1)
        E, n_out, n_in = self.W.shape
        batch = post.shape[1]
        host = is_host(xp)
        if budget is None:
            budget = 1 << 17 if host else 1 << 26
        step = max(1, budget // (E * n_out * n_in))
        skip_zeros = host and getattr(q, "keeps_zero", False)
        dW = xp.zeros_like(self.W)
        for i in range(0, batch, step):
            rows = post[:, i : i + step, :, None]
            cols = pre[None, i : i + step] if pre.ndim == 2 else pre[:, i : i + step]
            keep = xp.flatnonzero(cols.any(axis=(0, 1))) if skip_zeros else None
            if keep is None or keep.size > 0.8 * n_in:
                dW += q(rows * cols[:, :, None, :]).sum(axis=1)
            elif keep.size:
                dW[:, :, keep] += q(rows * cols[:, :, None, keep]).sum(axis=1)
        return dW, q(post).sum(axis=1)

    def apply(self, dW, db, lr: float, *, weight_decay: float = 0.0, momentum: float = 0.0):
        """Add a computed change (already scaled by the learning rate), with decay and momentum.

        Parameters
        ----------
        dW, db : arrays, shapes (E, n_out, n_in) and (E, n_out)
        lr : float
            Learning rate η of this update (for the decay term η · weight_decay · W).
        """
        if weight_decay:
            dW = dW - (lr * weight_decay) * self.W
        if momentum:
            self._momentum_buffers()
            self._vW *= momentum
            self._vW += dW
            self._vb *= momentum
            self._vb += db
            dW, db = self._vW, self._vb
        if self.mask is not None:  # missing synapses stay missing
            dW = dW * self.mask
        if self.device is not None and self.device.active:
            self.device.write(self.W, dW)
            if self.mask is not None:
                self.W *= self.mask
        else:
            self.W += dW
        self._finish(db)

    def members(self, sl: slice) -> "Crossbar":
        """The same array for members ``sl`` only: W, b, mask and momentum are views of this
        one's, so an update of the view is an update of these members here (member threads)."""
        if self.device is not None:
            raise ValueError("a crossbar with device physics has no member views")
        view = copy.copy(self)
        view.W, view.b = self.W[sl], self.b[sl]
        view.mask = None if self.mask is None else self.mask[sl]
        view._vW = None if self._vW is None else self._vW[sl]
        view._vb = None if self._vb is None else self._vb[sl]
        return view

    def _momentum_buffers(self) -> None:
        if self._vW is None:
            self._vW = self.xp.zeros_like(self.W)
            self._vb = self.xp.zeros_like(self.b)

    def _finish(self, db) -> None:
        """The bias change, and the conductances back onto the weight format."""
        if self.has_bias:
            self.b += db
        if self.weight_q is not None:
            self.W[...] = self.weight_q(self.W)

    def transport(self, post, *, pseudo_inverse: bool = False):
        """Weight transport: read the array backwards, Wᵀ (or (W⁺)ᵀ) applied to ``post``.

        No physical one-way array can do this; only the weight-transport rules (backprop,
        skipped backprop, pseudobackprop) and diagnostics that measure them call it, and audits
        look for it by name.

        Parameters
        ----------
        post : array, shape (E, B, n_out)
        pseudo_inverse : bool
            Use the Moore-Penrose pseudoinverse W⁺ instead of W (pseudobackprop: Δh = W⁺ e).

        Returns
        -------
        array, shape (E, B, n_in)
        """
        if pseudo_inverse:
            out = self.xp.matmul(post, self.xp.linalg.pinv(self.W).transpose(0, 2, 1))
        else:
            out = self.xp.matmul(post, self.W)
        if self.device is not None:  # a transposed read of a noisy array is as noisy
            self.device.read_noise(out, post)
        return out

    def tick(self) -> None:
        """One training step has passed: the devices drift (nothing for an ideal array)."""
        if self.device is not None:
            self.device.tick(self.W)  # multiplicative: missing synapses stay 0


class FeedbackArray:
    """Feedback synapses from ``n_src`` sending units to ``n_dst`` receiving units, per member.

    ``C`` has shape (E, n_src, n_dst): Bᵀ in Lillicrap et al.'s notation, the orientation of the
    forward array it stands in for, so that ``read`` is the same operation as backprop's
    ``Crossbar.transport`` — with C = W the two give the same bits.

    ``device`` (an :class:`lpfa.devices.ArrayDevice`, from ``channel.device``) makes it a
    physical array: C is programmed through it (:meth:`attach`), every read gets read noise,
    adaptive updates are sent as pulses, and C drifts (:meth:`tick`). None = ideal.
    """

    def __init__(self, C, device=None):
        self.C = C
        self.device = None
        if device is not None:
            self.attach(device)

    def members(self, sl: slice) -> "FeedbackArray":
        """The array of members ``sl``: C is a view of this one's (see :meth:`Crossbar.members`)."""
        if self.device is not None:
            raise ValueError("a feedback array with device physics has no member views")
        return FeedbackArray(self.C[sl])

    def attach(self, device) -> None:
        """Make the array physical: C is written through ``device`` (programming error, bounds,
        stuck devices) and read and updated through it from now on."""
        self.device = device
        self.C = device.program(self.C)

    def read(self, signal):
        """Deliver ``signal`` (E, B, n_src) to the receiving units: (E, B, n_dst)."""
        out = signal @ self.C
        if self.device is not None:
            self.device.read_noise(out, signal)
        return out

    def update(self, signal, activity, scale: float, decay: float = 0.0) -> None:
        """Adaptive feedback, local to each feedback synapse: C += scale · signalᵀ activity
        − decay · C (the decay computed as :meth:`lpfa.crossbar.Crossbar.apply` does for W, so
        that equal updates and decays keep C and W equal to the bit: Kolen-Pollack)."""
        signal = signal * scale
        if self.device is None or not self.device.active:  # into C, as Crossbar.update into W
            outer_sum(self.C, signal, activity, beta=1.0 - decay)
            return
        self._add(outer_sum(get_xp(self.C).zeros_like(self.C), signal, activity), decay)

    def _add(self, dC, decay: float) -> None:
        """C += dC − decay · C, as pulses where the array has device physics."""
        if decay:
            dC = dC - decay * self.C
        if self.device is not None and self.device.active:
            self.device.write(self.C, dC)
        else:
            self.C += dC

    def tick(self) -> None:
        """One training step has passed: the devices drift (nothing for ideal synapses)."""
        if self.device is not None:
            self.device.tick(self.C)
