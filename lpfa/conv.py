"""Convolutional arrays: a kernel bank read over image patches, its feedback, and max-pooling.

A convolutional layer is one physical crossbar: each output channel is a row, each (input
channel, kernel tap) a column, so ``W`` is (E, C_out, C_in·k·k) and reading it over the patches of
an image (im2col) is the convolution. The local update is the outer product of the error at each
output position with the patch it read, summed over positions and examples. The transposed read
(col2im of Wᵀ times the error) is backprop's weight transport, kept under the name
:meth:`ConvArray.transport` as in :class:`lpfa.crossbar.Crossbar`.

Images are (E, B, C, H, W), or (B, C, H, W) when every member reads the same one (the input);
patches are (E, C·k·k, B·H'·W') (channel-major, so that a read and an update are one GEMM per
member). Everything works on numpy and CuPy alike: the patches are gathered with k·k strided
slice copies, which cost one pass over the patch matrix on either backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lpfa.backend import get_xp
from lpfa.crossbar import Crossbar, FeedbackArray

__all__ = [
    "ConvArray",
    "ConvFeedback",
    "Geometry",
    "MapFeedback",
    "MaxPool",
    "col2im",
    "flatten",
    "geometry",
    "im2col",
    "unflatten",
]

#: elements of one chunk of patches (E · C·k·k · examples · positions): 64 Mi, 256 MiB in float32
PATCH_BUDGET = 1 << 26


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where a k×k window, moved by ``stride``, reads an input of ``in_shape`` padded by ``pads``.

    Attributes
    ----------
    in_shape : (C, H, W)
    kernel, stride : int
    pads : (top, bottom, left, right)
        Rows and columns added around the input (zeros for a convolution, −∞ for max-pooling).
    """

    in_shape: tuple[int, int, int]
    kernel: int
    stride: int
    pads: tuple[int, int, int, int]

    @property
    def out_hw(self) -> tuple[int, int]:
        """(H', W'): window positions, ⌊(H + pads − k) / s⌋ + 1 along each axis."""
        _, H, W = self.in_shape
        t, b, left, r = self.pads
        k, s = self.kernel, self.stride
        return (H + t + b - k) // s + 1, (W + left + r - k) // s + 1

    @property
    def padded_hw(self) -> tuple[int, int]:
        """(H + top + bottom, W + left + right)."""
        _, H, W = self.in_shape
        t, b, left, r = self.pads
        return H + t + b, W + left + r

    @property
    def positions(self) -> int:
        """H' · W'."""
        h, w = self.out_hw
        return h * w

    @property
    def taps(self) -> int:
        """C · k · k: the columns of a kernel bank (the length of one patch)."""
        return self.in_shape[0] * self.kernel**2

    def window(self, i: int, j: int) -> tuple[slice, slice]:
        """The rows and columns of the padded input that tap (i, j) reads at every position."""
        (ho, wo), s = self.out_hw, self.stride
        return slice(i, i + s * (ho - 1) + 1, s), slice(j, j + s * (wo - 1) + 1, s)

    def interior(self) -> tuple[slice, slice]:
        """Where the unpadded input lies in the padded one."""
        _, H, W = self.in_shape
        return slice(self.pads[0], self.pads[0] + H), slice(self.pads[2], self.pads[2] + W)


