"""Data: MNIST and Fashion-MNIST from the original IDX files, CIFAR-10 from its official archives,
Lillicrap et al.'s teacher tasks and Garg & Vempala's low-rank task.

IDX files are looked for in the data home (``$LPFA_DATA``, default ``~/.cache/lpfa``), under
``mnist/`` or ``fashion-mnist/``, whole (``NAME.gz``) or split in byte-parts (``NAME.gz.part00``,
``…part01``, …). MNIST also ships with lpfa, so a fresh install needs no download. Every file is
checked against the SHA-256 of the original distribution before use; files reassembled from
parts are cached whole in the data home. CIFAR-10 cannot ship with lpfa: its official archive
(``cifar-10-python.tar.gz`` or ``cifar-10-binary.tar.gz``) is looked for, whole or in parts, under
``cifar10/`` in the data home, and checked the same way.
"""

import functools
import gzip
import hashlib
import importlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from lpfa.config import DataConfig, Spectrum

__all__ = [
    "DataError",
    "Dataset",
    "as_inputs",
    "data_home",
    "load",
    "load_cached",
    "load_cifar10",
    "load_idx",
    "lowrank_target",
    "split_sizes",
]

# SHA-256 of the original distribution files (the .gz files as published): set, file, digest.
_SHA256 = """
mnist train-images-idx3-ubyte.gz 440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
mnist train-labels-idx1-ubyte.gz 3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
mnist t10k-images-idx3-ubyte.gz 8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
mnist t10k-labels-idx1-ubyte.gz f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6
fashion-mnist train-images-idx3-ubyte.gz
  3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84
fashion-mnist train-labels-idx1-ubyte.gz
  a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845
fashion-mnist t10k-images-idx3-ubyte.gz
  346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073
fashion-mnist t10k-labels-idx1-ubyte.gz
  67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5
"""
IDX_FILES: dict[str, dict[str, str]] = {}
_words = _SHA256.split()
for _set, _file, _digest in zip(_words[0::3], _words[1::3], _words[2::3], strict=True):
    IDX_FILES.setdefault(_set, {})[_file] = _digest

SOURCES = {
    "mnist": "the MNIST database (LeCun, Cortes, Burges), e.g. the four *-ubyte.gz files that "
    "torchvision or TensorFlow Datasets download",
    "fashion-mnist": "Fashion-MNIST (Zalando Research, github.com/zalandoresearch/fashion-mnist), "
    "the four *-ubyte.gz files of its data/fashion folder",
}


class DataError(RuntimeError):
    """Data files are missing or corrupt; the message says what to do."""


def data_home() -> Path:
    """Where data files are looked for and cached: ``$LPFA_DATA`` or ``~/.cache/lpfa``."""
    return Path(os.environ.get("LPFA_DATA") or Path.home() / ".cache" / "lpfa")


def _bundled(name: str) -> Path | None:
    root = resources.files("lpfa") / "_data" / name
    return Path(str(root)) if root.is_dir() else None


def _read_whole_or_parts(folder: Path, fname: str) -> tuple[bytes | None, bool]:
    """The bytes of ``fname`` in ``folder``, whole or joined from parts; (data, from_parts)."""
    whole = folder / fname
    if whole.is_file():
        return whole.read_bytes(), False
    parts = sorted(folder.glob(fname + ".part[0-9]*"))
    if parts:
        return b"".join(p.read_bytes() for p in parts), True
    return None, False


def _missing_message(name: str, fname: str, home: Path) -> str:
    files = "\n".join(f"  {f}  sha256 {h}" for f, h in IDX_FILES[name].items())
    return (
        f"{name}: file {fname} not found.\n"
        f"Put the four original files of {SOURCES[name]} in\n  {home / name}\n"
        f"(whole, or split as NAME.gz.part00, NAME.gz.part01, ...; set LPFA_DATA to use another "
        f"folder). Expected files and SHA-256:\n{files}"
    )


