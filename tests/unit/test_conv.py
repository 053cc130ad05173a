"""Convolutional arrays: the conv array is a dense array on its Toeplitz matrix, BP through it is
the gradient, RBP with C = W is BP to the bit, pooling routes each error to its window's maximum,
and members are independent single runs."""

import numpy as np
import pytest

from lpfa.backend import get_xp, to_numpy
from lpfa.conv import (
    ConvArray,
    ConvFeedback,
    MapFeedback,
    MaxPool,
    flatten,
    geometry,
    unflatten,
)
from lpfa.crossbar import Crossbar

# (in_shape, C_out, kernel, stride, padding): odd and even kernels, strides 1 and 2, non-square
CASES = [
    ((2, 5, 4), 3, 3, 1, "same"),
    ((2, 6, 5), 3, 2, 2, 1),
    ((1, 7, 7), 2, 5, 1, "same"),
    ((3, 6, 6), 2, 3, 2, "valid"),
]


def toeplitz(W, in_shape, kernel, stride, pads):
    """The dense matrix (E, C_out·H'·W', C·H·W) of a convolution, entry by entry."""
    E, Co, _ = W.shape
    C, H, Wd = in_shape
    t, b, left, r = pads
    ho = (H + t + b - kernel) // stride + 1
    wo = (Wd + left + r - kernel) // stride + 1
    T = np.zeros((E, Co * ho * wo, C * H * Wd))
    for o in range(Co):
        for y in range(ho):
            for x in range(wo):
                row = (o * ho + y) * wo + x
                for c in range(C):
                    for i in range(kernel):
                        for j in range(kernel):
                            iy, ix = y * stride + i - t, x * stride + j - left
                            if 0 <= iy < H and 0 <= ix < Wd:
                                col = (c * H + iy) * Wd + ix
                                T[:, row, col] += W[:, o, (c * kernel + i) * kernel + j]
    return T, (Co, ho, wo)