def geometry(in_shape, kernel: int, stride: int = 1, padding: str | int = "same") -> Geometry:
    """The :class:`Geometry` of a k×k window on (C, H, W) inputs.

    Parameters
    ----------
    in_shape : (C, H, W)
    kernel, stride : int
    padding : "same", "valid" or int
        ``"same"``: H' = ⌈H / s⌉, the padding (H' − 1)·s + k − H split with the smaller half on top
        and left (TensorFlow's rule; for a 5×5 kernel at stride 1, 2 on every side). ``"valid"``:
        none. An int p: p on every side.
    """
    C, H, W = (int(n) for n in in_shape)
    if min(C, H, W) < 1:
        raise ValueError(f"in_shape={tuple(in_shape)}: need (C, H, W), each >= 1")
    if kernel < 1 or stride < 1:
        raise ValueError(f"kernel={kernel}, stride={stride}: must be integers >= 1")
    if padding == "same":
        pads = []
        for n in (H, W):
            total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
            pads += [total // 2, total - total // 2]
    elif padding == "valid":
        pads = [0, 0, 0, 0]
    elif isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        pads = [padding] * 4
    else:
        raise ValueError(f"padding={padding!r}: must be 'same', 'valid' or an integer >= 0")
    g = Geometry((C, H, W), int(kernel), int(stride), tuple(pads))  # type: ignore[arg-type]
    if min(g.out_hw) < 1:
        raise ValueError(
            f"kernel={kernel}, padding={padding!r}: the window does not fit in {H}×{W}"
        )
    return g


def _channel_major(x, lead: int):
    """(*lead, B, C, h, w) → the view (*lead, C, B, h, w)."""
    n = lead
    return x.transpose(*range(n), n + 1, n, n + 2, n + 3)


def _padded(x, g: Geometry, fill: float):
    """The (*lead, C, B, H + pads, W + pads) channel-major copy of x, or a view when unpadded."""
    xp = get_xp(x)
    lead = x.ndim - 4
    xc = _channel_major(x, lead)
    if not any(g.pads):
        return xc
    shape = (*xc.shape[:-2], *g.padded_hw)
    out = xp.zeros(shape, dtype=x.dtype) if fill == 0 else xp.full(shape, fill, dtype=x.dtype)
    rows, cols = g.interior()
    out[..., rows, cols] = xc
    return out


def im2col(x, g: Geometry, out=None):
    """The patches every window position reads: (*lead, C·k·k, B·H'·W').

    Parameters
    ----------
    x : array, shape (*lead, B, C, H, W)
        Images; lead is () for an input shared by the members, (E,) otherwise.
    g : Geometry
    out : array, optional
        A C-contiguous array of at least the result's size and x's dtype to write into (a
        workspace kept between calls: a fresh one of hundreds of MiB costs its page faults).

    Returns
    -------
    array, shape (*lead, C·k·k, B·H'·W')
        Row c·k² + i·k + j holds input channel c at tap (i, j), column (b·H' + y)·W' + x the
        window at output position (y, x) of example b; padding reads 0.
    """
    xp = get_xp(x)
    *lead, B, C, _, _ = x.shape
    k = g.kernel
    ho, wo = g.out_hw
    src = _padded(x, g, 0.0)
    shape = (*lead, C, k, k, B, ho, wo)
    if out is None:
        cols = xp.empty(shape, dtype=x.dtype)
    else:
        cols = out.reshape(-1)[: math.prod(shape)].reshape(shape)
    for i in range(k):
        for j in range(k):
            cols[..., i, j, :, :, :] = src[(..., *g.window(i, j))]
    return cols.reshape(*lead, C * k * k, B * ho * wo)


def col2im(cols, g: Geometry, batch: int):
    """The transpose of :func:`im2col`: every patch entry added back where it was read from.

    Parameters
    ----------
    cols : array, shape (*lead, C·k·k, B·H'·W')
    g : Geometry
    batch : int
        B.

    Returns
    -------
    array, shape (*lead, B, C, H, W)
        A (channel-major) view; the taps are added in the order (0, 0), (0, 1), …, so that two
        calls on equal arguments give the same bits.
    """
    xp = get_xp(cols)
    lead = cols.shape[:-2]
    C, k = g.in_shape[0], g.kernel
    ho, wo = g.out_hw
    cols = cols.reshape(*lead, C, k, k, batch, ho, wo)
    out = xp.zeros((*lead, C, batch, *g.padded_hw), dtype=cols.dtype)
    for i in range(k):
        for j in range(k):
            out[(..., *g.window(i, j))] += cols[..., i, j, :, :, :]
    rows, columns = g.interior()
    out = out[..., rows, columns]
    n = len(lead)
    return out.transpose(*range(n), n + 1, n, n + 2, n + 3)


def flatten(x):
    """(…, C, H, W) → (…, C·H·W), channel first (the order of a CIFAR-10 row)."""
    return x.reshape(*x.shape[:-3], -1)


def unflatten(x, shape):
    """(…, C·H·W) → (…, C, H, W) for ``shape`` = (C, H, W)."""
    return x.reshape(*x.shape[:-1], *shape)


def _rows(post):
    """The error (E, B, C_out, H', W') as the matrix (E, C_out, B·H'·W') a GEMM reads."""
    E, B, Co, ho, wo = post.shape
    return post.transpose(0, 2, 1, 3, 4).reshape(E, Co, B * ho * wo)


def _chunk(budget: int, per_example: int) -> int:
    return max(1, budget // max(1, per_example))


class Workspace:
    """A flat buffer an array keeps between steps for its largest temporary (the patches, the
    transposed read's columns): a fresh one of hundreds of MiB costs its page faults every step
    (0.1 s for the 210 MB of the CIFAR net's second layer)."""

    __slots__ = ("buffer",)

    def __init__(self):
        self.buffer = None

    def take(self, xp, shape, dtype):
        """A C-contiguous array of ``shape`` in the buffer (grown when too small): its contents
        are what the last user left; the next ``take`` overwrites them."""
        size = math.prod(shape)
        buf = self.buffer
        if buf is None or buf.size < size or buf.dtype != dtype or get_xp(buf) is not xp:
            buf = self.buffer = xp.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)


def _transposed_read(
    K, post, g: Geometry, noise=None, budget: int = PATCH_BUDGET, work: Workspace | None = None
):
    """col2im(Kᵀ · post): the transposed read of the kernel bank ``K`` (E, C_out, C·k·k).

    ``noise(out, signal)`` (a device's read noise) is added to each transposed read of one
    position, Kᵀ post_p, before the positions are summed back into the image. ``work``: where
    the columns Kᵀ · post are written (they are summed into a new image before it returns).
    """
    xp = get_xp(K, post)
    E, _, taps = K.shape
    B = post.shape[1]
    step = _chunk(budget, E * taps * g.positions)
    Kt = K.transpose(0, 2, 1)
    parts = []
    for b0 in range(0, B, step):
        chunk = post[:, b0 : b0 + step]
        rows = _rows(chunk)
        plain = work is not None and type(rows) is xp.ndarray  # not the audit's traced arrays
        out = work.take(xp, (E, taps, rows.shape[-1]), rows.dtype) if plain else None
        dcols = xp.matmul(Kt, rows, out=out)  # (E, C·k·k, c·P)
        if noise is not None:  # each position's read, with the norm of the signal it read
            noise(dcols.transpose(0, 2, 1), rows.transpose(0, 2, 1))
        parts.append(col2im(dcols, g, chunk.shape[1]))
    return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=1)


