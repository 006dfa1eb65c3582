"""Estimator contract, bad input (clear errors, state unchanged), purity of the functional cores,
batch invariance, and the regret tooling."""

from __future__ import annotations

import copy

import matplotlib
import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from ntkit import InvalidParameterError
from ntkit._leverage import OnlineRLSDictionary
from ntkit.kernels import RBF, Laplace
from ntkit.online import (
    AOGDALD,
    KOGD,
    KONS,
    NONSALD,
    SketchedKONS,
    aogd_ald,
    kogd,
    kons,
    nons_ald,
    regret_curve,
    sketched_kons,
)
from ntkit.online._common import Rows

# Every check passes; none is skipped. (sklearn's own "s" marks are checks that do not apply, e.g.
# sample-weight checks for estimators whose fit has no sample_weight.) Four of the five estimators
# declare the ``poor_score`` tag — see _OnlineRegressor._poor_score for the measured scores.
EXPECTED_FAILED_CHECKS: dict = {}


@parametrize_with_checks([KOGD(), AOGDALD(), NONSALD(), KONS(), SketchedKONS()],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est).__name__, {}))
def test_sklearn_compatible(estimator, check):
    check(estimator)


ESTIMATORS = [lambda: KOGD(budget=30), lambda: KOGD(), lambda: AOGDALD(), lambda: NONSALD(), lambda: KONS(),
              lambda: SketchedKONS(random_state=1)]
IDS = ["KOGD-budget", "KOGD", "AOGDALD", "NONSALD", "KONS", "SketchedKONS"]
CORES = [lambda: kogd(RBF(1.0), budget=30), lambda: kogd(RBF(1.0)), lambda: aogd_ald(RBF(1.0)),
         lambda: nons_ald(RBF(1.0), refactor_every=50), lambda: kons(RBF(1.0)),
         lambda: sketched_kons(RBF(1.0), seed=2)]


def _data(n=200, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, np.sin(X[:, 0]) + 0.3 * X[:, 1] + 0.1 * rng.normal(size=n), rng.normal(size=(30, d))


def _snapshot(est, Xt):
    return (est.n_seen_, est.cumulative_loss_, est.dictionary_size_, est.n_features_in_, est.predict(Xt).copy(),
            _flatten(est.state_))


def _flatten(obj):
    """Every number in a state, recursively (NamedTuples, buffers, dictionaries)."""
    if isinstance(obj, Rows):
        return [obj.array.copy()]
    if isinstance(obj, OnlineRLSDictionary):
        return [obj.points.copy(), obj.weights.copy(), obj.factor]
    if isinstance(obj, tuple):
        return [x for f in obj for x in _flatten(f)]
    if isinstance(obj, np.ndarray):
        return [obj.copy()]
    return [obj]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, list):
            _assert_same(x, y)
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y


BAD = {
    "wrong feature count": (lambda X, y: (X[:5, :2], y[:5]), r"X has 2 features, but \w+ is expecting 3"),
    "NaN target": (lambda X, y: (X[:5], np.where(np.arange(5) == 3, np.nan, y[:5])), "Input y contains NaN"),
    "inf target": (lambda X, y: (X[:5], np.where(np.arange(5) == 2, np.inf, y[:5])), "Input y contains infinity"),
    "NaN in a row mid-batch": (lambda X, y: (np.where(np.arange(5)[:, None] == 4, np.nan, X[:5]), y[:5]),
                               "Input X contains NaN"),
    "inf in a row": (lambda X, y: (np.where(np.arange(5)[:, None] == 1, np.inf, X[:5]), y[:5]),
                     "Input X contains infinity"),
    "empty batch": (lambda X, y: (X[:0], y[:0]), r"0 sample\(s\)"),
    "length mismatch": (lambda X, y: (X[:5], y[:4]), "inconsistent numbers of samples"),
    "1-D row": (lambda X, y: (X[0], y[:1]), "Expected a 2-dimensional container|Expected 2D array"),
}


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_batch_raises_and_leaves_the_estimator_unchanged(make, case):
    X, y, Xt = _data()
    est = make().fit(X[:100], y[:100])
    before = _snapshot(est, Xt)
    Xb, yb = BAD[case][0](X[100:], y[100:])
    with pytest.raises(ValueError, match=BAD[case][1]):
        est.partial_fit(Xb, yb)
    _assert_same(_snapshot(est, Xt), before)
    est.partial_fit(X[100:], y[100:])  # and it carries on as if nothing happened
    assert est.n_seen_ == 200