def _checked(
    name: str, folder: Path, fname: str, expected: str, home: Path, *, always_cache: bool = False
) -> bytes | None:
    """The bytes of ``folder/fname`` (whole or in parts) if present, checked against the SHA-256
    ``expected``; reassembled parts (or, with ``always_cache``, any file) are cached in ``home``.

    Raises
    ------
    DataError
        The file is there but its hash is not ``expected``.
    """
    data, from_parts = _read_whole_or_parts(folder, fname)
    if data is None:
        return None
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise DataError(
            f"{name}: {folder / fname} (whole or parts) has SHA-256 {got}, expected {expected}. "
            f"The file is corrupt or not the original distribution: delete it and put the "
            f"original in {home}."
        )
    if from_parts or always_cache:
        _cache(home / fname, data)
    return data


def _verified_bytes(name: str, fname: str) -> bytes:
    home = data_home()
    expected = IDX_FILES[name][fname]
    candidates = [(home / name, True)]
    bundled = _bundled(name)
    if bundled is not None:
        candidates.append((bundled, False))
    for folder, is_cache in candidates:
        data = _checked(name, folder, fname, expected, home / name, always_cache=not is_cache)
        if data is not None:
            return data
    raise DataError(_missing_message(name, fname, home))


def _cache(path: Path, data: bytes) -> None:
    """Write a verified file into the data home; a read-only home only costs a re-assembly."""
    if path.is_file():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError:
        pass


def _parse_idx(data: bytes, fname: str) -> np.ndarray:
    raw = gzip.decompress(data)
    magic = int.from_bytes(raw[0:4], "big")
    if magic == 2051:
        n, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
        return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows * cols)
    if magic == 2049:
        return np.frombuffer(raw, np.uint8, offset=8)
    raise DataError(f"{fname}: IDX magic number {magic}, expected 2051 (images) or 2049 (labels)")


def load_idx(name: str = "mnist") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four arrays of an IDX data set, verified.

    Returns
    -------
    x_train : uint8 array, shape (60000, 784)
    y_train : uint8 array, shape (60000,)
    x_test : uint8 array, shape (10000, 784)
    y_test : uint8 array, shape (10000,)
    """
    if name not in IDX_FILES:
        raise DataError(f"data set {name!r}: must be one of {', '.join(IDX_FILES)}")
    names = ("train-images", "train-labels", "t10k-images", "t10k-labels")
    arrays = []
    for stem in names:
        fname = f"{stem}-idx{3 if 'images' in stem else 1}-ubyte.gz"
        arrays.append(_parse_idx(_verified_bytes(name, fname), fname))
    return tuple(arrays)  # type: ignore[return-value]


# SHA-256 of CIFAR-10's official archives (Krizhevsky 2009, www.cs.toronto.edu/~kriz/cifar.html),
# the ones Keras' cifar10.load_data and TensorFlow Datasets pin; either one is enough
CIFAR_FILES: dict[str, str] = {
    "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    "cifar-10-binary.tar.gz": "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
}
CIFAR_FOLDER = "cifar10"
SOURCES["cifar10"] = (
    "CIFAR-10 (Krizhevsky 2009): download cifar-10-python.tar.gz (the 'CIFAR-10 python version', "
    "163 MiB) or cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html; "
    "torchvision's CIFAR10(download=True) saves the same cifar-10-python.tar.gz, TensorFlow "
    "Datasets the binary one"
)


# the globals a CIFAR-10 python batch may name (numpy arrays), with numpy 2's module paths
_PICKLE_GLOBALS = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles what CIFAR-10's python batches hold (dicts, lists, bytes, numbers, numpy uint8
    arrays) and refuses every other global: the archive is checked by SHA-256 first, and this
    keeps a pickle from running code even when the table of hashes is not the official one."""

    def find_class(self, module: str, name: str):
        # the official batches name numpy 1's modules, which numpy 2 keeps under numpy._core
        where = module
        if module == "numpy.core" or module.startswith("numpy.core."):
            where = "numpy._core" + module[len("numpy.core") :]
        if (where, name) not in _PICKLE_GLOBALS:
            raise DataError(f"cifar10: the archive's pickle names {module}.{name}: refused")
        return getattr(importlib.import_module(where), name)


