"""ntkit.distributed on a 2-process LocalCluster equals the local computation."""

from __future__ import annotations

import numpy as np
import pytest

distributed = pytest.importorskip("dask.distributed")
da = pytest.importorskip("dask.array")

from ntkit import distributed as nd  # noqa: E402
from ntkit.kernels import RBF, Laplace, ReluNTK  # noqa: E402
from ntkit.ops import gram, kernel_matvec  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as c, \
            distributed.Client(c) as cl:
        yield cl


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gram_and_matvec_equal_local(client, dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1003, 7)).astype(dtype)
    Z = rng.normal(size=(211, 7)).astype(dtype)
    v = rng.normal(size=(211, 3)).astype(dtype)
    for k in (RBF(2.0), Laplace(1.5), ReluNTK(depth=2)):
        # each row of the result is computed by the same code on the same data: equal to rounding of
        # the block layout (the native tiles sum a row's columns in the same order)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(nd.gram(k, X, Z, client=client), gram(k, X, Z), rtol=tol, atol=tol)
        local = kernel_matvec(k, X, Z, v)
        np.testing.assert_allclose(nd.kernel_matvec(k, X, Z, v, client=client), local, rtol=tol,
                                   atol=tol * np.abs(local).max())
        Xd = da.from_array(X, chunks=(300, 7))
        np.testing.assert_allclose(nd.kernel_matvec(k, Xd, Z, v[:, 0], client=client), local[:, 0], rtol=tol,
                                   atol=tol * np.abs(local).max())
    assert nd.gram(RBF(1.0), X[:50], client=client).shape == (50, 50)


def test_local_fallback_and_errors(client):
    X = np.random.default_rng(1).normal(size=(20, 3))
    np.testing.assert_array_equal(nd.kernel_matvec(RBF(1.0), X, X, np.ones(20)), kernel_matvec(RBF(1.0), X, X,
                                                                                                np.ones(20)))
    with pytest.raises(ValueError, match="needs one row of v per row of Z"):
        nd.kernel_matvec(RBF(1.0), X, X, np.ones(19), client=client)
    with pytest.raises(TypeError, match="Client"):
        nd.gram(RBF(1.0), X, client=object())


def _ep_problem(n=2400, p=240, dtype=np.float64):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 5)).astype(dtype)
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=n)
    return X, y, X[:p].copy()


def test_sharded_eigenpro_equals_local_float64(client):
    from ntkit.solvers import eigenpro

    X, y, Z = _ep_problem()
    loc = eigenpro(Laplace(3.0), X, y, centers=Z, epochs=6, random_state=0)
    dis = nd.eigenpro(Laplace(3.0), X, y, centers=Z, epochs=6, random_state=0, client=client, n_partitions=3)
    # Same batches, preconditioner and steps; only the gradient sum K_ZB r is split over the
    # shards, changing its rounding by <= |B|·eps ~ 3e-13 relative per step. The iteration is a
    # contraction on the weights, so those perturbations do not compound beyond
    # (number of steps)·(per-step error)·cond of the projected step (~1e2 here): 1e-9 has ample room.
    np.testing.assert_allclose(dis.weights, loc.weights, rtol=1e-9, atol=1e-9 * np.abs(loc.weights).max())
    assert [h["epoch"] for h in dis.history] == [h["epoch"] for h in loc.history]
    # the plateau switches EigenPro 3 to variance-reduced steps: the sharded full-gradient pass ran too
    assert any(h.get("variance_reduction") for h in loc.history)
    assert [bool(h.get("variance_reduction")) for h in dis.history] == \
        [bool(h.get("variance_reduction")) for h in loc.history]
    assert dis.history[-1]["train_mse"] < 0.2 * dis.history[0]["train_mse"] or \
        dis.history[-1]["train_mse"] < 0.02
    np.testing.assert_allclose(dis.predict(X[:50]), loc.predict(X[:50]), rtol=1e-9, atol=1e-9)


def test_sharded_eigenpro_dask_array_float32_inexact_projection(client):
    from ntkit.solvers import eigenpro

    X, y, Z = _ep_problem(dtype=np.float32)
    Xd = da.from_array(X, chunks=(700, 5))  # uneven last chunk
    kw = dict(centers=Z, epochs=3, random_state=1, projection="eigenpro", ridge=1e-3)
    loc = eigenpro(Laplace(3.0), X, y, **kw)
    dis = nd.eigenpro(Laplace(3.0), Xd, y, client=client, **kw)
    assert dis.weights.dtype == np.float32
    # float32: per-step gradient sums differ by ~|B|·eps32 in relative terms (the shards' parts are
    # summed in float64 on the driver); compare the fitted functions at the float32 tolerance
    f_loc, f_dis = loc.predict(X[:200]), dis.predict(X[:200])
    np.testing.assert_allclose(f_dis, f_loc, rtol=1e-4, atol=1e-4 * np.abs(f_loc).max())


def test_sharded_eigenpro_errors_and_local_fallback(client):
    from ntkit.solvers import eigenpro

    X, y, Z = _ep_problem(n=300, p=30)
    with pytest.raises(ValueError, match="centers is required"):
        nd.eigenpro(Laplace(3.0), X, y, centers=None, client=client)
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        nd.eigenpro(Laplace(3.0), bad, y, centers=Z, client=client)
    with pytest.raises(ValueError, match="NaN"):
        nd.eigenpro(Laplace(3.0), da.from_array(bad, chunks=(100, 5)), y, centers=Z, client=client)
    with pytest.raises(ValueError, match="y has 299 rows"):
        nd.eigenpro(Laplace(3.0), X, y[:-1], centers=Z, client=client)
    with pytest.raises(TypeError, match="Client"):
        nd.eigenpro(Laplace(3.0), X, y, centers=Z, client="tcp://nowhere")
    a = nd.eigenpro(Laplace(3.0), X, y, centers=Z, epochs=2, random_state=0)
    b = eigenpro(Laplace(3.0), X, y, centers=Z, epochs=2, random_state=0)
    np.testing.assert_array_equal(a.weights, b.weights)
