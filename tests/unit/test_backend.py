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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("beta", [1.0, 0.9])
def test_add_product_accumulates_in_place_as_the_two_pass_sum(xp, dtype, beta):
    rng = np.random.default_rng(3)
    c0, a0, b0 = (rng.standard_normal(s).astype(dtype) for s in [(30, 40), (30, 25), (25, 40)])
    want = beta * c0.astype("float64") + a0.astype("float64") @ b0.astype("float64")
    tol = 1e-5 if dtype == "float32" else 1e-12
    # operands C-ordered, transposed views (F-ordered) and a strided view: all the same sum
    for a, b in [(a0, b0), (np.asfortranarray(a0), np.asfortranarray(b0)), (a0, b0[:, ::1])]:
        c = xp.asarray(c0.copy())
        out = backend.add_product(c, xp.asarray(a), xp.asarray(b), beta=beta)
        assert out is c  # in place
        np.testing.assert_allclose(backend.to_numpy(c), want, rtol=tol, atol=tol * 30)


def test_add_product_leaves_wrapped_arrays_to_their_own_operators():
    class Tagged(np.ndarray):  # a subclass must keep its type through the update
        pass

    c = np.zeros((3, 4)).view(Tagged)
    backend.add_product(c, np.ones((3, 2)), np.ones((2, 4)))
    assert type(c) is Tagged
    assert (np.asarray(c) == 2).all()


def test_outer_sum_fused_and_two_pass_agree_for_shared_and_own_inputs(xp):
    from lpfa.backend import PRODUCT_BLOCK
    from lpfa.crossbar import outer_sum

    rng = np.random.default_rng(4)
    for n_out, n_in in [(6, 5), (600, 500)]:  # under and over PRODUCT_BLOCK synapses
        assert (n_out * n_in > PRODUCT_BLOCK) == (n_out == 600)
        W0 = rng.standard_normal((2, n_out, n_in)).astype("float32")
        post = rng.standard_normal((2, 7, n_out)).astype("float32")
        for pre in (rng.standard_normal((7, n_in)), rng.standard_normal((2, 7, n_in))):
            pre = pre.astype("float32")
            pre_e = np.broadcast_to(pre, (2, 7, n_in))
            want = 0.5 * W0 + np.einsum("ebo,ebi->eoi", post, pre_e, dtype="float64")
            W = xp.asarray(W0.copy())
            outer_sum(W, xp.asarray(post), xp.asarray(pre), beta=0.5)
            np.testing.assert_allclose(backend.to_numpy(W), want, rtol=1e-4, atol=1e-4)


def test_normal_table_is_a_symmetric_unit_variance_quantile_grid():
    from scipy.special import ndtr

    t = backend.normal_table(np.dtype(np.float64))
    assert t.shape == (1 << 16,)
    assert not t.flags.writeable
    assert np.all(np.diff(t) > 0)
    np.testing.assert_array_equal(t, -t[::-1])  # mean exactly 0
    assert abs(np.mean(t * t) - 1.0) < 1e-12
    # entry k sits at the midpoint of bin k, moved by the rescale by less than half a bin
    mid = (np.arange(1 << 16) + 0.5) / (1 << 16)
    assert np.max(np.abs(ndtr(t) - mid)) < 2.0**-17
    assert 4.3 < t[-1] < 4.35
    assert backend.normal_table(np.dtype(np.float32)).dtype == np.float32


def test_16_bit_draws_are_normal_and_uniform_and_reproducible():
    from scipy import stats

    rng = backend.runtime_rng(3, np)
    z = backend.normal16(rng, (400, 500), np.float32, np)
    assert z.shape == (400, 500)
    assert z.dtype == np.float32
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 0.01
    u = backend.uniform16(rng, (200_000,), np.float64, np)
    k = u * (1 << 16) - 0.5  # the grid (k + 1/2) / 2^16, every k equally likely
    np.testing.assert_array_equal(k, np.round(k))
    assert u.min() > 0
    assert u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # same seed, same numbers; the stream moves on between calls
    again = backend.runtime_rng(3, np)
    np.testing.assert_array_equal(backend.normal16(again, (400, 500), np.float32, np), z)
    assert not np.array_equal(backend.normal16(again, (400, 500), np.float32, np), z)


def test_16_bit_draws_run_on_the_backend(xp):
    rng = backend.runtime_rng(0, xp)
    for draw in (backend.normal16, backend.uniform16):
        v = draw(rng, (3, 4), np.float32, xp)
        assert backend.get_xp(v) is xp
        assert v.shape == (3, 4)
        assert v.dtype == np.float32
