"""Data loading: checksums, bundled MNIST, parts, cache, and what the errors tell the user."""

import gzip
import hashlib

import numpy as np
import pytest

from lpfa import config as C
from lpfa import data
from lpfa.backend import to_numpy


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty data home, so tests never touch the user's cache."""
    monkeypatch.setenv("LPFA_DATA", str(tmp_path))
    return tmp_path


def test_bundled_mnist_loads_verified_and_is_cached(home):
    xtr, ytr, xte, yte = data.load_idx("mnist")
    assert (xtr.shape, ytr.shape, xte.shape, yte.shape) == (
        (60000, 784),
        (60000,),
        (10000, 784),
        (10000,),
    )
    assert xtr.dtype == np.uint8
    # label counts published with the data set
    np.testing.assert_array_equal(
        np.bincount(ytr), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
    np.testing.assert_array_equal(
        np.bincount(yte), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
    assert round(float(xtr.mean()), 4) == 33.3184
    assert (home / "mnist" / "train-images-idx3-ubyte.gz").is_file()  # reassembled and cached


def test_corrupt_cached_file_is_refused_with_instructions(home):
    data.load_idx("mnist")
    path = home / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(data.DataError, match=r"has SHA-256 .* expected f7ae60f9.*delete it"):
        data.load_idx("mnist")


def test_files_split_in_parts_are_reassembled(home):
    data.load_idx("mnist")
    whole = home / "mnist" / "t10k-labels-idx1-ubyte.gz"
    blob = whole.read_bytes()
    whole.unlink()
    (home / "mnist" / "t10k-labels-idx1-ubyte.gz.part00").write_bytes(blob[:1000])
    (home / "mnist" / "t10k-labels-idx1-ubyte.gz.part01").write_bytes(blob[1000:])
    assert data.load_idx("mnist")[3].shape == (10000,)
    assert whole.read_bytes() == blob


def test_missing_fashion_mnist_explains_what_to_do(home):
    with pytest.raises(data.DataError) as err:
        data.load_idx("fashion-mnist")
    text = str(err.value)
    assert str(home / "fashion-mnist") in text
    assert "train-images-idx3-ubyte.gz  sha256 3aede38d" in text
    assert "LPFA_DATA" in text


def test_unknown_set_is_refused():
    with pytest.raises(data.DataError, match="must be one of mnist, fashion-mnist"):
        data.load_idx("cifar10")


def test_load_scales_pixels_and_one_hot_encodes(home):
    ds = data.load(C.DataConfig(n_train=100, n_test=50), (784, 10), "float32")
    assert ds.x_train.shape == (100, 784)
    x = ds.inputs(ds.x_train)
    assert x.dtype == np.float32
    assert x.min() >= 0.0
    assert x.max() == 1.0
    np.testing.assert_array_equal(ds.t_train.argmax(1), ds.y_train)
    assert ds.t_test.shape == (50, 10)
    assert ds.classification


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_image_sets_keep_their_bytes_and_convert_bit_for_bit_as_a_whole_set_cast(home, dtype):
    ds = data.load(C.DataConfig(name="mnist", n_train=300, n_test=200), (784, 10), dtype)
    assert ds.x_train.dtype == ds.x_test.dtype == np.uint8  # a quarter of float32's bytes
    assert ds.scale == 1 / 255
    assert ds.dtype == np.dtype(dtype)
    xtr, _, xte, _ = data.load_idx("mnist")
    for stored, raw in ((ds.x_train, xtr[:300]), (ds.x_test, xte[:200])):
        np.testing.assert_array_equal(stored, raw)
        whole = raw.astype(dtype) * np.asarray(1.0 / 255.0, dtype=dtype)  # the float path
        x = ds.inputs(stored)
        assert x.dtype == np.dtype(dtype)
        assert x.tobytes() == whole.tobytes()  # the same bits, not only the same values
        rows = np.array([7, 0, 199, 3])  # a gathered minibatch converts as its rows did
        assert ds.inputs(stored[rows]).tobytes() == whole[rows].tobytes()
    # a cut is its own copy: the decompressed file (47 MB for the training images) is not kept
    assert ds.x_train.base is None or ds.x_train.base.nbytes == ds.x_train.nbytes


def test_synthetic_tasks_are_stored_as_their_float_inputs():
    cfg = C.DataConfig(name="linear-teacher", n_train=30, n_test=10, seed=1)
    ds = data.load(cfg, (30, 20, 10), "float32")
    assert ds.scale is None
    assert ds.x_train.dtype == ds.dtype == np.float32
    assert ds.inputs(ds.x_train) is ds.x_train  # nothing to convert, nothing copied


def test_conversion_is_one_code_path_on_every_backend(xp):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(17, 9), dtype=np.uint8)
    want = x.astype(np.float32) * np.asarray(1.0 / 255.0, dtype=np.float32)
    got = data.as_inputs(xp.asarray(x), 1.0 / 255.0, "float32")
    assert isinstance(got, type(xp.asarray(want)))  # stays on the backend that holds x
    assert got.dtype == np.float32
    assert to_numpy(got).tobytes() == want.tobytes()
    same = xp.asarray(want)
    assert data.as_inputs(same, None, "float32") is same


def test_linear_teacher_is_an_exact_linear_map_and_reproducible():
    cfg = C.DataConfig(name="linear-teacher", n_train=300, n_test=100, seed=4)
    a = data.load(cfg, (30, 20, 10), "float64")
    b = data.load(cfg, (30, 20, 10), "float64")
    np.testing.assert_array_equal(a.x_train, b.x_train)
    T, *_ = np.linalg.lstsq(a.x_train, a.t_train, rcond=None)
    np.testing.assert_allclose(a.x_test @ T, a.t_test, atol=1e-9)
    assert np.all(np.abs(T) <= 1.0)
    assert not a.classification


def test_tanh_teacher_has_the_teacher_sizes():
    cfg = C.DataConfig(name="tanh-teacher", n_train=50, n_test=10, teacher_sizes=(30, 20, 10, 10))
    ds = data.load(cfg, (30, 20, 10, 10), "float32")
    assert ds.x_train.shape == (50, 30)
    assert ds.t_train.shape == (50, 10)


def test_bundled_files_are_the_originals():
    # the bundle itself must verify: SHA-256 of reassembled files equals the published ones
    root = data._bundled("mnist")
    for fname, digest in data.IDX_FILES["mnist"].items():
        blob, _ = data._read_whole_or_parts(root, fname)
        assert hashlib.sha256(blob).hexdigest() == digest