def make(xp, case, E=2, seed=0, **kw):
    in_shape, Co, k, s, pad = case
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((E, Co, in_shape[0] * k * k))
    b = rng.standard_normal((E, Co))
    conv = ConvArray(
        xp.asarray(W), xp.asarray(b), in_shape=in_shape, kernel=k, stride=s, padding=pad, **kw
    )
    T, out_shape = toeplitz(W, in_shape, k, s, conv.geometry.pads)
    bT = np.repeat(b, out_shape[1] * out_shape[2], axis=1)
    return conv, Crossbar(xp.asarray(T), xp.asarray(bT)), out_shape, rng


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shared", [True, False])
def test_conv_read_equals_the_dense_toeplitz_read(xp, case, shared):
    conv, dense, out_shape, rng = make(xp, case)
    x = rng.standard_normal((3, *case[0]) if shared else (2, 3, *case[0]))
    S = conv.read(xp.asarray(x))
    assert S.shape == (2, 3, *out_shape)
    ref = dense.read(xp.asarray(flatten(x)))
    np.testing.assert_allclose(to_numpy(flatten(S)), to_numpy(ref), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_transposed_read_equals_the_dense_transpose(xp, case):
    conv, dense, out_shape, rng = make(xp, case)
    post = rng.standard_normal((2, 3, *out_shape))
    back = conv.transport(xp.asarray(post))
    assert back.shape == (2, 3, *case[0])
    ref = dense.transport(xp.asarray(flatten(post)))
    np.testing.assert_allclose(to_numpy(flatten(back)), to_numpy(ref), rtol=1e-12, atol=1e-12)


def fold(dT, W_shape, in_shape, kernel, stride, pads):
    """The kernel change a dense change dT makes when every weight's copies are summed."""
    E = dT.shape[0]
    # the Toeplitz map is linear in W: read off the coefficient of each kernel entry
    dW = np.zeros(W_shape)
    for n in range(W_shape[1] * W_shape[2]):
        unit = np.zeros((1, *W_shape[1:]))
        unit.reshape(-1)[n] = 1.0
        T, _ = toeplitz(unit, in_shape, kernel, stride, pads)
        dW.reshape(E, -1)[:, n] = (dT * T).sum(axis=(1, 2))
    return dW


@pytest.mark.parametrize("case", CASES[:3])
@pytest.mark.parametrize("shared", [True, False])
def test_update_equals_the_dense_update_folded_back(xp, case, shared):
    conv, dense, out_shape, rng = make(xp, case)
    x = rng.standard_normal((4, *case[0]) if shared else (2, 4, *case[0]))
    post = rng.standard_normal((2, 4, *out_shape))
    W0, b0 = to_numpy(conv.W).copy(), to_numpy(conv.b).copy()
    T0, bT0 = to_numpy(dense.W).copy(), to_numpy(dense.b).copy()
    conv.update(xp.asarray(post), xp.asarray(x), 0.3)
    dense.update(xp.asarray(flatten(post)), xp.asarray(flatten(x)), 0.3)
    pads = conv.geometry.pads
    dW = fold(to_numpy(dense.W) - T0, W0.shape, case[0], case[2], case[3], pads)
    np.testing.assert_allclose(to_numpy(conv.W) - W0, dW, rtol=1e-10, atol=1e-12)
    db = (to_numpy(dense.b) - bT0).reshape(2, out_shape[0], -1).sum(axis=2)
    np.testing.assert_allclose(to_numpy(conv.b) - b0, db, rtol=1e-10, atol=1e-12)


def test_decay_and_momentum_are_the_crossbars(xp):
    # two updates with decay λ and momentum μ: v1 = g1 − ηλW0, W1 = W0 + v1;
    # v2 = μ v1 + g2 − ηλW1, W2 = W1 + v2 (g = η/B Σ post ⊗ patch)
    conv, _, out_shape, rng = make(xp, CASES[0])
    x = xp.asarray(rng.standard_normal((4, *CASES[0][0])))
    posts = [rng.standard_normal((2, 4, *out_shape)) for _ in range(2)]
    W = to_numpy(conv.W).copy()
    v = np.zeros_like(W)
    eta, lam, mu = 0.2, 0.1, 0.9
    for post in posts:
        g, _ = conv.outer(xp.asarray(post * (eta / 4)), x)
        v = mu * v + to_numpy(g) - eta * lam * W
        W = W + v
        conv.update(xp.asarray(post), x, eta / 4, weight_decay=lam, momentum=mu)
    np.testing.assert_allclose(to_numpy(conv.W), W, rtol=1e-12, atol=1e-14)


def test_patches_are_kept_for_the_update_of_the_image_that_was_read(xp):
    conv, _, out_shape, rng = make(xp, CASES[1])
    x = xp.asarray(rng.standard_normal((2, 4, *CASES[1][0])))
    post = xp.asarray(rng.standard_normal((2, 4, *out_shape)))
    fresh = conv.outer(post, x)  # nothing kept: gathered
    conv.read(x)
    assert conv._kept is not None
    kept = conv.outer(post, x)
    assert conv._kept is None  # used once, then let go
    for a, b in zip(fresh, kept, strict=True):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


@pytest.mark.parametrize("shared", [True, False])
def test_chunks_of_examples_give_the_one_chunk_result(xp, shared):
    case = CASES[0]
    big, _, out_shape, rng = make(xp, case)
    small, _, _, _ = make(xp, case, budget=1)  # one example per chunk
    x = xp.asarray(rng.standard_normal((5, *case[0]) if shared else (2, 5, *case[0])))
    post = xp.asarray(rng.standard_normal((2, 5, *out_shape)))
    pairs = [
        (big.read(x), small.read(x)),
        (big.transport(post), small.transport(post)),
        *zip(big.outer(post, x), small.outer(post, x), strict=True),
    ]
    for a, b in pairs:
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-12, atol=1e-12)


