"""The API contract of ntkit.predict: result structure (as neural-tangents), numpy/jax in = out,
dtypes, caching of the factorisations, keyword arguments of kernel_fn, and bad input."""

from __future__ import annotations

import collections
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkit
from ntkit import predict
from ntkit.predict import (
    Gaussian,
    gp_inference,
    gradient_descent_mse,
    gradient_descent_mse_ensemble,
    max_learning_rate,
)

Kernel = collections.namedtuple("Kernel", "nngp ntk")


def _problem(rng, n=6, m=4, k=2):
    X = rng.normal(size=(n + m, 3))
    A = np.maximum(X @ rng.normal(size=(3, 30)), 0) / np.sqrt(30)
    nngp = A @ A.T + 0.1
    ntk = nngp + X @ X.T / 3
    y = rng.normal(size=(n, k))
    return nngp, ntk, y, n, m


def _kernel_fn(nngp, ntk, calls=None):
    def kernel_fn(x1, x2=None, get=("nngp", "ntk"), **kwargs):
        if calls is not None:
            calls.append((len(x1), None if x2 is None else len(x2), get, kwargs))
        i = np.asarray(x1, dtype=int).ravel()
        j = i if x2 is None else np.asarray(x2, dtype=int).ravel()
        ks = {"nngp": nngp[np.ix_(i, j)], "ntk": ntk[np.ix_(i, j)]}
        return ks[get] if isinstance(get, str) else Kernel(ks["nngp"], ks["ntk"])

    return kernel_fn


def test_public_names():
    assert ntkit.predict is predict
    assert set(predict.__all__) == {"gradient_descent_mse", "gradient_descent_mse_ensemble", "gp_inference",
                                    "max_learning_rate", "Gaussian"}


def test_result_structure_follows_get(rng):
    nngp, ntk, y, n, m = _problem(rng)
    xtr, xte = np.arange(n)[:, None], np.arange(n, n + m)[:, None]
    fn = gradient_descent_mse_ensemble(_kernel_fn(nngp, ntk), xtr, y)
    for t in (None, 2.0):
        both = fn(t, xte)
        assert type(both).__name__ == "Gaussians" and both._fields == ("nngp", "ntk")
        assert fn(t, xte, ("ntk", "nngp"))._fields == ("ntk", "nngp")
        assert isinstance(fn(t, xte, "ntk"), np.ndarray)
        assert isinstance(fn(t, xte, "NTK", compute_cov=True), Gaussian)
        np.testing.assert_array_equal(fn(t, xte, "ntk"), both.ntk)
        np.testing.assert_array_equal(fn(t, xte, ("ntk",)).ntk, both.ntk)
    gp = gp_inference(Kernel(nngp[:n, :n], ntk[:n, :n]), y)
    assert gp()._fields == ("nngp", "ntk")
    np.testing.assert_array_equal(gp(), (y, y))  # train set: the targets
    assert isinstance(gp("ntkgp", Kernel(nngp[n:, :n], ntk[n:, :n])), np.ndarray)


def test_numpy_float32_in_float32_out(rng):
    _nngp, ntk, y, n, _m = _problem(rng)
    k32, kt32, y32 = ntk[:n, :n].astype(np.float32), ntk[n:, :n].astype(np.float32), y.astype(np.float32)
    f32 = gradient_descent_mse(k32, y32)
    f64 = gradient_descent_mse(k32.astype(np.float64), y32.astype(np.float64))
    for t in (None, 3.0, [1.0, 2.0]):
        a, b = f32(t, 0.0, np.float32(0.0), kt32), f64(t, 0.0, 0.0, kt32.astype(np.float64))
        for u, v in zip(a, b):
            assert u.dtype == np.float32 and isinstance(u, np.ndarray)
            np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-6 * np.max(np.abs(v)))  # float64 work inside
    out = gp_inference(k32, y32)("ntkgp", kt32, ntk[n:, n:].astype(np.float32))
    assert out.mean.dtype == np.float32 and out.covariance.dtype == np.float32


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_in_jax_out(rng, dtype):
    nngp, ntk, y, n, m = _problem(rng)
    ctx = jax.enable_x64(dtype == "float64")
    with ctx:
        dt = jnp.float64 if dtype == "float64" else jnp.float32
        K, Kt, Y = jnp.asarray(ntk[:n, :n], dt), jnp.asarray(ntk[n:, :n], dt), jnp.asarray(y, dt)
        rtol = 1e-10 if dtype == "float64" else 1e-4
        ref = gradient_descent_mse(ntk[:n, :n], y)
        fn = gradient_descent_mse(K, Y, learning_rate=1.0)
        for t in (None, jnp.asarray([0.5, 30.0], dt)):
            got = fn(t, jnp.zeros_like(Y), jnp.zeros((m, y.shape[1]), dt), Kt)
            want = ref(None if t is None else np.asarray(t), 0.0, np.zeros((m, 2)), ntk[n:, :n])
            for u, v in zip(got, want):
                assert isinstance(u, jax.Array) and u.dtype == dt
                np.testing.assert_allclose(np.asarray(u), v, rtol=rtol, atol=rtol * np.max(np.abs(v)))
        # jit over the time: the decomposition is computed once, eagerly, and reused under the trace
        jitted = jax.jit(lambda t: fn(t, 0.0, 0.0, Kt)[1])
        np.testing.assert_allclose(np.asarray(jitted(jnp.asarray(2.5, dt))), ref(2.5, 0.0, 0.0, ntk[n:, :n])[1],
                                   rtol=rtol, atol=rtol * 10)
        # ensemble and gp_inference: jax kernels in, jax out
        ens = gradient_descent_mse_ensemble(
            lambda a, b=None, get=None: jax.tree_util.tree_map(lambda v: jnp.asarray(v, dt),
                                                               _kernel_fn(nngp, ntk)(a, b, get)),
            np.arange(n)[:, None], Y)
        out = ens(1.0, np.arange(n, n + m)[:, None], "ntk", compute_cov=True)
        assert isinstance(out.covariance, jax.Array) and out.covariance.dtype == dt
        mean = gp_inference(K, Y)("nngp", Kt)
        assert isinstance(mean, jax.Array) and mean.dtype == dt
        assert isinstance(max_learning_rate(K), float)


