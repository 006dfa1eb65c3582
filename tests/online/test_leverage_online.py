"""ntkit._leverage.OnlineRLSDictionary: the one place where online ridge leverage scores are computed.

Its scores must be the batch estimator's (``approximate_leverage_scores``, same formula, same
dictionary and weights) — equal to rounding (both solve with a Cholesky factor of the same
well-conditioned matrix S K S + γI, eigenvalues ≥ γ: errors ~ m·eps·cond ≲ 1e-12); with every point
in the dictionary and unit weights they are the exact scores diag(K(K + γI)⁻¹) up to the self term.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from ntkit._leverage import OnlineRLSDictionary, approximate_leverage_scores, exact_leverage_scores
from ntkit.kernels import RBF, Matern
from tests import _reference as ref


def _grow(kernel, D, weights, ridge):
    dic = OnlineRLSDictionary(D.shape[1], ridge, capacity=2)  # tiny capacity: exercises reallocation
    for x, w in zip(D, weights):
        dic = dic.add(kernel=kernel, x=x, weight=w)
    return dic


@pytest.mark.parametrize("kernel", [RBF(0.7), Matern(1.0, nu=1.5)], ids=["rbf", "matern"])
def test_scores_match_the_batch_estimator(kernel):
    rng = np.random.default_rng(0)
    D, X = rng.normal(size=(40, 3)), rng.normal(size=(60, 3))
    w = 1 / np.sqrt(rng.uniform(0.1, 1.0, size=40))
    dic = _grow(kernel, D, w, 0.05)
    online = dic.leverage(kernel, X)
    batch = approximate_leverage_scores(kernel, X, D, 0.05, weights=w)
    np.testing.assert_allclose(np.clip(online, 0, 1), batch, rtol=1e-10, atol=1e-12)
    L = dic.factor
    M = w[:, None] * ref.matern(D, D, 1.0, 1.5) * w[None, :] if isinstance(kernel, Matern) else \
        w[:, None] * ref.rbf(D, D, 0.7) * w[None, :]
    np.testing.assert_allclose(L @ L.T, M + 0.05 * np.eye(40), rtol=0, atol=1e-12 * np.abs(M).max())


def test_all_points_in_dictionary_gives_exact_scores_with_self():
    """τ̃/(1 + τ̃) with x's own atom left out equals the exact leverage diag(K (K + γI)⁻¹)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    k = RBF(1.0)
    exact = exact_leverage_scores(k, X, 0.1)
    for i in (0, 7, 29):
        others = np.delete(X, i, axis=0)
        tau = _grow(k, others, np.ones(29), 0.1).leverage(k, X[i:i + 1])[0]
        assert tau / (1 + tau) == pytest.approx(exact[i], rel=1e-10)


def test_ald_residual_is_the_distance_to_the_span():
    """ridge 0: residual = k(x,x) − k_Dᵀ K_DD⁻¹ k_D, zero on the atoms, solves are with L."""
    rng = np.random.default_rng(2)
    D, X = rng.uniform(-1, 1, size=(12, 2)), rng.uniform(-1, 1, size=(20, 2))
    k = RBF(0.5)
    dic = _grow(k, D, np.ones(12), 0.0)
    K = ref.rbf(D, D, 0.5)
    kDX = ref.rbf(D, X, 0.5)
    direct = 1.0 - np.einsum("ij,ij->j", kDX, np.linalg.solve(K, kDX))
    np.testing.assert_allclose(dic.residual(k, X), direct, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dic.residual(k, D), 0.0, atol=1e-10)
    b = rng.normal(size=12)
    np.testing.assert_allclose(dic.factor @ dic.solve_lower(b), b, atol=1e-12)
    np.testing.assert_allclose(dic.factor.T @ dic.solve_upper(b), b, atol=1e-10)
    with pytest.raises(ValueError, match="non-positive pivot"):
        dic.add(kernel=k, x=D[3])  # already in the span
    with pytest.raises(ValueError, match="leverage scores need ridge > 0"):
        dic.leverage(k, X)


def test_versions_are_immutable_and_branches_do_not_interfere():
    rng = np.random.default_rng(3)
    P = rng.normal(size=(10, 2))
    k = RBF(1.0)
    base = _grow(k, P[:5], np.ones(5), 0.2)
    frozen = (base.points.copy(), base.factor)
    a = base.add(kernel=k, x=P[5])
    b = base.add(kernel=k, x=P[6], weight=2.0)  # base is no longer the newest: copy-on-write
    a2 = a.add(kernel=k, x=P[7])
    np.testing.assert_array_equal(base.points, frozen[0])
    np.testing.assert_array_equal(base.factor, frozen[1])
    np.testing.assert_array_equal(a.points[-1], P[5])
    np.testing.assert_array_equal(b.points[-1], P[6])
    np.testing.assert_array_equal(a2.points, P[[0, 1, 2, 3, 4, 5, 7]])
    fresh = _grow(k, P[[0, 1, 2, 3, 4, 6]], [1, 1, 1, 1, 1, 2.0], 0.2)
    np.testing.assert_allclose(b.factor, fresh.factor, rtol=1e-14, atol=1e-15)
    assert len(pickle.loads(pickle.dumps(a2))) == 7 and len(copy.deepcopy(b)) == 6
    with pytest.raises(ValueError, match="read-only"):
        a.points[0, 0] = 1.0


def test_batch_scores_with_a_large_dictionary_match_the_dense_formula():
    """A dictionary of 300 atoms: the batch estimator splits L⁻¹ into row blocks (skipping its zero
    upper blocks); the scores must equal τ̃ = (k(x,x) − k̄ᵀS (S K_DD S + γI)⁻¹ S k̄)/γ from a dense
    solve. Bound: the explicit triangular inverse errs by ~cond(L)·eps relative; here
    cond(S K S + γI) ≤ (300·max w² + γ)/γ ≈ 6e4, so cond(L) ≈ 250 and 1e-9 is generous."""
    import scipy.linalg

    rng = np.random.default_rng(4)
    D, X = rng.normal(size=(300, 3)), rng.normal(size=(500, 3))
    w = 1 / np.sqrt(rng.uniform(0.1, 1.0, size=300))
    k, gam = RBF(0.9), 0.05
    batch = approximate_leverage_scores(k, X, D, gam, weights=w)
    M = w[:, None] * ref.rbf(D, D, 0.9) * w[None, :] + gam * np.eye(300)
    Kb = w[:, None] * ref.rbf(D, X, 0.9)
    quad = np.einsum("ij,ij->j", Kb, scipy.linalg.solve(M, Kb, assume_a="pos"))
    dense = np.clip((1.0 - quad) / gam, 0.0, 1.0)  # k(x, x) = 1 for the RBF kernel
    assert 0.05 < np.median(dense) < 0.95  # scores inside (0, 1): the comparison is not vacuous
    np.testing.assert_allclose(batch, dense, rtol=0, atol=1e-9)