def test_per_example_quantized_update_quantizes_each_examples_change(xp):
    conv, _, out_shape, rng = make(xp, CASES[0], budget=1)
    x = rng.standard_normal((3, *CASES[0][0]))
    post = rng.standard_normal((2, 3, *out_shape))
    W0, b0 = to_numpy(conv.W).copy(), to_numpy(conv.b).copy()
    q = lambda a: get_xp(a).sign(a) * 0.5  # noqa: E731  nonlinear: Σ q(change) ≠ q(Σ change)
    eta = 0.3
    conv.update(xp.asarray(post), xp.asarray(x), eta / 3, per_example=q)
    dW = np.zeros_like(W0)
    db = np.zeros_like(b0)
    for n in range(3):
        one, _, _, _ = make(np, CASES[0])
        g, gb = one.outer(post[:, n : n + 1] * eta, x[n : n + 1])
        dW += np.sign(g) * 0.5
        db += np.sign(gb) * 0.5
    np.testing.assert_allclose(to_numpy(conv.W), W0 + dW / 3, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(to_numpy(conv.b), b0 + db / 3, rtol=1e-12, atol=1e-14)


def test_pseudo_inverse_transport_is_refused(xp):
    conv, _, out_shape, _ = make(xp, CASES[0])
    with pytest.raises(ValueError, match="pseudobackprop through a convolutional array"):
        conv.transport(xp.zeros((2, 1, *out_shape)), pseudo_inverse=True)


# --- a small conv net: BP, finite differences, RBP with C = W --------------------------------


def net(xp, seed=0, E=2):
    """conv 3×3 stride 1 same (tanh) → max-pool 3×3 stride 2 same → conv 3×3 stride 2 (tanh) →
    flatten → dense → squared loss."""
    rng = np.random.default_rng(seed)
    c1 = ConvArray(
        xp.asarray(rng.standard_normal((E, 3, 2 * 9)) * 0.5),
        xp.asarray(rng.standard_normal((E, 3)) * 0.1),
        in_shape=(2, 7, 6),
        kernel=3,
    )
    pool = MaxPool(c1.out_shape, 3, 2, "same")
    c2 = ConvArray(
        xp.asarray(rng.standard_normal((E, 4, 3 * 9)) * 0.5),
        xp.asarray(rng.standard_normal((E, 4)) * 0.1),
        in_shape=pool.out_shape,
        kernel=3,
        stride=2,
        padding=1,
    )
    n = int(np.prod(c2.out_shape))
    top = Crossbar(xp.asarray(rng.standard_normal((E, 3, n)) * 0.5), xp.zeros((E, 3)))
    x = xp.asarray(rng.standard_normal((5, 2, 7, 6)))
    t = xp.asarray(rng.standard_normal((E, 5, 3)))
    return c1, pool, c2, top, x, t


def forward(xp, c1, pool, c2, top, x):
    h1 = xp.tanh(c1.read(x))
    p1, arg = pool.forward(h1)
    h2 = xp.tanh(c2.read(p1))
    return h1, p1, arg, h2, top.read(flatten(h2))


def loss(xp, layers, x, t):
    *_, y = forward(xp, *layers, x)
    return to_numpy(0.5 * ((y - t) ** 2).sum(axis=(1, 2)))  # per member


def backward(xp, layers, x, t, feedback=None):
    """Errors R (∂loss/∂S) of both conv layers: through the transposed reads (BP), or through
    ``feedback`` = (C of the top layer, ConvFeedback of c2) for RBP."""
    _, pool, c2, top = layers
    h1, p1, arg, h2, y = forward(xp, *layers, x)
    e = y - t
    d2 = top.transport(e) if feedback is None else e @ feedback[0]
    R2 = unflatten(d2, c2.out_shape) * (1 - h2 * h2)
    d1 = c2.transport(R2) if feedback is None else feedback[1].read(R2)
    R1 = pool.backward(d1, arg) * (1 - h1 * h1)
    return R1, R2, p1


def test_conv_bp_equals_finite_differences_along_a_random_direction(xp):
    layers = list(net(xp)[:4])
    _, _, _, _, x, t = net(xp)
    R1, R2, p1 = backward(xp, layers, x, t)
    rng = np.random.default_rng(1)
    eps = 1e-6
    for layer, R, pre in ((layers[0], R1, x), (layers[2], R2, p1)):
        g, gb = layer.outer(R, pre)
        D = rng.standard_normal(layer.W.shape)
        Db = rng.standard_normal(layer.b.shape)
        W0, b0 = layer.W.copy(), layer.b.copy()
        diffs = []
        for sign in (1, -1):
            layer.W[...] = W0 + xp.asarray(sign * eps * D)
            layer.b[...] = b0 + xp.asarray(sign * eps * Db)
            diffs.append(loss(xp, layers, x, t))
        layer.W[...], layer.b[...] = W0, b0
        fd = (diffs[0] - diffs[1]) / (2 * eps)
        analytic = (to_numpy(g) * D).sum(axis=(1, 2)) + (to_numpy(gb) * Db).sum(axis=1)
        np.testing.assert_allclose(analytic, fd, rtol=1e-6)
    # and the error delivered to the input (through both transposed reads and the pooling)
    dx = layers[0].transport(R1)
    X = rng.standard_normal((2, *x.shape))
    xs = [xp.asarray(np.broadcast_to(to_numpy(x), X.shape) + s * eps * X) for s in (1, -1)]
    fd = (loss(xp, layers, xs[0], t) - loss(xp, layers, xs[1], t)) / (2 * eps)
    np.testing.assert_allclose((to_numpy(dx) * X).sum(axis=(1, 2, 3, 4)), fd, rtol=1e-6)


def test_rbp_through_conv_with_c_equal_w_is_bp_bit_for_bit(xp):
    c1, pool, c2, top, x, t = net(xp)
    layers = [c1, pool, c2, top]
    bp = backward(xp, layers, x, t)
    fb = (top.W.copy(), ConvFeedback(c2.W.copy(), c2.geometry))
    rbp = backward(xp, layers, x, t, feedback=fb)
    for a, b in zip(bp, rbp, strict=True):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    for layer, R, pre in ((c1, bp[0], x), (c2, bp[1], bp[2])):
        ga = layer.outer(R, pre)
        gb = layer.outer(rbp[layers.index(layer) // 2], pre)
        np.testing.assert_array_equal(to_numpy(ga[0]), to_numpy(gb[0]))
    # and a random bank delivers something else
    rng = np.random.default_rng(3)
    other = ConvFeedback(xp.asarray(rng.standard_normal(c2.W.shape)), c2.geometry)
    assert not np.allclose(to_numpy(other.read(bp[1])), to_numpy(c2.transport(bp[1])))


def test_adaptive_feedback_bank_moves_as_the_kernel_does(xp):
    conv, _, out_shape, rng = make(xp, CASES[0])
    fb = ConvFeedback(conv.W.copy(), conv.geometry)
    x = xp.asarray(rng.standard_normal((2, 4, *CASES[0][0])))
    post = xp.asarray(rng.standard_normal((2, 4, *out_shape)))
    conv.update(post, x, 0.1, weight_decay=0.5)
    fb.update(post, x, 0.1, decay=0.1 * 4 * 0.5)  # decay η·λ, as Crossbar.apply computes it
    np.testing.assert_array_equal(to_numpy(fb.C), to_numpy(conv.W))


def test_srbp_map_feedback_is_a_dense_read_onto_channels_and_positions(xp):
    rng = np.random.default_rng(0)
    C = rng.standard_normal((2, 3, 4 * 5 * 6))
    e = rng.standard_normal((2, 7, 3))
    fb = MapFeedback(xp.asarray(C.copy()), (4, 5, 6))  # updated in place
    out = fb.read(xp.asarray(e))
    assert out.shape == (2, 7, 4, 5, 6)
    ref = np.einsum("ebn,enchw->ebchw", e, C.reshape(2, 3, 4, 5, 6))
    np.testing.assert_allclose(to_numpy(out), ref, rtol=1e-12)
    act = rng.standard_normal((2, 7, 4, 5, 6))
    fb.update(xp.asarray(e), xp.asarray(act), 0.5)
    np.testing.assert_allclose(
        to_numpy(fb.C), C + 0.5 * np.einsum("ebn,ebm->enm", e, act.reshape(2, 7, -1)), rtol=1e-12
    )
    with pytest.raises(ValueError, match=r"need \(E, N_L, C·H·W\)"):
        MapFeedback(xp.asarray(C), (4, 5, 5))


# --- pooling -------------------------------------------------------------------------------------


def test_pooling_sends_each_error_to_its_windows_maximum(xp):
    rng = np.random.default_rng(0)
    x = rng.permutation(2 * 3 * 2 * 6 * 6).reshape(2, 3, 2, 6, 6).astype(float)  # no ties
    pool = MaxPool((2, 6, 6), 2)  # non-overlapping 2×2
    y, arg = pool.forward(xp.asarray(x))
    windows = x.reshape(2, 3, 2, 3, 2, 3, 2).transpose(0, 1, 2, 3, 5, 4, 6)
    windows = windows.reshape(2, 3, 2, 3, 3, 4)
    np.testing.assert_array_equal(to_numpy(y), windows.max(-1))
    dy = rng.standard_normal(y.shape)
    dx = to_numpy(pool.backward(xp.asarray(dy), arg))
    is_max = x == np.repeat(np.repeat(windows.max(-1), 2, axis=-2), 2, axis=-1)
    np.testing.assert_array_equal(dx[~is_max], 0.0)
    np.testing.assert_array_equal(dx[is_max], np.repeat(np.repeat(dy, 2, -2), 2, -1)[is_max])


def test_overlapping_windows_add_their_errors_at_a_shared_maximum(xp):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 3, 7, 8))
    pool = MaxPool((3, 7, 8), 3, 2, "same")
    g = pool.geometry
    assert pool.out_shape == (3, 4, 4)
    y, arg = pool.forward(xp.asarray(x))
    dy = rng.standard_normal(y.shape)
    dx = to_numpy(pool.backward(xp.asarray(dy), arg))
    ref = np.zeros_like(x)
    ref_y = np.zeros(y.shape)
    t, left = g.pads[0], g.pads[2]
    for idx in np.ndindex(*y.shape[:3]):
        for oy in range(4):
            for ox in range(4):
                best, where = -np.inf, None
                for i in range(3):  # row-major: the first maximum wins
                    for j in range(3):
                        iy, ix = 2 * oy + i - t, 2 * ox + j - left
                        if 0 <= iy < 7 and 0 <= ix < 8 and x[(*idx, iy, ix)] > best:
                            best, where = x[(*idx, iy, ix)], (iy, ix)
                ref_y[(*idx, oy, ox)] = best
                ref[(*idx, *where)] += dy[(*idx, oy, ox)]
    np.testing.assert_array_equal(to_numpy(y), ref_y)
    np.testing.assert_allclose(dx, ref, rtol=1e-15)


def test_ties_go_to_the_first_tap_and_padding_never_wins(xp):
    x = np.full((1, 1, 1, 4, 4), -3.0)  # all equal and negative: padding (−∞) must not win
    pool = MaxPool((1, 4, 4), 3, 2, "same")
    y, arg = pool.forward(xp.asarray(x))
    np.testing.assert_array_equal(to_numpy(y), -3.0)
    dx = to_numpy(pool.backward(xp.ones(y.shape), arg))
    # windows start at rows/cols 0 and 2 (padding 0 on top, 1 at the bottom): their first taps
    expect = np.zeros((4, 4))
    expect[0::2, 0::2] = 1.0
    np.testing.assert_array_equal(dx[0, 0, 0], expect)


# --- members, backends, shapes -------------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False])
def test_members_equal_single_runs(xp, shared):
    case = CASES[1]
    conv, _, out_shape, rng = make(xp, case, E=3)
    W0, b0 = to_numpy(conv.W).copy(), to_numpy(conv.b).copy()
    x = rng.standard_normal((4, *case[0]) if shared else (3, 4, *case[0]))
    post = rng.standard_normal((3, 4, *out_shape))
    S = to_numpy(conv.read(xp.asarray(x)))
    back = to_numpy(conv.transport(xp.asarray(post)))
    conv.update(xp.asarray(post), xp.asarray(x), 0.1, momentum=0.9)
    for e in range(3):
        one = ConvArray(
            xp.asarray(W0[e : e + 1]),
            xp.asarray(b0[e : e + 1]),
            in_shape=case[0],
            kernel=case[2],
            stride=case[3],
            padding=case[4],
        )
        xe = x if shared else x[e : e + 1]
        np.testing.assert_allclose(S[e : e + 1], to_numpy(one.read(xp.asarray(xe))), rtol=1e-13)
        pe = xp.asarray(post[e : e + 1])
        np.testing.assert_allclose(back[e : e + 1], to_numpy(one.transport(pe)), rtol=1e-13)
        one.update(pe, xp.asarray(xe), 0.1, momentum=0.9)
        np.testing.assert_allclose(to_numpy(conv.W)[e], to_numpy(one.W)[0], rtol=1e-13)
        np.testing.assert_allclose(to_numpy(conv.b)[e], to_numpy(one.b)[0], rtol=1e-13)


def test_no_device_syncs_in_a_conv_step(standin):
    from tests.conftest import device_syncs

    conv, _, out_shape, rng = make(standin, CASES[0])
    pool = MaxPool(out_shape, 3, 2, "same")
    x = standin.asarray(rng.standard_normal((4, *CASES[0][0])).astype("float32"))

    def step():
        S = standin.tanh(conv.read(x))
        y, arg = pool.forward(S)
        d = pool.backward(y, arg)
        conv.transport(d)
        conv.update(d, x, 0.1, momentum=0.9)
        return S

    S, syncs = device_syncs(step)
    assert syncs == {}
    assert S.dtype == np.float64  # W is float64 here; a float32 net stays float32 below
    conv32 = ConvArray(
        conv.W.astype("float32"), conv.b.astype("float32"), in_shape=CASES[0][0], kernel=3
    )
    assert conv32.read(x).dtype == np.float32


def test_geometry_of_baldis_layers():
    conv = geometry((3, 32, 32), 5, 1, "same")
    assert (conv.pads, conv.out_hw, conv.taps) == ((2, 2, 2, 2), (32, 32), 75)
    pool = geometry((64, 32, 32), 3, 2, "same")
    assert (pool.pads, pool.out_hw) == ((0, 1, 0, 1), (16, 16))
    assert geometry((64, 32, 32), 3, 2, "valid").out_hw == (15, 15)
    assert geometry((1, 28, 28), 5, 1, "same").out_hw == (28, 28)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"padding": "full"}, "padding='full': must be 'same', 'valid'"),
        ({"padding": -1}, "padding=-1"),
        ({"kernel": 9, "padding": "valid"}, "does not fit"),
        ({"stride": 0}, "stride=0"),
    ],
)
def test_bad_geometry_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        geometry((1, 5, 5), **{"kernel": 3, **kwargs})


def test_shapes_are_checked():
    W = np.zeros((1, 2, 18))
    with pytest.raises(ValueError, match=r"need \(E, C_out, C_in·k·k\)"):
        ConvArray(W, np.zeros((1, 2)), in_shape=(3, 5, 5), kernel=3)
    conv = ConvArray(W, np.zeros((1, 2)), in_shape=(2, 5, 5), kernel=3)
    with pytest.raises(ValueError, match=r"x.shape=\(4, 2, 5, 6\)"):
        conv.read(np.zeros((4, 2, 5, 6)))
