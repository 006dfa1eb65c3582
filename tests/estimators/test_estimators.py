"""ntkit.estimators: scikit-learn compatibility and agreement with dense exact solutions."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import ntkit
from ntkit.estimators import EmpiricalNTKKernel, NTKClassifier, NTKRegressor, OnlineKernelRegressor
from ntkit.kernels import RBF, ReluNNGP, ReluNTK


@parametrize_with_checks([NTKRegressor(), NTKClassifier(), NTKRegressor(solver="cg", ridge=1e-3),
                          NTKClassifier(kernel=RBF(2.0), solver="cg", ridge=1e-3), OnlineKernelRegressor(),
                          OnlineKernelRegressor("kogd")])
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.05 * rng.normal(size=300)
    return X, y


@pytest.mark.parametrize("kernel", [None, ReluNNGP(depth=3), RBF(2.0)])
def test_solvers_agree_with_dense_solve(data, kernel):
    X, y = data
    ridge = 1e-2
    k = ReluNTK(depth=2) if kernel is None else kernel
    alpha = scipy.linalg.solve(k(X) + ridge * np.eye(len(X)), y, assume_a="pos")
    ref = k(X[:40], X) @ alpha
    for solver, tol in (("cholesky", 1e-10), ("cg", 1e-6)):
        est = NTKRegressor(kernel, ridge=ridge, solver=solver, tol=1e-12, normalize_y=False).fit(X, y)
        # Cholesky: backward stable, cond(K + ridge I) ≲ 1e5 here → 1e-10 relative; CG stopped at 1e-12 residual
        np.testing.assert_allclose(est.predict(X[:40]), ref, rtol=tol, atol=tol * np.abs(ref).max())
        assert est.solver_ == solver
    ep = NTKRegressor(kernel, ridge=ridge, solver="eigenpro", epochs=60, random_state=0, normalize_y=False).fit(X, y)
    # EigenPro is an iterative solver (its exactness is tested in tests/solvers): here it must have
    # removed most of the residual of (K + ridge·I) α = y, and its predictions follow the exact ones
    res = np.linalg.norm(k(X) @ ep.dual_coef_[:, 0] + ridge * ep.dual_coef_[:, 0] - y) / np.linalg.norm(y)
    assert res < 0.05, res
    assert np.linalg.norm(ep.predict(X[:40]) - ref) / np.linalg.norm(ref) < 0.1


def test_classifier_on_digits_and_grid_search():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    clf = NTKClassifier(ridge=1e-2).fit(X[:1000], y[:1000])
    assert clf.score(X[1000:], y[1000:]) > 0.95
    assert clf.decision_function(X[:3]).shape == (3, 10)
    pipe = make_pipeline(StandardScaler(), NTKRegressor(RBF(1.0), ridge=1e-2))
    gs = GridSearchCV(pipe, {"ntkregressor__kernel__lengthscale": [1.0, 4.0, 16.0]}, cv=3)
    Xr, yr = X[:400], (y[:400] >= 5).astype(float)
    gs.fit(Xr, yr)
    scores = gs.cv_results_["mean_test_score"]
    # the grid parameter reaches the kernel: three lengthscales, three different models
    assert np.all(np.isfinite(scores)) and len(np.unique(np.round(scores, 8))) == 3


def test_pickle_round_trip(data):
    X, y = data
    for est in (NTKRegressor(ridge=1e-3).fit(X, y), NTKClassifier(RBF(2.0)).fit(X, y > 0),
                OnlineKernelRegressor().fit(X, y)):
        again = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(again.predict(X[:10]), est.predict(X[:10]))


def test_empirical_ntk_kernel_regression():
    import jax

    from ntkit.ntk import empirical_ntk
    from ntkit.ntk.models import mlp

    init, apply = mlp((4, 64, 3), "relu")
    params = init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.sin(X[:, 0])
    k = EmpiricalNTKKernel(apply, params, kind="trace")
    est = NTKRegressor(k, ridge=1e-3).fit(X, y)
    K = np.asarray(empirical_ntk(apply, params, X, kind="trace"), dtype=np.float64)
    alpha = scipy.linalg.solve(K + 1e-3 * np.eye(60), y, assume_a="pos")
    Kt = np.asarray(empirical_ntk(apply, params, X[:5], X, kind="trace"), dtype=np.float64)
    # float32 network: kernel entries to ~1e-6 relative, amplified by cond(K + 1e-3 I)
    np.testing.assert_allclose(est.predict(X[:5]), Kt @ alpha, rtol=1e-3, atol=1e-3 * np.abs(Kt @ alpha).max())
    np.testing.assert_allclose(k.diag(X[:7]), np.diag(K)[:7], rtol=1e-5)


def test_online_regressor_partial_fit_equals_fit(data):
    X, y = data
    a = OnlineKernelRegressor("aogd_ald").fit(X, y)
    b = OnlineKernelRegressor("aogd_ald")
    for i in range(0, 300, 50):
        b.partial_fit(X[i:i + 50], y[i:i + 50])
    np.testing.assert_allclose(a.predict(X[:5]), b.predict(X[:5]), rtol=1e-12)
    assert a.n_seen_ == b.n_seen_ == 300 and a.cumulative_loss_ == pytest.approx(b.cumulative_loss_, rel=1e-12)


def test_bad_parameters(data):
    X, y = data
    with pytest.raises(ValueError, match="solver"):
        NTKRegressor(solver="lu").fit(X, y)
    with pytest.raises(ValueError, match="ridge"):
        NTKRegressor(ridge=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="learner"):
        OnlineKernelRegressor("sgd").fit(X, y)
    # duplicated points and no ridge: K is singular; the factorisation adds the smallest jitter that
    # works and says how much, and the fit still reproduces the (consistent) duplicated targets
    with pytest.warns(ntkit.NumericalWarning, match="added jitter"):
        est = NTKRegressor(RBF(3.0), ridge=0.0, solver="cholesky").fit(np.vstack([X, X]), np.concatenate([y, y]))
    np.testing.assert_allclose(est.predict(X), y, atol=1e-4 * np.abs(y).max())