def _outer(post, cols_of, step: int):
    """Σ over examples and positions of post ⊗ patch: (E, C_out, C·k·k), and Σ post: (E, C_out).

    ``cols_of(b0, b1)`` gives the patches of examples b0 … b1 − 1, ``step`` examples at a time.
    """
    xp = get_xp(post)
    E, B, Co = post.shape[:3]
    dW = None
    for b0 in range(0, B, step):
        b1 = min(B, b0 + step)
        cols = cols_of(b0, b1)
        rows = _rows(post[:, b0:b1])
        if cols.ndim == 2:  # shared input: one GEMM for all members
            term = (rows.reshape(E * Co, -1) @ cols.transpose(1, 0)).reshape(E, Co, -1)
        else:
            term = xp.matmul(rows, cols.transpose(0, 2, 1))
        dW = term if dW is None else dW + term
    return dW, post.sum(axis=(1, 3, 4))


class ConvArray(Crossbar):
    """A bank of C_out kernels of C_in × k × k taps, read over image patches, per member.

    One crossbar ``W`` (E, C_out, C_in·k·k) and bias ``b`` (E, C_out): :attr:`W` of a
    :class:`lpfa.crossbar.Crossbar` whose input lines are a patch. Masks, quantizers (of the
    patch lines, the outputs and the conductances), device physics, weight decay and momentum
    behave exactly as there (:meth:`apply` and :meth:`tick` are the Crossbar's).

    Parameters
    ----------
    W : array, shape (E, C_out, C_in·k·k)
        Column c·k² + i·k + j is input channel c at kernel tap (i, j).
    b : array, shape (E, C_out)
    in_shape : (C_in, H, W)
        The input images' shape.
    kernel : int
        k.
    stride : int
    padding : "same", "valid" or int
        See :func:`geometry`; zeros are read outside the image.
    mask, input_q, output_q, weight_q, device :
        As for :class:`lpfa.crossbar.Crossbar`.
    budget : int
        Most elements of patches held at once; a larger batch is read in chunks of examples.

    Notes
    -----
    :meth:`read` keeps the patches it made (when they fit in one chunk and no input quantizer
    changed them) together with the image they came from; an :meth:`update` whose ``pre`` is that
    same image object uses them instead of gathering them again, and then lets them go.
    """

    def __init__(
        self,
        W,
        b,
        mask=None,
        *,
        in_shape,
        kernel: int,
        stride: int = 1,
        padding: str | int = "same",
        input_q=None,
        output_q=None,
        weight_q=None,
        device=None,
        bias: bool = True,
        budget: int = PATCH_BUDGET,
    ):
        self.geometry = geometry(in_shape, kernel, stride, padding)
        if W.ndim != 3 or W.shape[2] != self.geometry.taps:
            raise ValueError(
                f"W.shape={W.shape}: need (E, C_out, C_in·k·k) = (E, C_out, {self.geometry.taps}) "
                f"for in_shape={tuple(in_shape)}, kernel={kernel}"
            )
        super().__init__(
            W,
            b,
            mask,
            input_q=input_q,
            output_q=output_q,
            weight_q=weight_q,
            device=device,
            bias=bias,
        )
        self.budget = int(budget)
        self._kept = None  # (image, its patches) from the last read
        self._work = Workspace()  # the patches, kept between steps
        self._columns = Workspace()  # the transposed read's columns (BP), kept between steps

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """(C_in, H, W) of the images read."""
        return self.geometry.in_shape

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(C_out, H', W') of the feature maps."""
        return (self.W.shape[1], *self.geometry.out_hw)

    def _check(self, x, name: str) -> None:
        if x.ndim not in (4, 5) or tuple(x.shape[-3:]) != self.in_shape:
            raise ValueError(
                f"{name}.shape={tuple(x.shape)}: need (E, B, *in_shape) or (B, *in_shape) with "
                f"in_shape={self.in_shape}"
            )

    def patches(self, x, b0: int = 0, b1: int | None = None, *, reuse: bool = False):
        """im2col of examples b0 … b1 − 1 of ``x``: (E, C·k·k, n·P), or (C·k·k, n·P) if shared.

        ``reuse``: written into the array's workspace (overwritten by the next such call)."""
        x = x[..., b0:b1, :, :, :]
        if not reuse:
            return im2col(x, self.geometry)
        E, _, taps = self.W.shape
        size = (E if x.ndim == 5 else 1) * taps * x.shape[-4] * self.geometry.positions
        return im2col(x, self.geometry, out=self._work.take(self.xp, (size,), x.dtype))

    def read(self, x):
        """Forward read: every kernel over every window, S = W ⋆ x + b.

        Parameters
        ----------
        x : array, shape (E, B, C_in, H, W) or (B, C_in, H, W)
            Images; 4-D when all members read the same ones.

        Returns
        -------
        array, shape (E, B, C_out, H', W')
            A view of a channel-major (E, C_out, B, H', W') array.
        """
        xp = self.xp
        self._check(x, "x")
        self._kept = None
        if self.input_q is not None:
            x = self.input_q(x)
        E, Co, taps = self.W.shape
        B = x.shape[-4]
        P = self.geometry.positions
        step = self._step(x)
        parts = []
        for b0 in range(0, B, step):
            cols = self.patches(x, b0, b0 + step, reuse=True)
            if cols.ndim == 2:  # shared input: one GEMM for all members
                S = (self.W.reshape(E * Co, taps) @ cols).reshape(E, Co, -1)
            else:
                S = xp.matmul(self.W, cols)
            if self.device is not None:  # each position's read, with the norm of its patch
                sig = cols.transpose(1, 0) if cols.ndim == 2 else cols.transpose(0, 2, 1)
                self.device.read_noise(S.transpose(0, 2, 1), sig)
            parts.append(S.reshape(E, Co, -1, P))
            if step >= B and self.input_q is None:
                self._kept = (x, cols)
        S = parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=2)
        S += self.b[:, :, None, None]
        S = S.reshape(E, Co, B, *self.geometry.out_hw).transpose(0, 2, 1, 3, 4)
        return S if self.output_q is None else self.output_q(S)

    def _step(self, x) -> int:
        """Examples per chunk of patches of ``x`` (shared by the members when 4-D)."""
        E, _, taps = self.W.shape
        return _chunk(self.budget, (1 if x.ndim == 4 else E) * taps * self.geometry.positions)

    def _patches_of(self, pre):
        """cols_of(b0, b1): the patches of examples b0 … b1 − 1 of ``pre``, taken from the last
        read when it kept them for this very image (then forgotten), else gathered."""
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] is pre:
            cols, P = kept[1], self.geometry.positions
            return lambda b0, b1: cols[..., b0 * P : b1 * P]
        return lambda b0, b1: self.patches(pre, b0, b1, reuse=True)

    def outer(self, post, pre):
        """The batch sums Σ_b Σ_p post_{b,p} ⊗ patch_{b,p} and Σ_b Σ_p post_{b,p}.

        Parameters
        ----------
        post : array, shape (E, B, C_out, H', W')
        pre : array, shape (E, B, C_in, H, W) or (B, C_in, H, W)

        Returns
        -------
        dW : array, shape (E, C_out, C_in·k·k)
        db : array, shape (E, C_out)
        """
        self._check(pre, "pre")
        return _outer(post, self._patches_of(pre), self._step(pre))

    def update(
        self,
        post,
        pre,
        scale: float,
        *,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        per_example=None,
    ):
        """Local update W += scale · Σ_b Σ_p post_{b,p} ⊗ patch_{b,p}, b += scale · Σ post.

        The contract of :meth:`lpfa.crossbar.Crossbar.update`: ``scale`` is η / B (B examples;
        the positions of one example are summed, as the gradient of its loss sums them),
        ``weight_decay`` decays W by η · weight_decay, ``momentum`` is μ of v ← μ v + ΔW.

        Parameters
        ----------
        post : array, shape (E, B, C_out, H', W')
            The error delivered to each output unit.
        pre : array, shape (E, B, C_in, H, W) or (B, C_in, H, W)
            The images that were read.
        scale, weight_decay, momentum :
            As for :meth:`lpfa.crossbar.Crossbar.update`.
        per_example : callable, optional
            Quantizer of every example's change η · Σ_p post_{b,p} ⊗ patch_{b,p} before the
            minibatch mean (Baldi et al. §5).
        """
        batch = post.shape[1]
        lr = scale * batch
        if per_example is not None:
            dW, db = self._quantized_sum(post * lr, pre, per_example)
            self.apply(dW / batch, db / batch, lr, weight_decay=weight_decay, momentum=momentum)
            return
        dW, db = self.outer(post * scale, pre)  # scale the small signal, not the sums
        self.apply(dW, db, lr, weight_decay=weight_decay, momentum=momentum)

    def _quantized_sum(self, post, pre, q, budget: int | None = None):
        """Σ_b q(Σ_p post_{b,p} ⊗ patch_{b,p}) and Σ_b q(Σ_p post_{b,p}), a chunk of examples at
        a time (each example's change of the whole bank is formed explicitly)."""
        self._check(pre, "pre")
        xp = self.xp
        E, Co, taps = self.W.shape
        B = post.shape[1]
        P = self.geometry.positions
        step = _chunk(budget or 1 << 22, E * Co * taps + E * taps * P)
        cols_of = self._patches_of(pre)
        dW = xp.zeros_like(self.W)
        for b0 in range(0, B, step):
            b1 = min(B, b0 + step)
            cols = cols_of(b0, b1)
            cols = cols.reshape(*cols.shape[:-1], b1 - b0, P)  # (E?, taps, n, P)
            cols = cols.transpose(1, 2, 0) if cols.ndim == 3 else cols.transpose(0, 2, 3, 1)
            rows = post[:, b0:b1].reshape(E, b1 - b0, Co, P)
            dW += q(xp.matmul(rows, cols)).sum(axis=1)  # (E, n, C_out, taps) summed over n
        return dW, q(post.sum(axis=(3, 4))).sum(axis=1)

    def transport(self, post, *, pseudo_inverse: bool = False):
        """Weight transport: the kernel bank read backwards, col2im(Wᵀ post).

        The transposed convolution backprop needs; no one-way array can do it, and audits look
        for it by name (as :meth:`lpfa.crossbar.Crossbar.transport`).

        Parameters
        ----------
        post : array, shape (E, B, C_out, H', W')
        pseudo_inverse : bool
            Not defined for a convolution (W⁺ of the kernel bank is not the pseudoinverse of the
            convolution); True raises ValueError.

        Returns
        -------
        array, shape (E, B, C_in, H, W)
        """
        if pseudo_inverse:
            raise ValueError(
                "pseudo_inverse=True: pseudobackprop through a convolutional array is not "
                "defined (the pseudoinverse of a kernel bank is not that of its convolution)"
            )
        noise = None if self.device is None else self.device.read_noise
        return _transposed_read(self.W, post, self.geometry, noise, self.budget, self._columns)


