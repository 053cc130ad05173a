"""The backend: array module from the arrays, no hard CuPy dependency, seeded generators."""

import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from lpfa import backend


def test_get_xp_follows_the_arrays_and_ignores_scalars():
    assert backend.get_xp(np.zeros(2), 1.0, None) is np
    assert backend.get_xp() is np


def test_get_xp_refuses_mixed_backends(monkeypatch):
    class FakeArray:
        pass

    fake = types.SimpleNamespace(ndarray=FakeArray)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert backend.get_xp(FakeArray()) is fake
    with pytest.raises(TypeError, match="mixed"):
        backend.get_xp(np.zeros(2), FakeArray())


def test_resolve_names_what_is_allowed():
    assert backend.resolve("numpy") is np
    with pytest.raises(ValueError, match="backend='gpu': must be one of numpy, cupy, auto"):
        backend.resolve("gpu")


@pytest.mark.skipif(backend.cupy_available(), reason="this machine has CuPy and a GPU")
def test_resolve_cupy_without_a_gpu_says_what_to_do():
    with pytest.raises(ValueError, match=r"backend='cupy'.*numpy"):
        backend.resolve("cupy")
    assert backend.resolve("auto") is np


def test_import_lpfa_does_not_import_cupy(tmp_path):
    # a poisoned cupy on the path: importing it at all would fail the test
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text(
        "raise ImportError('cupy must not be imported')\n"
    )
    code = textwrap.dedent(
        """
        import sys
        import lpfa, lpfa.cli, lpfa.training, lpfa.network, lpfa.data, lpfa.experiment
        import lpfa.quant, lpfa.alignment, lpfa.sweep, lpfa.sweep.cli
        assert "cupy" not in sys.modules, "lpfa imported cupy"
        assert "hwmodels" not in sys.modules, "lpfa imported hwmodels"
        assert "dask" not in sys.modules, "lpfa imported dask"
        print("ok")
        """
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_member_streams_are_reproducible_and_independent():
    a = backend.member_rng(5, backend.STREAM_INIT).random(4)
    b = backend.member_rng(5, backend.STREAM_INIT).random(4)
    c = backend.member_rng(5, backend.STREAM_FEEDBACK).random(4)
    d = backend.member_rng(6, backend.STREAM_INIT).random(4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, d)


def test_runtime_rng_is_seeded_on_the_backend(xp):
    a = backend.runtime_rng(3, xp).random(5)
    b = backend.runtime_rng(3, xp).random(5)
    assert backend.get_xp(a) is xp
    np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))


def test_to_numpy_is_the_exit_to_the_host(xp):
    x = xp.arange(3.0)
    out = backend.to_numpy(x)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, [0.0, 1.0, 2.0])


def test_runs_record_the_device_module_they_ran_on(xp):
    """CuPy's version under CuPy, the stand-in's name under the stand-in, nothing on numpy."""
    from lpfa.backend import device_versions
    from lpfa.training import versions

    rec = versions()
    if xp is np:
        assert "device_module" not in rec
    elif xp.__name__.endswith("cupy_standin"):
        assert device_versions() == {"device_module": f"{xp.__name__} {xp.__version__}"}
        assert rec["device_module"] == device_versions()["device_module"]
        assert "cupy" not in rec
    else:
        assert rec["cupy"] == xp.__version__