def _cifar_missing(home: Path) -> str:
    files = "\n".join(f"  {f}  sha256 {h}" for f, h in CIFAR_FILES.items())
    return (
        f"cifar10: no CIFAR-10 archive found in\n  {home / CIFAR_FOLDER}\n"
        f"lpfa cannot ship or download it. {SOURCES['cifar10']}. Put either archive, as "
        f"downloaded and not unpacked, in that folder (whole, or split as NAME.part00, "
        f"NAME.part01, ...; set LPFA_DATA to use another folder). Expected files and "
        f"SHA-256:\n{files}"
    )


def _cifar_archive() -> tuple[str, bytes]:
    """The first CIFAR-10 archive found in the data home, verified: (file name, bytes)."""
    home = data_home()
    folder = home / CIFAR_FOLDER
    for fname, expected in CIFAR_FILES.items():
        data = _checked("cifar10", folder, fname, expected, folder)
        if data is not None:
            return fname, data
    raise DataError(_cifar_missing(home))


def _cifar_batches(fname: str, data: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """(images (n, 3072) uint8, labels (n,) uint8) of data_batch_1 … 5 and test_batch."""
    python = fname == "cifar-10-python.tar.gz"
    folder = "cifar-10-batches-py" if python else "cifar-10-batches-bin"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for name in names:
            member = f"{folder}/{name}" if python else f"{folder}/{name}.bin"
            try:
                raw = tar.extractfile(member).read()  # type: ignore[union-attr]
            except (KeyError, AttributeError):
                raise DataError(f"cifar10: {fname} has no file {member}") from None
            if python:
                batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
                images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3072)
                labels = np.asarray(batch[b"labels"], dtype=np.uint8)
            else:  # records of one label byte and 3072 pixel bytes
                records = np.frombuffer(raw, np.uint8).reshape(-1, 3073)
                images, labels = records[:, 1:], records[:, 0].copy()
            out.append((images, labels))
    return out


def load_cifar10() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four arrays of CIFAR-10, verified, from either official archive.

    Returns
    -------
    x_train : uint8 array, shape (50000, 3, 32, 32)
        Channels red, green, blue; rows top first.
    y_train : uint8 array, shape (50000,)
    x_test : uint8 array, shape (10000, 3, 32, 32)
    y_test : uint8 array, shape (10000,)

    Raises
    ------
    DataError
        If no archive is in ``$LPFA_DATA/cifar10`` (the message says which file to put where and
        how to get it), or the one there is not the official file.
    """
    batches = _cifar_batches(*_cifar_archive())
    x_train = np.concatenate([x for x, _ in batches[:5]]).reshape(-1, 3, 32, 32)
    y_train = np.concatenate([y for _, y in batches[:5]])
    x_test, y_test = batches[5]
    return x_train, y_train, x_test.reshape(-1, 3, 32, 32), y_test


def as_inputs(x, scale: float | None, dtype):
    """Stored input rows as the model reads them: ``x.astype(dtype) * scale``, or ``x`` itself
    when ``scale`` is None (rows stored as floats already).

    The one home of the conversion: the image sets are kept as their pixel bytes and converted
    per minibatch and per evaluation chunk, on whichever backend holds ``x``, and the result is
    bit for bit the rows a whole-set conversion gives (one float rounding per element, whatever
    rows are converted together).

    Parameters
    ----------
    x : array, shape (n, N_0), uint8 (or any dtype when ``scale`` is None), numpy or CuPy
    scale : float or None
        The value of one step of the stored integers (1/255 for pixels), rounded to ``dtype``.
    dtype : str or dtype

    Returns
    -------
    array, shape (n, N_0), of ``dtype`` (a new array), or ``x`` when ``scale`` is None
    """
    if scale is None:
        return x
    dtype = np.dtype(dtype)
    return x.astype(dtype) * dtype.type(scale)  # a host scalar: no transfer on a device


@dataclass(frozen=True)
class Dataset:
    """Inputs, targets and (for classification) labels, on the host.

    ``x_*`` (n, N_0) stored inputs: the image sets' pixel bytes (uint8, ``scale`` 1/255), the
    synthetic tasks' float rows (``scale`` None); :meth:`inputs` turns rows of them into the
    model's inputs. ``t_*`` (n, N_L) float targets (one-hot for classification) of the model's
    dtype, ``y_*`` (n,) int labels or None for regression tasks.
    """

    name: str
    x_train: np.ndarray
    t_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    t_test: np.ndarray
    y_test: np.ndarray | None
    scale: float | None = None
    """Value of one step of the stored inputs (1/255 for pixel bytes); None: ``x_*`` are the
    inputs themselves."""

    @property
    def classification(self) -> bool:
        """True if the task has labels (accuracy is defined)."""
        return self.y_train is not None

    @property
    def dtype(self) -> np.dtype:
        """The float type of the model inputs and targets (that of ``t_train``)."""
        return self.t_train.dtype

    def inputs(self, x):
        """Rows ``x`` of ``x_train`` / ``x_test`` (a slice or a gathered batch, numpy or CuPy)
        as model inputs of :attr:`dtype`: :func:`as_inputs` with this set's ``scale``."""
        return as_inputs(x, self.scale, self.dtype)


