"""STKRRegressor / STKRClassifier: scikit-learn's estimator checks, the semi-supervised marks
(NaN targets, -1 labels, ``X_unlabeled=``) and agreement with :func:`ntkit.solvers.stkr`.

Equality bounds: the estimator calls the solver on the same points in the same order with the same
seed, so predictions agree to rounding (1e-10 relative), except where the point order differs
(NaN/-1 marks versus ``X_unlabeled``: the unlabeled points enter X̄ in another order, which
permutes Ĝ and changes the CG iterates by rounding and the preconditioner's subsample; both runs
are within tol = 1e-8 of the same solution: 1e-6 relative).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_moons
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from ntkit.estimators import STKRClassifier, STKRRegressor
from ntkit.kernels import RBF
from ntkit.solvers import stkr


def _expected_failures(estimator):
    if isinstance(estimator, STKRClassifier):
        # sklearn.semi_supervised's convention: the label -1 marks an unlabeled sample. This check fits
        # labels {-1, 1} and expects -1 to be a class; scikit-learn exempts its own semi-supervised
        # classifiers from it by name (estimator_checks._choose_check_classifiers_labels).
        return {"check_classifiers_classes": "-1 marks unlabeled samples, as in sklearn.semi_supervised"}
    return {}


@parametrize_with_checks([STKRRegressor(), STKRClassifier(), STKRRegressor(transformation="kernel_pca")],
                         expected_failed_checks=_expected_failures)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numerical notes on scikit-learn's tiny data
        check(estimator)


@pytest.fixture(scope="module")
def moons():
    X, y = make_moons(500, noise=0.1, random_state=0)
    return X, y


def test_regressor_nan_marks_equal_x_unlabeled_and_the_solver(moons):
    X, y = moons
    t = y - 0.5
    labeled = np.arange(500) < 30
    y_nan = np.where(labeled, t, np.nan)
    est = STKRRegressor(RBF(0.2), normalize_y=False, random_state=0).fit(X, y_nan)
    sep = STKRRegressor(RBF(0.2), normalize_y=False, random_state=0).fit(X[labeled], t[labeled],
                                                                          X_unlabeled=X[~labeled])
    ref = stkr(RBF(0.2), X[labeled], t[labeled], X[~labeled], random_state=0)
    p = est.predict(X)
    np.testing.assert_allclose(p, ref.predict(X), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sep.predict(X), p, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(est.transduction_, p)     # transductive = inductive on the training rows
    assert est.transduction_.shape == (500,) and sep.transduction_.shape == (30,)
    assert np.mean((p > 0) == (y > 0.5)) > 0.95
    assert est.eta_ == ref.eta and est.n_iter_ >= 1 and est.device_ is None


def test_regressor_normalize_y_and_multioutput(moons):
    X, y = moons
    Y = np.stack([y + 10.0, 2 * y - 3.0], axis=1)
    Y[40:] = np.nan
    est = STKRRegressor(RBF(0.3), random_state=0).fit(X, Y)
    P = est.predict(X)
    assert P.shape == (500, 2) and est.y_mean_.shape == (2,)
    np.testing.assert_allclose(P[:40], Y[:40], atol=0.15)  # fits the labels with an intercept (not shrunk to 0)
    bad = Y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="some but not all targets NaN"):
        STKRRegressor().fit(X, bad)


def test_classifier_minus_one_marks_and_transduction(moons):
    X, y = moons
    y_semi = np.where(np.arange(500) < 16, y, -1)
    clf = STKRClassifier(RBF(0.2), random_state=0).fit(X, y_semi)
    assert list(clf.classes_) == [0, 1]
    assert clf.transduction_.shape == (500,) and set(np.unique(clf.transduction_)) <= {0, 1}
    assert np.mean(clf.transduction_ == y) > 0.95
    np.testing.assert_array_equal(clf.predict(X), clf.transduction_)
    sep = STKRClassifier(RBF(0.2), random_state=0).fit(X[:16], y[:16], X_unlabeled=X[16:])
    assert np.mean(sep.predict(X) == clf.predict(X)) > 0.99
    # string labels have no -1 mark: every row is labeled
    names = np.array(["a", "b"])[y]
    assert set(STKRClassifier(RBF(0.5)).fit(X[:60], names[:60]).predict(X[:5])) <= {"a", "b"}


def test_marks_and_unlabeled_data_errors(moons):
    X, y = moons
    with pytest.raises(ValueError, match="at least one labeled sample"):
        STKRClassifier().fit(X, -np.ones(500, dtype=int))
    with pytest.raises(ValueError, match="at least one labeled sample"):
        STKRRegressor().fit(X, np.full(500, np.nan))
    with pytest.raises(ValueError, match="X_unlabeled has 3 features"):
        STKRRegressor().fit(X, y.astype(float), X_unlabeled=np.ones((5, 3)))
    with pytest.raises(ValueError, match="X_unlabeled contains NaN"):
        STKRClassifier().fit(X, y, X_unlabeled=np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="'transformation' parameter of stkr"):
        STKRRegressor(transformation="heat").fit(X, y.astype(float))


def test_grid_search_pickle_and_float32(moons):
    X, y = moons
    gs = GridSearchCV(STKRClassifier(random_state=0), {"kernel__lengthscale": [0.3, 1.0]}, cv=2).fit(X[:200], y[:200])
    assert gs.best_estimator_.kernel.lengthscale in (0.3, 1.0)
    clf = STKRClassifier(RBF(0.3), random_state=0).fit(X.astype(np.float32), np.where(np.arange(500) < 20, y, -1))
    assert clf.result_.weights.dtype == np.float32
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.decision_function(X[:50]), clf.decision_function(X[:50]))


def test_device_cpu_equals_host(moons):
    pytest.importorskip("jax")
    X, y = moons
    t = np.where(np.arange(500) < 30, y - 0.5, np.nan)
    kw = dict(kernel=RBF(0.2), transformation="polynomial", coefficients=[1.0, 0.0, 2.0], random_state=0)
    host = STKRRegressor(**kw).fit(X, t)
    dev = STKRRegressor(device="cpu", **kw).fit(X, t)
    assert dev.device_ == "cpu:0" and isinstance(dev.predict(X[:5]), np.ndarray)
    # two CG runs (host float64 and XLA float64), each within tol = 1e-8 of the same α
    np.testing.assert_allclose(dev.predict(X), host.predict(X), rtol=1e-6, atol=1e-6)
