"""The CPU stand-in for CuPy keeps CuPy's rules: a test per documented behaviour."""

import numpy as np
import pytest

from lpfa import backend
from tests import cupy_standin as cp


@pytest.fixture
def d():
    cp.counter.reset()
    return cp.asarray(np.arange(6.0).reshape(2, 3))


def test_no_implicit_conversion_to_the_host(d):
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(d)
    with pytest.raises(TypeError, match="Implicit conversion"):
        d.__array__()


@pytest.mark.parametrize(
    "mix",
    [
        lambda d: d + np.ones(3),
        lambda d: np.ones(3) * d,
        lambda d: d @ np.ones((3, 2)),
        lambda d: cp.add(d, np.ones(3)),
        lambda d: cp.where(d > 1, np.zeros(3), d),
        lambda d: cp.stack([d, np.zeros((2, 3))]),
        lambda d: cp.maximum(d, np.zeros(())),  # a 0-d host array is a host array too
        lambda d: d.__setitem__(0, np.zeros(3)),
        lambda d: d[np.array([0, 1])],
        lambda d: cp.tanh([1.0, 2.0]),
        lambda d: np.stack([d, d]),  # a numpy function on device arrays
    ],
)
def test_host_arrays_are_refused_by_device_functions(d, mix):
    with pytest.raises(TypeError):
        mix(d)


def test_scalars_mix_with_device_arrays(d):
    for r in (d * 2, 2.0 - d, np.float32(3) * d, d / np.float64(2), np.tanh(d), abs(-d)):
        assert type(r) is cp.ndarray
    assert (np.float32(3) * cp.asarray(np.ones(2, np.float32))).dtype == np.float32  # NEP 50


def test_reductions_and_integer_indexing_give_0d_device_arrays(d):
    for r in (d.sum(), cp.max(d), d.mean(), d[1, 2], d.argmax(), cp.count_nonzero(d)):
        assert type(r) is cp.ndarray
        assert r.ndim == 0
    assert cp.counter.syncs == 0


@pytest.mark.parametrize(
    ("read", "reason"),
    [
        (lambda d: float(d[0, 0]), "float"),
        (lambda d: int(d[0, 0]), "int"),
        (lambda d: bool(d[0, 0] > 0), "bool"),
        (lambda d: d.sum().item(), "item"),
        (lambda d: d.tolist(), "tolist"),
        (repr, "repr"),
        (str, "str"),
        (lambda d: f"{d.sum():.2f}", "format"),
        (lambda d: d[d > 2], "boolean mask"),
        (lambda d: d.nonzero(), "nonzero"),
        (cp.flatnonzero, "flatnonzero"),
        (cp.argwhere, "argwhere"),
        (lambda d: cp.where(d > 2), "where"),
        (cp.linalg.pinv, "linalg.pinv"),
        (cp.asnumpy, "get"),
        (lambda d: d.get(), "get"),
        (backend.to_numpy, "get"),
    ],
)
def test_every_host_read_counts_one_sync(d, read, reason):
    with backend.device_module(cp):
        read(d)
    assert dict(cp.counter.reasons) == {reason: 1}


def test_device_work_makes_no_sync(d):
    e = cp.tanh(d @ d.T) * 2 + d.sum(axis=1, keepdims=True)
    e[:, 0] += 1.0
    e = cp.where(e > 3, e, 0.0).astype(np.float32).reshape(-1)[::2]
    assert type(e) is cp.ndarray
    assert cp.counter.syncs == 0


def test_in_place_operators_and_out_keep_the_array(d):
    before = d
    d += 1.0
    d *= d
    assert d is before
    assert cp.tanh(d, out=d) is d
    np.testing.assert_allclose(cp.asnumpy(d), np.tanh((np.arange(6.0).reshape(2, 3) + 1) ** 2))


def test_only_cupys_names_exist():
    g = cp.random.default_rng(0)
    for name in ("random", "standard_normal", "uniform", "integers", "poisson", "binomial"):
        assert callable(getattr(g, name))
    for name in ("normal", "permutation", "choice", "shuffle", "bytes"):
        with pytest.raises(AttributeError):
            getattr(g, name)
    with pytest.raises(AttributeError):
        cp.errstate  # noqa: B018 - CuPy has none
    with pytest.raises(TypeError, match="Unsupported dtype"):
        g.random(3, dtype=np.float16)


def test_the_generator_draws_device_arrays_other_than_numpys():
    a = cp.random.default_rng(7).random(5)
    b = cp.random.default_rng(7).random(5)
    assert type(a) is cp.ndarray
    np.testing.assert_array_equal(cp.asnumpy(a), cp.asnumpy(b))
    assert not np.allclose(cp.asnumpy(a), np.random.default_rng(7).random(5))
    assert cp.random.default_rng(1).random(()).ndim == 0


def test_host_to_device_copies_are_counted(d):
    cp.counter.reset()
    cp.asarray(d)  # already on the device
    assert cp.counter.to_device == 0
    cp.asarray(np.zeros(3))
    cp.asarray([1.0, 2.0])
    assert cp.counter.to_device == 2


def test_the_backend_uses_the_stand_in_exactly_as_cupy(d):
    assert backend.get_xp(d) is np  # not installed: not recognised
    with backend.device_module(cp):
        assert backend.resolve("cupy") is cp
        assert backend.resolve("auto") is cp
        assert backend.cupy_available()
        assert backend.get_xp(d, 1.0) is cp
        with pytest.raises(TypeError, match="mixed"):
            backend.get_xp(d, np.zeros(2))
        assert type(backend.runtime_rng(3, cp).random(2)) is cp.ndarray
        assert not backend.is_host(cp)
    assert backend.resolve("numpy") is np
    assert backend.is_host(np)
