"""Dictionary growth rates, long-run accuracy of the incremental quantities, dtypes and units.

Dictionary growth (Li & Liao 2023, ALD threshold α = 5/sqrt(T)): for a kernel whose eigenvalues
decay exponentially the dictionary has O(ln² T) atoms; for polynomial decay λ_i ~ i^{-p} it is
sublinear when p > 4 (AOGD-ALD). In one dimension the ALD residual of a point at distance h from the
dictionary is δ ~ h^{2ν} for Matérn-ν (p = 2ν + 1), so ``δ > α²`` needs h ~ α^{1/ν} and
``|D_T| ~ T^{1/(2ν)}`` — T^{0.2} for ν = 5/2 (p = 6), but T^{1} for Laplace (ν = 1/2, p = 2 ≤ 4),
where the theory promises nothing and the dictionary indeed grows linearly. Measured (seed 0,
anytime schedule, T = 2^10 … 2^15): RBF 2-D 29 → 51 atoms (ln²T grows 2.25×, atoms 1.76×);
Matérn-5/2 1-D 20 → 41 (fitted exponent 0.21); Laplace 1-D, T = 2^8 … 2^12: 34 → 500 (exponent 0.97).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from ntkit.kernels import RBF, Laplace, Matern
from ntkit.ops import gram
from ntkit.online import AOGDALD, KOGD, KONS, NONSALD, SketchedKONS, aogd_ald, kogd, kons, nons_ald
from tests import _reference as ref
from tests.online import _reference_online as R


def _dictionary_sizes(kernel, d, Ts, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(Ts[-1], d))
    y = np.sin(3 * X[:, 0])
    est, sizes, prev = AOGDALD(kernel), [], 0
    for T in Ts:
        est.partial_fit(X[prev:T], y[prev:T])
        prev = T
        sizes.append(est.dictionary_size_)
    return np.array(sizes, dtype=float), np.array(Ts, dtype=float)


def _fitted_exponent(sizes, Ts):
    return float(np.polyfit(np.log(Ts), np.log(sizes), 1)[0])


def test_dictionary_grows_like_log_squared_for_rbf():
    """Bound: |D_T| ≤ c ln²T, with c measured at the smallest T (10% slack)."""
    sizes, Ts = _dictionary_sizes(RBF(0.5), 2, [2 ** j for j in range(10, 16)])
    c = sizes[0] / np.log(Ts[0]) ** 2
    assert np.all(sizes <= 1.1 * c * np.log(Ts) ** 2), sizes
    assert sizes[-1] > 1.2 * sizes[0]  # it does grow (a dictionary frozen by a bug would not)
    assert _fitted_exponent(sizes, Ts) < 0.25  # far from any power of T


def test_dictionary_sublinear_for_polynomial_decay_and_linear_below_the_condition():
    """Matérn-5/2 in 1-D (p = 6 > 4): |D_T| = O(T^{1/5}); Laplace (p = 2): linear, as predicted."""
    sizes, Ts = _dictionary_sizes(Matern(0.2, nu=2.5), 1, [2 ** j for j in range(10, 16)])
    e = _fitted_exponent(sizes, Ts)
    assert 0.1 < e < 0.35, (sizes, e)  # theory: 0.2
    assert sizes[-1] <= 1.25 * sizes[0] * (Ts[-1] / Ts[0]) ** 0.2
    sizes_l, Ts_l = _dictionary_sizes(Laplace(0.5), 1, [2 ** j for j in range(8, 13)])
    assert _fitted_exponent(sizes_l, Ts_l) > 0.85, sizes_l


def _round_of_atoms(state, X):
    """Round index (0-based) at which each dictionary atom was added (atoms are copies of rows of X)."""
    P = state.dictionary.points
    idx = []
    for p in P:
        hit = np.flatnonzero(np.all(X == p, axis=1))
        idx.append(int(hit[0]))
    return np.array(idx)


def test_nons_ald_inverse_stays_accurate_over_1e5_rounds():
    """After 10⁵ rounds the maintained A⁻¹ (Sherman–Morrison + refactoring every 1000 rounds) is the
    inverse of A recomputed from scratch: A = μI + Σ_t η_t c_t² φ_t φ_tᵀ with φ_t the features of x_t
    in the dictionary of round t (the first |D_t| coordinates of L⁻¹k_D(x_t): Cholesky is nested),
    c_t = 2(ŷ_t − y_t) from the online predictions and η_t from the documented rule.
    Tolerance: ‖A⁻¹_maintained A − I‖ ≤ 100 · eps · cond(A) — what a fresh inversion achieves."""
    T = 100_000
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(T, 1))
    y = np.sin(4 * X[:, 0]) + 0.1 * rng.normal(size=T)
    k = RBF(0.3)
    learner = nons_ald(k, ridge=1e-2, horizon=T)
    st, p = learner.update(learner.init(1), X, y)
    assert st.t == T
    m = len(st.dictionary)
    added = _round_of_atoms(st, X)
    F = st.dictionary.solve_lower(np.asarray(k(st.dictionary.points, X))).T  # (T, m), final coordinates
    sizes = np.searchsorted(np.sort(added), np.arange(T), side="right")  # |D_t| after round t's test
    F[np.arange(m)[None, :] >= sizes[:, None]] = 0.0  # features of round t live in its own dictionary
    ys_before = np.concatenate([[0.0], np.maximum.accumulate(np.abs(y))[:-1]])
    ys_after = np.maximum.accumulate(np.abs(y))
    eta = 1.0 / (4 * (ys_before ** 2 + ys_after ** 2))
    e = eta * (2 * (p - y)) ** 2
    A = 1e-2 * np.eye(m) + (F * e[:, None]).T @ F
    err = np.abs(st.inverse() @ A - np.eye(m)).max()
    assert err <= 100 * np.finfo(float).eps * np.linalg.cond(A), (err, np.linalg.cond(A))
    np.testing.assert_allclose(st.matrix(), A, rtol=0, atol=1e-10 * np.abs(A).max())


def test_kons_factor_is_the_cholesky_of_the_recomputed_matrix():
    """The appended-row factor equals chol(αI + ΩKΩ) of all T rounds, to rounding (no drift)."""
    T = 1500
    rng = np.random.default_rng(1)
    X = rng.normal(size=(T, 2))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=T)
    learner = kons(RBF(1.0), ridge=0.5)
    st, _ = learner.update(learner.init(2), X, y)
    w = st.sketch.weights
    M = 0.5 * np.eye(T) + w[:, None] * np.asarray(gram(RBF(1.0), X)) * w[None, :]
    L = st.sketch.factor
    np.testing.assert_allclose(L @ L.T, M, rtol=0, atol=1e-12 * np.abs(M).max())
    np.testing.assert_allclose(L, np.linalg.cholesky(M), rtol=0, atol=1e-10)


@pytest.mark.parametrize("budget, T", [(None, 4000), (60, 20000)])
def test_kogd_tracked_norm_matches_quadratic_form(budget, T):
    """‖f‖² tracked incrementally (with removals) equals cᵀKc; error bound ~ T·eps·U²."""
    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, size=(T, 2))
    y = 5 * np.sin(3 * X[:, 0]) + rng.normal(size=T)
    U = 3.0  # small enough that the projection is active on this stream
    learner = kogd(RBF(0.4), budget=budget, U=U)
    st, _ = learner.update(learner.init(2), X, y)
    P = st.support_vectors
    exact = float(st.coef @ np.asarray(gram(RBF(0.4), P)) @ st.coef)
    assert st.norm_sq == pytest.approx(exact, abs=1e4 * T * np.finfo(float).eps * U ** 2)
    assert 0.5 * U ** 2 < exact <= U ** 2 * (1 + 1e-9)


def test_aogd_ald_norm_is_exact():
    """f = θᵀφ_D with orthonormal coordinates: ‖θ‖² = cᵀK_DD c, and the projection keeps it ≤ U."""
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(3000, 2))
    y = 2 * np.sign(X[:, 0]) + 0.1 * rng.normal(size=3000)
    learner = aogd_ald(RBF(0.3), U=1.0, horizon=3000)
    st, _ = learner.update(learner.init(2), X, y)
    c = st.coefficients()
    D = st.dictionary.points
    assert float(st.theta @ st.theta) == pytest.approx(float(c @ ref.rbf(D, D, 0.3) @ c), rel=1e-9)
    assert np.linalg.norm(st.theta) == pytest.approx(1.0, rel=1e-12)  # the ball is active


ESTIMATORS = [lambda: KOGD(budget=50), lambda: AOGDALD(horizon=300), lambda: NONSALD(horizon=300), lambda: KONS(),
              lambda: SketchedKONS(random_state=0)]
IDS = ["KOGD", "AOGDALD", "NONSALD", "KONS", "SketchedKONS"]


def _data(n=300, d=3, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=n), rng.normal(size=(40, d))


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
def test_float32_in_float32_out(make):
    """Inputs are cast to float64 at entry (states are long-lived sums): a float32 stream gives the
    float64 results on its (upcast) values, rounded once to float32 (rtol 2^-23 ≈ 1.2e-7 → 1e-6), and
    stays within the float32 tolerance (1e-4) of the float64 stream it was rounded from."""
    X, y, Xt = _data()
    X32, y32, Xt32 = X.astype(np.float32), y.astype(np.float32), Xt.astype(np.float32)
    e32 = make().fit(X32, y32)
    e64r = make().fit(X32.astype(np.float64), y32.astype(np.float64))
    e64 = make().fit(X, y)
    p32 = e32.predict(Xt32)
    assert p32.dtype == np.float32 and e32.online_predictions_.dtype == np.float32
    scale = np.abs(e64r.predict(Xt)).max()
    np.testing.assert_allclose(p32, e64r.predict(Xt32.astype(np.float64)), rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(p32, e64.predict(Xt), rtol=1e-4, atol=1e-4 * scale)
    assert e64.predict(Xt).dtype == np.float64


@pytest.mark.parametrize("make", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize("s", [1e3, 1e-3])
def test_auto_rules_make_learners_equivariant_to_the_unit_of_y(make, s):
    X, y, Xt = _data()
    a, b = make().fit(X, y), make().fit(X, s * y)
    np.testing.assert_allclose(b.online_predictions_, s * a.online_predictions_, rtol=1e-9, atol=1e-9 * s)
    np.testing.assert_allclose(b.predict(Xt), s * a.predict(Xt), rtol=1e-9, atol=1e-9 * s)
    assert b.cumulative_loss_ == pytest.approx(s * s * a.cumulative_loss_, rel=1e-9)


def test_auto_radius_fixes_the_stalling_of_fixed_U():
    """Issue 8: with U = 2 AOGD-ALD stalls on a target of range [−1, 2]; "auto" (here U = 10) does
    not. Measured test MSE (T = 20000): U = 2 → 0.087, U = 5 → 0.0004, U = 10 → 0.0006,
    auto (U = 5·max|y| = 10.6) → 0.0008."""
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, size=(20000, 2))
    f = lambda Z: 0.5 + 1.5 * np.sin(2 * Z[:, 0]) * np.cos(Z[:, 1])  # noqa: E731 - range ≈ [−0.76, 1.76]
    y = f(X) + 0.05 * rng.normal(size=20000)
    Xt = rng.uniform(-1, 1, size=(2000, 2))
    mse = {U: float(np.mean((AOGDALD(RBF(0.5), U=U, horizon=20000).fit(X, y).predict(Xt) - f(Xt)) ** 2))
           for U in (2.0, "auto")}
    assert mse["auto"] < 0.2 * mse[2.0], mse


def test_long_stream_state_is_reusable_after_pickling():
    import pickle

    X, y, Xt = _data(n=500)
    est = NONSALD(horizon=1000).fit(X[:250], y[:250])
    clone_ = pickle.loads(pickle.dumps(est))
    est.partial_fit(X[250:], y[250:])
    clone_.partial_fit(X[250:], y[250:])
    np.testing.assert_array_equal(est.predict(Xt), clone_.predict(Xt))
    assert copy.deepcopy(est).n_seen_ == 500


def test_reference_rules_match_documentation():
    """The oracle's auto rules (written from the docs) agree with the library's on a stream."""
    from ntkit.online import _common as c

    y = np.array([0.5, -2.0, 1.0, 3.0])
    before, after = c.running_max_abs(0.0, y)
    for t in range(4):
        assert c.bound("auto", before[t]) == R.auto_C(y, t)
        assert c.curvature("auto", before[t], after[t]) == pytest.approx(R.auto_eta(R.auto_C(y, t), y, t))
    assert c.radius("auto", 3.0, 4.0) == 7.5
    np.testing.assert_allclose(c.ald_thresholds("auto", None, 0, 5), 5 / np.sqrt([1, 2, 4, 4, 8]))
    np.testing.assert_allclose(c.ald_thresholds("auto", 100, 0, 3), 0.5)