# examples in the training and test sets of each data set when n_train / n_test are None
FULL_SIZES = {
    "mnist": (60_000, 10_000),
    "fashion-mnist": (60_000, 10_000),
    "linear-teacher": (10_000, 2_000),
    "tanh-teacher": (10_000, 2_000),
    "lowrank": (10_000, 2_000),
    "cifar10": (50_000, 10_000),
}


def split_sizes(cfg: DataConfig) -> tuple[int, int]:
    """Training and test examples :func:`load` returns for ``cfg``, without loading anything.

    The image sets are cut to their first ``n_train`` / ``n_test`` examples (never more than the
    set has); the synthetic tasks make exactly as many as asked.
    """
    full_train, full_test = FULL_SIZES[cfg.name]
    if cfg.name in ("mnist", "fashion-mnist", "cifar10"):
        return min(cfg.n_train or full_train, full_train), min(cfg.n_test or full_test, full_test)
    return cfg.n_train or full_train, cfg.n_test or full_test


def _one_hot(y: np.ndarray, n: int, dtype: str) -> np.ndarray:
    out = np.zeros((y.size, n), dtype=dtype)
    out[np.arange(y.size), y] = 1
    return out


def _task_rng(cfg: DataConfig, key: int = 7) -> np.random.Generator:
    """A generator of a synthetic task from ``cfg.seed``: key 7 its inputs (and the teachers of
    Lillicrap et al.'s tasks), key 8 the ``lowrank`` target matrix."""
    return np.random.default_rng(np.random.SeedSequence(entropy=cfg.seed, spawn_key=(key,)))


def lowrank_target(cfg: DataConfig, n_in: int, n_out: int) -> np.ndarray:
    """The target matrix Y (n_out, n_in) of the ``lowrank`` task: Y = U diag(σ) Vᵀ.

    U (n_out, k) and V (n_in, k) have Haar-random orthonormal columns (QR of a Gaussian matrix
    with the signs of R's diagonal moved into Q), k = ``cfg.target_rank`` (None = min(n_in,
    n_out)), and σ is ``cfg.spectrum``: flat σ_i = 1, decaying σ_i = 1/i. Y comes from its own
    stream of ``cfg.seed``, so it is the matrix a simulated ``lowrank`` run with this config
    learns, whatever its sample sizes.
    """
    k = min(n_in, n_out) if cfg.target_rank is None else cfg.target_rank
    if not 1 <= k <= min(n_in, n_out):
        raise ValueError(f"target_rank={k}: must be in 1..min(n_in, n_out) = {min(n_in, n_out)}")
    rng = _task_rng(cfg, key=8)
    U, V = (_haar(rng, n, k) for n in (n_out, n_in))
    i = np.arange(1, k + 1, dtype=np.float64)
    sigma = np.ones(k) if cfg.spectrum is Spectrum.FLAT else 1.0 / i
    return (U * sigma) @ V.T