class ConvFeedback(FeedbackArray):
    """A random feedback kernel bank: RBP / FA through a convolutional layer.

    ``C`` has the forward kernel bank's shape (E, C_out, C_in·k·k) and :meth:`read` is
    :meth:`ConvArray.transport` with C in place of W, so with C = W the two give the same bits.
    A :class:`lpfa.crossbar.FeedbackArray` (``attach``, ``tick`` and the update's write are its
    own) whose read and update run over patches.
    """

    def __init__(self, C, geom: Geometry, device=None, *, budget: int = PATCH_BUDGET):
        if C.ndim != 3 or C.shape[2] != geom.taps:
            raise ValueError(f"C.shape={C.shape}: need (E, C_out, {geom.taps}) for {geom}")
        self.geometry = geom
        self.budget = int(budget)
        self._columns = Workspace()  # the transposed read's columns, kept between steps
        super().__init__(C, device)

    def read(self, signal):
        """Deliver ``signal`` (E, B, C_out, H', W') to the layer below: (E, B, C_in, H, W)."""
        noise = None if self.device is None else self.device.read_noise
        return _transposed_read(self.C, signal, self.geometry, noise, self.budget, self._columns)

    def update(self, signal, activity, scale: float, decay: float = 0.0) -> None:
        """Adaptive feedback: C += scale · Σ_b Σ_p signal_{b,p} ⊗ patch_{b,p}(activity) − decay · C
        (what :meth:`ConvArray.update` adds to W for the same signals)."""
        E, _, taps = self.C.shape
        g = self.geometry
        step = _chunk(self.budget, (1 if activity.ndim == 4 else E) * taps * g.positions)
        cols_of = lambda b0, b1: im2col(activity[..., b0:b1, :, :, :], g)  # noqa: E731
        dC, _ = _outer(signal * scale, cols_of, step)
        self._add(dC, decay)