def test_numpy_kernels_with_a_jax_output_give_jax(rng, x64):
    _nngp, ntk, y, n, m = _problem(rng)
    fn = gradient_descent_mse(ntk[:n, :n], y)
    tr, te = fn(1.0, 0.0, jnp.zeros((m, 2)), ntk[n:, :n])
    assert isinstance(tr, jax.Array) and isinstance(te, jax.Array)
    assert isinstance(fn(1.0), np.ndarray)


def test_factorisations_and_kernels_computed_once(rng, monkeypatch):
    import ntkit._linalg as L

    counts = collections.Counter()
    eigh, chol = L.eigh, L.cholesky

    def count_eigh(*a, **k):
        counts["eigh"] += 1
        return eigh(*a, **k)

    def count_chol(*a, **k):
        counts["cholesky"] += 1
        return chol(*a, **k)

    monkeypatch.setattr(L, "eigh", count_eigh)
    monkeypatch.setattr(L, "cholesky", count_chol)
    nngp, ntk, y, n, m = _problem(rng)
    fn = gradient_descent_mse(ntk[:n, :n], y)
    assert not counts  # nothing at construction
    for t in (0.1, 1.0, [2.0, 3.0], None, None, 7.0):
        fn(t, 0.0, 0.0, ntk[n:, :n])
    assert counts == {"eigh": 1, "cholesky": 1}
    counts.clear()
    calls = []
    ens = gradient_descent_mse_ensemble(_kernel_fn(nngp, ntk, calls), np.arange(n)[:, None], y)
    for t in (0.1, 1.0, None, 5.0, None):
        ens(t, np.arange(n, n + m)[:, None], compute_cov=True)
        ens(t, None, compute_cov=True)
    assert counts == {"eigh": 2, "cholesky": 2}  # one of each per kernel (nngp, ntk)
    train_calls = [c for c in calls if c[1] is None and c[0] == n]
    assert train_calls == [(n, None, ("nngp", "ntk"), {})]  # both train kernels in one call, once


def test_ensemble_kernel_fn_kwargs(rng):
    """Train kwargs reach every call; test-test kwargs override; pairs of arrays combine per input."""
    nngp, ntk, y, n, m = _problem(rng)
    calls = []
    fn = gradient_descent_mse_ensemble(_kernel_fn(nngp, ntk, calls), np.arange(n)[:, None], y,
                                       pattern=(np.ones(2), np.ones(2)), mode="a")
    fn(1.0, np.arange(n, n + m)[:, None], "ntk", compute_cov=True, pattern=(np.zeros(3), np.zeros(3)))
    by = {(c[0], c[1]): c[3] for c in calls}
    assert by[(n, None)]["mode"] == "a" and by[(n, None)]["pattern"][0].shape == (2,)
    td = by[(m, n)]["pattern"]
    assert td[0].shape == (3,) and td[1].shape == (2,)  # (test, train)
    assert by[(m, None)]["pattern"][0].shape == (3,)
    with pytest.raises(ValueError, match="'mode'.*must agree"):
        fn(1.0, np.arange(n, n + m)[:, None], "ntk", mode="b")