def _haar(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """k orthonormal columns in R^n, uniformly (Haar) distributed."""
    Q, R = np.linalg.qr(rng.standard_normal((n, k)))
    return Q * np.sign(np.diag(R))


def _teacher(cfg: DataConfig, sizes: tuple[int, ...], dtype: str) -> Dataset:
    """Lillicrap et al.'s synthetic tasks: data made once from ``cfg.seed``.

    ``linear-teacher``: y* = T x, T (N_L, N_0) ~ U[−1, 1], x ~ N(0, I) (Task 1).
    ``tanh-teacher``: y* = W_2 tanh(W_1 tanh(W_0 x + b_0) + b_1) + b_2 with ``teacher_sizes``
    (Task 3); the paper does not give the teacher's scales, here W ~ N(0, 1/fan_in) and
    b ~ N(0, 0.1²), which keeps the hidden units out of saturation.
    ``lowrank``: y* = Y x, x ~ N(0, I), Y from :func:`lowrank_target` (Garg & Vempala).
    """
    rng = _task_rng(cfg)
    n_train, n_test = split_sizes(cfg)
    n_in = cfg.teacher_sizes[0] if cfg.name == "tanh-teacher" else sizes[0]
    x = rng.standard_normal((n_train + n_test, n_in))
    if cfg.name == "lowrank":
        y = x @ lowrank_target(cfg, n_in, sizes[-1]).T
    elif cfg.name == "linear-teacher":
        T = rng.uniform(-1.0, 1.0, size=(sizes[-1], n_in))
        y = x @ T.T
    else:
        ts = cfg.teacher_sizes
        y = x
        for k in range(len(ts) - 1):
            W = rng.normal(0.0, 1.0 / np.sqrt(ts[k]), size=(ts[k + 1], ts[k]))
            b = rng.normal(0.0, 0.1, size=ts[k + 1])
            y = y @ W.T + b
            if k < len(ts) - 2:
                y = np.tanh(y)
    x, y = x.astype(dtype), y.astype(dtype)
    return Dataset(cfg.name, x[:n_train], y[:n_train], None, x[n_train:], y[n_train:], None)


def _first(a: np.ndarray, n: int | None) -> np.ndarray:
    """The first ``n`` rows of ``a`` (None: all); a cut is copied, so it does not keep the whole
    decompressed file alive."""
    return a if n is None or n >= len(a) else a[:n].copy()


def load(cfg: DataConfig, sizes: tuple[int, ...], dtype: str = "float32") -> Dataset:
    """The data set a run asks for, as host arrays.

    Parameters
    ----------
    cfg : DataConfig
    sizes : tuple of int
        The model's layer sizes (the linear teacher takes its input and output sizes from them).
    dtype : str
        Float type of the targets and of the inputs :meth:`Dataset.inputs` makes.

    The image sets keep their pixels as uint8 (a quarter of float32's memory, and of a device
    transfer) with ``scale`` 1/255: :meth:`Dataset.inputs` gives the pixels in [0, 1]; images
    are rows (n, C·H·W), CIFAR-10's of 3072. The synthetic tasks' inputs are floats of
    ``dtype``.
    """
    if cfg.name in ("linear-teacher", "tanh-teacher", "lowrank"):
        return _teacher(cfg, sizes, dtype)
    xtr, ytr, xte, yte = load_cifar10() if cfg.name == "cifar10" else load_idx(cfg.name)
    xtr, ytr, xte, yte = (
        _first(a, n)
        for a, n in ((xtr, cfg.n_train), (ytr, cfg.n_train), (xte, cfg.n_test), (yte, cfg.n_test))
    )
    # CIFAR-10's images become rows of 3072 in (channel, row, column) order (lpfa.conv.unflatten)
    xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    return Dataset(
        cfg.name,
        xtr,
        _one_hot(ytr, 10, dtype),
        ytr.astype(np.int64),
        xte,
        _one_hot(yte, 10, dtype),
        yte.astype(np.int64),
        scale=1.0 / 255.0,
    )


@functools.lru_cache(maxsize=4)
def load_cached(cfg: DataConfig, sizes: tuple[int, ...], dtype: str = "float32") -> Dataset:
    """:func:`load`, kept for later calls with the same arguments: a sweep worker's packs and an
    audit's configurations share one copy. The arrays are shared too: read them, never write."""
    return load(cfg, tuple(sizes), dtype)
