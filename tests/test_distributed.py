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