def test_singular_kernel_warns_with_jitter_at_infinite_time(rng):
    """An exactly singular kernel (rank 2, integer entries, so the third pivot is exactly 0) and no
    diag_reg: ntkit adds jitter with a NumericalWarning (neural-tangents returns NaN); finite
    times need no factorisation that can fail."""
    _nngp, ntk, y, n, _m = _problem(rng)
    u, v = np.arange(1.0, n + 1), np.array([1.0, -1.0] * (n // 2))
    K = np.outer(u, u) + np.outer(v, v)
    fn = gradient_descent_mse(K, y)
    with pytest.warns(ntkit.NumericalWarning, match="jitter"):
        out = fn(None, 0.0, 0.0, ntk[n:, :n])[1]
    assert np.isfinite(out).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(fn(10.0, 0.0, 0.0, ntk[n:, :n])[1]).all()


# ----------------------------------------------------------------------------------------------
# Bad input: a ValueError / TypeError that names the argument and the shapes.


def test_errors_gradient_descent_mse(rng):
    _nngp, ntk, y, n, _m = _problem(rng)
    K, Kt = ntk[:n, :n], ntk[n:, :n]
    with pytest.raises(ValueError, match=r"k_train_train .*shape \(6, 6\).*got shape \(5, 5\)"):
        gradient_descent_mse(K[:5, :5], y)
    with pytest.raises(ValueError, match="even number of axes"):
        gradient_descent_mse(K[0], y)
    with pytest.raises(ValueError, match=r"shape \(6, 6, 2, 2\)"):
        gradient_descent_mse(K, y, trace_axes=())
    with pytest.raises(ValueError, match="trace_axes .* out of range"):
        gradient_descent_mse(K, y, trace_axes=(2,))
    with pytest.raises(ValueError, match="trace every axis"):
        gradient_descent_mse(K, y, trace_axes=(0, 1))
    with pytest.raises(TypeError, match="trace_axes"):
        gradient_descent_mse(K, y, trace_axes="last")
    with pytest.raises(ValueError, match="'learning_rate' parameter"):
        gradient_descent_mse(K, y, learning_rate=0.0)
    with pytest.raises(ValueError, match="'diag_reg' parameter"):
        gradient_descent_mse(K, y, diag_reg=-1.0)
    with pytest.raises(TypeError, match="'diag_reg_absolute_scale'"):
        gradient_descent_mse(K, y, diag_reg_absolute_scale="yes")
    with pytest.raises(ValueError, match="NaN"):
        gradient_descent_mse(np.full_like(K, np.nan), y)
    with pytest.raises(TypeError, match="y_train .*real numbers"):
        gradient_descent_mse(K, y.astype(str))
    fn = gradient_descent_mse(K, y)
    with pytest.raises(ValueError, match="both None"):
        fn(1.0, None, None)
    with pytest.raises(ValueError, match="need k_test_train"):
        fn(1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"k_test_train .*got shape \(4, 5\)"):
        fn(1.0, 0.0, 0.0, Kt[:, :5])
    with pytest.raises(ValueError, match=r"fx_train_0 .*shape \(6, 2\); got shape \(6, 3\)"):
        fn(1.0, np.zeros((6, 3)))
    with pytest.raises(ValueError, match=r"fx_train_0 .*a number or an array"):
        fn(1.0, np.zeros(2))  # no silent broadcasting of a row
    with pytest.raises(ValueError, match=r"fx_test_0 .*shape \(4, 2\); got shape \(5, 2\)"):
        fn(1.0, 0.0, np.zeros((5, 2)), Kt)
    with pytest.raises(ValueError, match="t of gradient_descent_mse contains NaN"):
        fn(np.nan)
    with pytest.raises(TypeError, match="t of gradient_descent_mse"):
        fn("soon")


def test_errors_gp_and_ensemble(rng):
    nngp, ntk, y, n, _m = _problem(rng)
    gp = gp_inference(ntk[:n, :n], y)
    with pytest.raises(ValueError, match="'ntk' posterior covariance .* needs both"):
        gp("ntk", ntk[n:, :n], ntk[n:, n:])
    with pytest.raises(ValueError, match="get of gp_inference"):
        gp("ntkk", ntk[n:, :n])
    with pytest.raises(ValueError, match="repeat"):
        gp(("ntk", "ntk"), ntk[n:, :n])
    with pytest.raises(ValueError, match=r"k_test_test .*shape \(4, 4\).*got shape \(3, 3\)"):
        gp("nngp", ntk[n:, :n], ntk[n:n + 3, n:n + 3])
    with pytest.raises(ValueError, match="no 'ntk' kernel"):
        gp_inference(Kernel(nngp[:n, :n], None), y)("ntk")
    with pytest.raises(TypeError, match="k_train_train .*'nngp' / 'ntk'"):
        gp_inference({"nngp": nngp[:n, :n]}, y)
    with pytest.raises(TypeError, match="kernel_fn .* must be callable"):
        gradient_descent_mse_ensemble(None, np.arange(n)[:, None], y)
    ens = gradient_descent_mse_ensemble(_kernel_fn(nngp, ntk), np.arange(n)[:, None], y)
    with pytest.raises(ValueError, match="get of gradient_descent_mse_ensemble"):
        ens(1.0, None, "ntkgp")
    bad = gradient_descent_mse_ensemble(lambda a, b=None, get=None: 3.0, np.arange(n)[:, None], y)
    with pytest.raises(TypeError, match="must return an array"):
        bad(1.0)
    with pytest.raises(ValueError, match="'momentum' parameter of max_learning_rate .*\\[0.0, 1.0\\]"):
        max_learning_rate(ntk[:n, :n], momentum=2.0)
    with pytest.raises(ValueError, match="'y_train_size'"):
        max_learning_rate(ntk[:n, :n], y_train_size=0)
