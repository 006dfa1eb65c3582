"""scikit-learn conventions a newcomer relies on: grid searches from the defaults, an intercept, a
default kernel that follows the data's scale, and warnings (in words, with the fix) for results
known to be degraded."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ntkit import NumericalWarning, PerformanceWarning
from ntkit.estimators import EigenProClassifier, EigenProRegressor, NTKClassifier, NTKRegressor, data_lengthscale
from ntkit.kernels import RBF, Laplace, ReluNTK
from ntkit.ops import gram
from ntkit.solvers import eigenpro, nystrom_pcg


@pytest.fixture(scope="module")
def reg():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 4))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.05 * rng.normal(size=240)
    return X, y


SEARCHES = [
    (NTKRegressor(ridge=1e-2), "kernel__depth", [1, 3], "depth"),
    (NTKClassifier(ridge=1e-2), "kernel__depth", [1, 3], "depth"),
    (EigenProRegressor(epochs=2, random_state=0), "kernel__lengthscale", [1.0, 4.0], "lengthscale"),
    (EigenProClassifier(epochs=2, random_state=0), "kernel__lengthscale", [1.0, 4.0], "lengthscale"),
]


@pytest.mark.parametrize("est, param, values, attr", SEARCHES, ids=lambda v: type(v).__name__ if hasattr(v, "fit")
                         else str(v))
def test_grid_search_over_the_default_kernel(reg, est, param, values, attr):
    X, y = reg
    target = (y > 0).astype(int) if "Classifier" in type(est).__name__ else y
    name = type(est).__name__.lower()
    gs = GridSearchCV(make_pipeline(StandardScaler(), est), {f"{name}__{param}": values}, cv=2).fit(X, target)
    best = gs.best_params_[f"{name}__{param}"]
    fitted = gs.best_estimator_[-1]
    assert getattr(fitted.kernel_, attr) == best  # the searched value reached the kernel that was fitted
    assert est.kernel is None  # the searched estimator was cloned: its default untouched


def test_default_kernel_is_not_shared():
    a, b = NTKRegressor(), NTKRegressor()
    a.set_params(kernel__depth=5)
    assert a.kernel.depth == 5 and b.kernel is None
    assert NTKRegressor().set_params(kernel__depth=4).kernel is not a.kernel


def test_intercept_on_a_shifted_target(reg):
    """Kernel ridge regression without an intercept shrinks towards 0: with y shifted by 1000 and a large
    ridge it is useless; normalize_y=True (the default) fits the mean. Predictions are linear in y, so
    with the intercept a shift of the targets shifts the predictions exactly (to rounding)."""
    X, y = reg
    Xtr, ytr, Xte, yte = X[:200], y[:200], X[200:], y[200:]
    for make in (lambda **k: NTKRegressor(RBF(2.0), ridge=1.0, **k),
                 lambda **k: EigenProRegressor(Laplace(3.0), ridge=1.0, epochs=5, random_state=0, **k)):
        base = make().fit(Xtr, ytr).predict(Xte)
        shifted = make().fit(Xtr, ytr + 1000.0).predict(Xte)
        np.testing.assert_allclose(shifted - 1000.0, base, atol=1e-6 * 1000)
        assert make().fit(Xtr, ytr + 1000.0).score(Xte, yte + 1000.0) > 0.5
        assert make(normalize_y=False).fit(Xtr, ytr + 1000.0).score(Xte, yte + 1000.0) < 0.0
        far = make().fit(Xtr, ytr + 1000.0).predict(Xte[:1] + 1e3)  # far from the data: the mean
        np.testing.assert_allclose(far, np.mean(ytr) + 1000.0, rtol=1e-6)


def test_default_kernel_follows_the_data_scale(reg):
    """The default Laplace(lengthscale="scale") gives the same predictions on X and on 1e6·X: the kernel is
    a function of distances over the lengthscale, both scaled by 1e6 (float64 rounding, relative 1e-9)."""
    X, y = reg
    a = EigenProRegressor(epochs=4, random_state=0).fit(X[:200], y[:200])
    b = EigenProRegressor(epochs=4, random_state=0).fit(X[:200] * 1e6, y[:200])
    np.testing.assert_allclose(b.predict(X[200:] * 1e6), a.predict(X[200:]), rtol=1e-9, atol=1e-9)
    assert a.kernel_.lengthscale == pytest.approx(np.sqrt(4 * X[:200].var()))
    assert b.score(X[200:] * 1e6, y[200:]) > 0.8
    assert data_lengthscale(np.ones((5, 3))) == 1.0
    k = NTKRegressor(RBF("scale"), ridge=1e-2).fit(X, y).kernel_
    assert k.lengthscale == pytest.approx(data_lengthscale(X))
    with pytest.raises(ValueError, match="resolved by ntkit's estimators"):
        gram(RBF("scale"), X)
    with pytest.raises(ValueError, match="'lengthscale' parameter of RBF"):
        NTKRegressor(RBF("wide")).fit(X, y)


@pytest.mark.parametrize("ls, words", [(1e-3, "≈ 0 between distinct"), (1e5, "≈ 1 between all")])
def test_kernel_far_from_the_data_scale_warns(reg, ls, words):
    X, y = reg
    with pytest.warns(NumericalWarning, match=words):
        EigenProRegressor(RBF(ls), epochs=1, random_state=0).fit(X, y)
    with pytest.warns(NumericalWarning, match=words):
        NTKRegressor(RBF(ls), ridge=1e-2).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NTKRegressor(RBF(2.0), ridge=1e-2).fit(X, y)  # a sensible lengthscale: silent
        NTKRegressor(ReluNTK(depth=2), ridge=1e-2).fit(X, y)  # not stationary: not checked


def test_solvers_say_when_they_fall_short(reg):
    X, y = reg
    with pytest.warns(PerformanceWarning, match="caps the batch at 1 rows"):
        eigenpro(RBF(2.0), X, y, epochs=1, random_state=0, memory_budget="1KiB")
    with pytest.warns(NumericalWarning, match="stopped after maxiter=2"):
        nystrom_pcg(RBF(2.0), X, y, n_centers=100, maxiter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nystrom_pcg(RBF(2.0), X, y, n_centers=100, ridge=1e-3, random_state=0)  # converges within the default


def test_eigenpro_estimator_picks_eigenpro_3_above_1e5_rows():
    est = EigenProRegressor()
    assert est._n_centers(100_000) is None and est._n_centers(100_001) == 10_000
    assert EigenProRegressor(n_centers=None)._n_centers(10**6) is None
    assert EigenProRegressor(n_centers=50)._n_centers(10) == 50
    with pytest.raises(ValueError, match="'n_centers' parameter"):
        EigenProRegressor(n_centers="many")._n_centers(10)