class MapFeedback(FeedbackArray):
    """SRBP / DFA onto a convolutional layer: a dense matrix from N_L output units to every
    (channel, position) of the layer's feature maps.

    ``C`` (E, N_L, C·H·W), read e ↦ unflatten(e C): the :class:`lpfa.crossbar.FeedbackArray` of a
    dense layer of C·H·W units, with the maps' shape put back.
    """

    def __init__(self, C, out_shape, device=None):
        self.out_shape = tuple(int(n) for n in out_shape)
        if C.ndim != 3 or C.shape[2] != math.prod(self.out_shape):
            raise ValueError(
                f"C.shape={C.shape}: need (E, N_L, C·H·W) = (E, N_L, {math.prod(self.out_shape)})"
            )
        super().__init__(C, device)

    def read(self, signal):
        """Deliver ``signal`` (E, B, N_L) to the maps: (E, B, C, H, W)."""
        return unflatten(super().read(signal), self.out_shape)

    def update(self, signal, activity, scale: float, decay: float = 0.0) -> None:
        """Adaptive feedback: C += scale · signalᵀ flatten(activity) − decay · C."""
        super().update(signal, flatten(activity), scale, decay)


class MaxPool:
    """k×k max-pooling at stride s of (…, C, H, W) maps; padding never wins (it reads −∞).

    :meth:`forward` returns the maxima and, for each, which tap of its window held it;
    :meth:`backward` sends each error to that position (a position that is the maximum of several
    overlapping windows receives the sum of their errors).

    Ties: the first maximal tap in row-major order within the window (top row first, then left
    first) takes the whole error, as ``argmax`` would choose.
    """

    def __init__(self, in_shape, kernel: int, stride: int | None = None, padding="valid"):
        self.geometry = geometry(in_shape, kernel, kernel if stride is None else stride, padding)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(C, H', W')."""
        return (self.geometry.in_shape[0], *self.geometry.out_hw)

    def forward(self, x):
        """Maxima of every window.

        Parameters
        ----------
        x : array, shape (…, C, H, W)

        Returns
        -------
        y : array, shape (…, C, H', W')
        arg : array of small ints, same shape
            The tap i·k + j of each window where its maximum lies.
        """
        xp = get_xp(x)
        g = self.geometry
        if tuple(x.shape[-3:]) != g.in_shape:
            raise ValueError(f"x.shape={tuple(x.shape)}: need (…, {g.in_shape})")
        src = x
        if any(g.pads):
            src = xp.full((*x.shape[:-2], *g.padded_hw), -xp.inf, dtype=x.dtype)
            rows, cols = g.interior()
            src[..., rows, cols] = x
        k = g.kernel
        dtype = xp.uint8 if k * k <= 255 else xp.int32
        taps = [src[(..., *g.window(t // k, t % k))] for t in range(k * k)]
        best = taps[0].copy()  # C-ordered, and never the input itself
        for v in taps[1:]:
            xp.maximum(best, v, out=best)
        # which tap: the first one equal to the maximum, found from the last tap down with the
        # branchless arg -= hit · (arg − t) (exact in the integer type, uint8 wrapping around),
        # not a masked copy per tap, which took 3x as long
        arg = xp.full(best.shape, k * k - 1, dtype=dtype)
        hit = xp.empty(best.shape, dtype=bool)
        diff = xp.empty(best.shape, dtype=dtype)
        for t in range(k * k - 2, -1, -1):
            xp.equal(taps[t], best, out=hit)
            xp.subtract(arg, dtype(t), out=diff)
            xp.multiply(diff, hit, out=diff)
            xp.subtract(arg, diff, out=arg)
        return best, arg

    def backward(self, dy, arg):
        """Route the error of each window to its maximum's position.

        Parameters
        ----------
        dy : array, shape (…, C, H', W')
        arg : array
            From :meth:`forward`.

        Returns
        -------
        array, shape (…, C, H, W)
        """
        xp = get_xp(dy, arg)
        g = self.geometry
        k = g.kernel
        dx = xp.zeros((*dy.shape[:-2], *g.padded_hw), dtype=dy.dtype)
        hit = xp.empty(arg.shape, dtype=bool)
        routed = xp.empty(dy.shape, dtype=dy.dtype)
        for t in range(k * k):
            xp.equal(arg, t, out=hit)
            xp.multiply(dy, hit, out=routed)  # dy where the maximum was tap t, else 0 (±0)
            dx[(..., *g.window(t // k, t % k))] += routed
        rows, cols = g.interior()
        return dx[..., rows, cols]