@pytest.mark.parametrize("make", CORES, ids=IDS)
def test_core_rejects_bad_input_with_named_arguments(make):
    X, y, _ = _data()
    learner = make()
    st, _ = learner.update(learner.init(3), X[:50], y[:50])
    before = _flatten(st)
    with pytest.raises(ValueError, match=r"X has 2 features, but \w+ was initialised with 3"):
        learner.update(st, X[:5, :2], y[:5])
    with pytest.raises(ValueError, match="X is an empty batch"):
        learner.update(st, X[:0], y[:0])
    with pytest.raises(ValueError, match="y contains NaN"):
        learner.update(st, X[:3], np.array([1.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="X contains NaN"):
        learner.update(st, np.where(X[:3] > 0, np.nan, X[:3]), y[:3])
    with pytest.raises(ValueError, match=r"y must have one target per row of X \(3\)"):
        learner.update(st, X[:3], y[:2])
    with pytest.raises(TypeError, match="X must have dtype float32 or float64; got int64"):
        learner.update(st, X[:3].astype(np.int64), y[:3])
    _assert_same(_flatten(st), before)


@pytest.mark.parametrize("make", CORES, ids=IDS)
def test_update_is_pure_and_states_can_branch(make):
    """update never changes its input state, and two updates from one state do not interfere
    (the append-only buffers copy on write when an older version is extended)."""
    X, y, Xt = _data(n=260)
    learner = make()
    s0, _ = learner.update(learner.init(3), X[:100], y[:100])
    frozen = _flatten(s0)
    s_a, p_a = learner.update(s0, X[100:180], y[100:180])
    s_b, p_b = learner.update(s0, X[180:260], y[180:260])  # branch from the same state
    _assert_same(_flatten(s0), frozen)
    fresh = copy.deepcopy(s0)
    s_a2, p_a2 = learner.update(fresh, X[100:180], y[100:180])
    np.testing.assert_array_equal(p_a, p_a2)
    np.testing.assert_array_equal(learner.predict(s_a, Xt), learner.predict(s_a2, Xt))
    s_b2, p_b2 = learner.update(copy.deepcopy(s0), X[180:260], y[180:260])
    np.testing.assert_array_equal(learner.predict(s_b, Xt), learner.predict(s_b2, Xt))


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
def test_row_by_row_equals_one_batch_equals_mini_batches(make):
    """Chunking only changes summation order (Gram blocks of different shapes): predictions agree to
    rounding (~1e-15 relative, amplified by at most the conditioning of the solves: 1e-10 allowed)."""
    X, y, Xt = _data(n=150)
    whole = make().fit(X, y)
    rows = make()
    for i in range(len(y)):
        rows.partial_fit(X[i:i + 1], y[i:i + 1])
    cuts = [0, 1, 8, 9, 40, 97, 150]
    mini = make()
    preds = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        mini.partial_fit(X[a:b], y[a:b])
        preds.append(mini.online_predictions_)
    scale = np.abs(whole.online_predictions_).max()
    np.testing.assert_allclose(np.concatenate(preds), whole.online_predictions_, rtol=0, atol=1e-10 * scale)
    for other in (rows, mini):
        np.testing.assert_allclose(other.predict(Xt), whole.predict(Xt), rtol=0, atol=1e-10 * scale)
        assert other.n_seen_ == whole.n_seen_ and other.dictionary_size_ == whole.dictionary_size_
        assert other.cumulative_loss_ == pytest.approx(whole.cumulative_loss_, rel=1e-10)


def test_predictions_are_made_before_labels():
    """Changing y_t does not change the prediction of round t (only later ones)."""
    X, y, _ = _data(n=60)
    for make in ESTIMATORS:
        y2 = y.copy()
        y2[30] += 5.0
        a, b = make().fit(X, y), make().fit(X, y2)
        np.testing.assert_array_equal(a.online_predictions_[:31], b.online_predictions_[:31])
        assert np.any(a.online_predictions_[31:] != b.online_predictions_[31:])


@pytest.mark.parametrize("est, match", [
    (KOGD(U=-1.0), r"'U' parameter of kogd must be 'auto' or a finite real number"),
    (KOGD(learning_rate="fast"), r"'learning_rate' parameter of kogd must be 'adagrad'"),
    (KOGD(budget=0), r"'budget' parameter of kogd must be an int in the range \[1, inf\]"),
    (AOGDALD(threshold="big"), r"'threshold' parameter of aogd_ald"),
    (AOGDALD(horizon=2.5), r"'horizon' parameter of aogd_ald must be an int"),
    (NONSALD(ridge=0.0), r"'ridge' parameter of nons_ald"),
    (NONSALD(C=np.nan), r"'C' parameter of nons_ald"),
    (KONS(eta=-1.0), r"'eta' parameter of kons"),
    (SketchedKONS(gamma=0.0), r"'gamma' parameter of sketched_kons must be .* in the range \(0.0, 1.0\]"),
    (SketchedKONS(beta=-2), r"'beta' parameter of sketched_kons"),
    (KONS(kernel="rbf"), r"'kernel' parameter of kons must be an ntkit.kernels.Kernel"),
    (KONS(kernel=RBF(-1.0)), r"'lengthscale' parameter of RBF"),
])
def test_hyper_parameters_are_checked_at_fit_with_named_messages(est, match):
    X, y, _ = _data(n=10)
    with pytest.raises(InvalidParameterError, match=match):
        est.fit(X, y)
    assert not hasattr(est, "state_")


def test_default_kernel_and_verbose_progress(capsys):
    X, y, _ = _data(n=5000, d=4)
    est = AOGDALD(verbose=True).fit(X, y)
    assert isinstance(est.kernel_, RBF) and est.kernel_.lengthscale == 2.0  # sqrt(n_features)
    assert est.kernel is None  # parameters are not modified
    quiet = AOGDALD().fit(X, y)
    np.testing.assert_array_equal(est.online_predictions_, quiet.online_predictions_)
    lap = Laplace(2.0)
    assert KONS(kernel=lap).fit(X[:50], y[:50]).kernel_ is lap


# -- regret -------------------------------------------------------------------------------------

def test_regret_curve_against_exact_krr():
    matplotlib.use("Agg")
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(400, 2))
    y = np.sin(3 * X[:, 0]) + 0.1 * rng.normal(size=400)
    est = NONSALD(RBF(0.5), horizon=400)
    rc = regret_curve(est, X, y, ridge=0.5)
    assert not hasattr(est, "state_")  # the argument is cloned
    K = RBF(0.5)(X)
    f_star = K @ np.linalg.solve(K + 0.5 * np.eye(400), y)
    np.testing.assert_allclose(rc.comparator_cumulative_loss, np.cumsum((f_star - y) ** 2), rtol=1e-9)
    online = NONSALD(RBF(0.5), horizon=400).fit(X, y).online_predictions_
    np.testing.assert_allclose(rc.cumulative_loss, np.cumsum((online - y) ** 2), rtol=1e-12)
    np.testing.assert_allclose(rc.regret, rc.cumulative_loss - rc.comparator_cumulative_loss)
    assert rc.t[0] == 1 and rc.t[-1] == 400 and "exact" in rc.comparator
    # sublinear regret: the second half adds less regret than the first
    assert rc.regret[-1] - rc.regret[199] < rc.regret[199]
    ax = rc.plot()
    assert len(ax.get_lines()) == 3 and ax.get_xscale() == "log"


def test_regret_curve_with_nystrom_comparator_and_callables():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(300, 1))
    y = np.sin(3 * X[:, 0])
    rc = regret_curve(AOGDALD(RBF(0.5)), X, y, max_exact=100, n_centers=100)
    assert "Nyström" in rc.comparator and rc.comparator_cumulative_loss[-1] < 0.05 * rc.cumulative_loss[-1]
    rc0 = regret_curve(AOGDALD(RBF(0.5)), X, y, comparator=lambda Z: np.sin(3 * Z[:, 0]))
    np.testing.assert_allclose(rc0.comparator_loss, 0.0, atol=1e-30)
    np.testing.assert_allclose(rc0.regret, rc0.cumulative_loss)
    with pytest.raises(ValueError, match="comparator must be 'krr'"):
        regret_curve(AOGDALD(), X, y, comparator="best")
