"""CIFAR-10: both official archive formats, made small by the tests with their own hashes pinned,
what the errors tell the user, and Baldi et al.'s conv net on such data for a few steps."""

import hashlib
import io
import os
import pickle
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest

from lpfa import data
from lpfa.conv import ConvArray, MaxPool, flatten, unflatten
from lpfa.crossbar import Crossbar

NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty data home, so tests never touch the user's cache."""
    monkeypatch.setenv("LPFA_DATA", str(tmp_path))
    return tmp_path


def batches(n=3, seed=0):
    """Six batches (images (n, 3, 32, 32) uint8, labels (n,) uint8)."""
    rng = np.random.default_rng(seed)
    return [
        (rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n, np.uint8))
        for _ in NAMES
    ]


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def _py2_style_pickle(obj) -> bytes:
    # the official batches were pickled by Python 2 with numpy 1: numpy arrays under numpy.core
    return pickle.dumps(obj, protocol=3).replace(b"cnumpy._core.", b"cnumpy.core.")


def python_archive(bs) -> bytes:
    files = {"cifar-10-batches-py/batches.meta": _py2_style_pickle({b"num_cases_per_batch": 3})}
    for name, (x, y) in zip(NAMES, bs, strict=True):
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in y],
            b"data": x.reshape(len(x), 3072),
            b"filenames": [b"img.png"] * len(x),
        }
        files[f"cifar-10-batches-py/{name}"] = _py2_style_pickle(batch)
    return _tar(files)


def binary_archive(bs) -> bytes:
    files = {"cifar-10-batches-bin/batches.meta.txt": b"airplane\n"}
    for name, (x, y) in zip(NAMES, bs, strict=True):
        records = np.concatenate([y[:, None], x.reshape(len(x), 3072)], axis=1)
        files[f"cifar-10-batches-bin/{name}.bin"] = records.tobytes()
    return _tar(files)


def put(home, monkeypatch, fname, blob, *, parts=1):
    """Write an archive into the data home and pin its hash in place of the official one."""
    folder = home / "cifar10"
    folder.mkdir(exist_ok=True)
    if parts == 1:
        (folder / fname).write_bytes(blob)
    else:
        cut = np.linspace(0, len(blob), parts + 1).astype(int)
        for k in range(parts):
            (folder / f"{fname}.part{k:02d}").write_bytes(blob[cut[k] : cut[k + 1]])
    monkeypatch.setitem(data.CIFAR_FILES, fname, hashlib.sha256(blob).hexdigest())


@pytest.mark.parametrize(
    ("fname", "make"),
    [("cifar-10-python.tar.gz", python_archive), ("cifar-10-binary.tar.gz", binary_archive)],
)
def test_archives_load_as_the_images_they_hold(home, monkeypatch, fname, make):
    bs = batches()
    put(home, monkeypatch, fname, make(bs))
    xtr, ytr, xte, yte = data.load_cifar10()
    shapes = (xtr.shape, ytr.shape, xte.shape, yte.shape)
    assert shapes == ((15, 3, 32, 32), (15,), (3, 3, 32, 32), (3,))
    assert xtr.dtype == ytr.dtype == np.uint8
    np.testing.assert_array_equal(xtr, np.concatenate([x for x, _ in bs[:5]]))
    np.testing.assert_array_equal(ytr, np.concatenate([y for _, y in bs[:5]]))
    np.testing.assert_array_equal(xte, bs[5][0])
    np.testing.assert_array_equal(yte, bs[5][1])


def test_a_row_is_1024_red_then_green_then_blue_pixels_row_major(home, monkeypatch):
    bs = batches(n=1)
    row = np.zeros(3072, np.uint8)
    row[1024 + 32 * 5 + 7] = 200  # green, row 5, column 7
    bs[0] = (row.reshape(1, 3, 32, 32), bs[0][1])
    blob = binary_archive(bs)
    records = np.frombuffer(_untar(blob, "cifar-10-batches-bin/data_batch_1.bin"), np.uint8)
    assert records[1 + 1024 + 32 * 5 + 7] == 200  # as the CIFAR-10 page describes a record
    put(home, monkeypatch, "cifar-10-binary.tar.gz", blob)
    x = data.load_cifar10()[0]
    assert x[0, 1, 5, 7] == 200
    assert int(x[0].sum()) == 200


def _untar(blob, member):
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        return tar.extractfile(member).read()


def test_missing_archive_says_which_file_to_put_where_and_how_to_get_it(home):
    with pytest.raises(data.DataError) as err:
        data.load_cifar10()
    text = str(err.value)
    assert str(home / "cifar10") in text
    for fname in ("cifar-10-python.tar.gz", "cifar-10-binary.tar.gz"):
        assert f"{fname}  sha256 {data.CIFAR_FILES[fname]}" in text
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in text
    assert "not unpacked" in text
    assert "LPFA_DATA" in text


def test_the_pinned_hashes_are_the_official_archives():
    # as pinned by Keras' cifar10.load_data (python) and TensorFlow Datasets (binary)
    python = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    binary = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
    expected = {"cifar-10-python.tar.gz": python, "cifar-10-binary.tar.gz": binary}
    assert expected == data.CIFAR_FILES


def test_an_archive_that_is_not_the_official_one_is_refused(home):
    (home / "cifar10").mkdir()
    (home / "cifar10" / "cifar-10-python.tar.gz").write_bytes(python_archive(batches()))
    with pytest.raises(data.DataError, match=r"has SHA-256 .* expected 6d958be0.*delete it"):
        data.load_cifar10()


def test_an_archive_in_parts_is_reassembled_and_cached(home, monkeypatch):
    blob = binary_archive(batches())
    put(home, monkeypatch, "cifar-10-binary.tar.gz", blob, parts=3)
    assert data.load_cifar10()[0].shape == (15, 3, 32, 32)
    assert (home / "cifar10" / "cifar-10-binary.tar.gz").read_bytes() == blob


class _Evil:
    def __reduce__(self):
        return (os.system, ("exit 3",))


def test_a_pickle_naming_anything_but_numpy_arrays_is_refused(home, monkeypatch):
    blob = _tar({f"cifar-10-batches-py/{name}": pickle.dumps({b"data": _Evil()}) for name in NAMES})
    put(home, monkeypatch, "cifar-10-python.tar.gz", blob)  # even with its hash pinned
    with pytest.raises(data.DataError, match=r"pickle names .*system: refused"):
        data.load_cifar10()


def test_load_gives_rows_of_3072_scaled_pixels_and_one_hot_targets(home, monkeypatch):
    bs = batches()
    put(home, monkeypatch, "cifar-10-python.tar.gz", python_archive(bs))
    cfg = SimpleNamespace(name="cifar10", n_train=7, n_test=2)  # until DataName has cifar10
    ds = data.load(cfg, (3072, 10), "float32")
    assert ds.x_train.shape == (7, 3072)
    assert ds.x_train.dtype == np.uint8  # the pixel bytes, converted per batch
    assert ds.inputs(ds.x_train).dtype == np.float32
    np.testing.assert_array_equal(
        np.rint(unflatten(ds.inputs(ds.x_train), (3, 32, 32)) * 255).astype(np.uint8),
        np.concatenate([x for x, _ in bs[:5]])[:7],
    )
    np.testing.assert_array_equal(ds.t_test.argmax(1), bs[5][1][:2])
    assert data.split_sizes(SimpleNamespace(name="cifar10", n_train=None, n_test=20_000)) == (
        50_000,
        10_000,
    )


def test_baldis_cifar_net_trains_a_few_steps_on_generated_data(home, monkeypatch):
    # Baldi et al. §4.3: 3 × (conv 5×5, 64 tanh, stride 1; max-pool 3×3 stride 2), dense 1024
    # tanh, softmax; BP with the conv pieces (η = 0.01, μ = 0.9 as in the paper) on one repeated
    # batch: the loss must fall
    bs = batches(n=2)
    put(home, monkeypatch, "cifar-10-binary.tar.gz", binary_archive(bs))
    xtr, ytr, _, _ = data.load_cifar10()
    x = xtr[:8].astype(np.float32) / 255
    t = np.eye(10, dtype=np.float32)[ytr[:8]][None]
    rng = np.random.default_rng(0)
    convs, pools, shape = [], [], (3, 32, 32)
    for _ in range(3):
        fan_in = shape[0] * 25
        W = (rng.standard_normal((1, 64, fan_in)) / np.sqrt(fan_in)).astype(np.float32)
        convs.append(ConvArray(W, np.zeros((1, 64), np.float32), in_shape=shape, kernel=5))
        pools.append(MaxPool(convs[-1].out_shape, 3, 2, "same"))
        shape = pools[-1].out_shape
    assert shape == (64, 4, 4)
    dense = [
        Crossbar(
            (rng.standard_normal((1, n_out, n_in)) / np.sqrt(n_in)).astype(np.float32),
            np.zeros((1, n_out), np.float32),
        )
        for n_in, n_out in ((1024, 1024), (1024, 10))
    ]

    def step(learn=True):
        h, ins, args, outs = x, [], [], []
        for conv, pool in zip(convs, pools, strict=True):
            ins.append(h)
            o = np.tanh(conv.read(h))
            h, arg = pool.forward(o)
            outs.append(o)
            args.append(arg)
        f = flatten(h)
        z = np.tanh(dense[0].read(f))
        s = dense[1].read(z)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        ce = float(-(t * np.log(p)).sum() / 8)
        if learn:
            e = p - t  # ∂CE/∂S of the softmax output, per example
            dz = dense[1].transport(e) * (1 - z * z)
            dense[1].update(-e, z, 0.01 / 8, momentum=0.9)
            d = unflatten(dense[0].transport(dz), shape)
            dense[0].update(-dz, f, 0.01 / 8, momentum=0.9)
            for k in (2, 1, 0):
                R = pools[k].backward(d, args[k]) * (1 - outs[k] * outs[k])
                if k:
                    d = convs[k].transport(R)
                convs[k].update(-R, ins[k], 0.01 / 8, momentum=0.9)
        return ce

    losses = [step() for _ in range(4)]
    assert np.isfinite(losses).all()
    assert step(learn=False) < losses[0]
