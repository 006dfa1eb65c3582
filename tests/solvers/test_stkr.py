"""Spectrally transformed kernel regression (``ntkit.solvers.stkr``) against a dense oracle.

The oracle forms everything explicitly on the N = n + m points X̄ = [X_l; X_u]: the Gram matrix
G = K(X̄, X̄) (tests/_reference.py), the exact eigendecomposition of G/N (numpy.linalg.eigh), the
transformed kernel K̂_s = N·V s(Λ) Vᵀ, and kernel ridge regression solved exactly
(numpy.linalg.solve of (K̂_s,ll + n·ridge·I) α = y); predictions at new points are
K̂_s(Z, X_l) α = K(Z, X̄) V (s(Λ)/Λ) Vᵀ P α. The single-power test uses no eigendecomposition at
all: K̂^p = G^p / N^{p-1} by matrix powers.

Bounds (the "iterative solver vs dense solve" row of the tolerance table, rtol 10·tol). CG stops
when ‖y − Aα̃‖ ≤ tol·‖y‖, A = K̂_s,ll + n·ridge·I. The error of the predictions at points Z is then
‖K̂_s(Z, X_l) A⁻¹ r‖ ≤ c_Z·tol·‖y‖ with c_Z = ‖K̂_s(Z, X_l) A⁻¹‖₂, computed here from the oracle
(c ≤ 1 on the labeled points, where K̂_s,ll A⁻¹ = I − n·ridge·A⁻¹). The tests assert
‖Δf‖ ≤ 10·tol·(c_Z‖y‖ + ‖f‖): the factor 10 covers the inner solve with I − ηK/N (its tolerance is
tol·(1 − ηλ_max)/10, so its error in A's products is ≤ tol/10 relative) and float64 rounding of
the kernel products (~1e-13 here). float32 data: the table's float32 row, max(10·tol, 1e-3) with
the float32 default tol = 1e-5: the float32 kernel entries carry 6e-8 relative error, which the
solve amplifies by cond(A) ≤ 1e3 on these problems (ridge 1e-2): ≤ 1e-4.

Kernel PCA with N ≤ subsample_size uses LAPACK eigh like the oracle (same maths, different
routines): the top-d eigenvectors agree to eps·‖G‖/gap ≈ 1e-13 (relative gaps ≥ 1e-3 here), and
the predictions — the Nyström extension divides by λ_d, the ridge solve by n·ridge — to ≤ 1e-9
(float64, asserted 1e-8) and 1e-3 (float32). Above subsample_size the eigenpairs come from
subspace iterations stopped at relative eigen-residual tol: the eigenvector error is then
≤ tol·λ_1/gap, which the bound below uses.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ntkit._linalg import NumericalWarning
from ntkit._validation import InvalidParameterError
from ntkit.kernels import RBF, Laplace
from ntkit.solvers import STKRResult, stkr

from .._reference import rbf

RIDGE = {np.dtype(np.float64): 1e-3, np.dtype(np.float32): 1e-2}
TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
RT = {np.dtype(np.float64): 10.0, np.dtype(np.float32): None}  # multiplier of tol; float32: max(10 tol, 1e-3)


def _problem(n=30, m=400, d=2, seed=0, dtype=np.float64, n_test=60):
    """Three Gaussian clusters; targets smooth in x plus a cluster offset (two targets)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [3.0, 0.5], [1.0, 3.0]])[:, :d] if d <= 2 else rng.normal(size=(3, d)) * 3
    lab = rng.integers(0, 3, size=n + m + n_test)
    X = centers[lab] + 0.7 * rng.normal(size=(n + m + n_test, d))
    y = np.stack([lab - 1.0 + 0.3 * np.sin(X[:, 0]), np.cos(X[:, -1])], axis=1)
    X = X.astype(dtype)
    return X[:n], y[:n].astype(dtype), X[n:n + m], X[n + m:]


class _Oracle:
    """Dense STKR: exact eigendecomposition of K(X̄, X̄)/N, transformed kernel formed explicitly."""

    def __init__(self, Xl, y, Xu, lengthscale, s_fn, ridge):
        Xl, Xu, y = (np.asarray(a, np.float64) for a in (Xl, Xu, y))
        self.X = np.vstack([Xl, Xu])
        self.ls = lengthscale
        N, n = len(self.X), len(Xl)
        self.N, self.n = N, n
        G = rbf(self.X, self.X, lengthscale)
        self.lam, self.V = np.linalg.eigh(G / N)
        self.lam_max = float(self.lam[-1])
        s = s_fn(self.lam)
        Ks = N * (self.V * s) @ self.V.T
        self.A = Ks[:n, :n] + n * ridge * np.eye(n)
        self.alpha = np.linalg.solve(self.A, y)
        self.r = np.where(self.lam > 0, s / np.where(self.lam > 0, self.lam, 1.0), 0.0)   # s(λ)/λ
        self.y = y

    def cross(self, Z):
        """K̂_s(Z, X_l) = K(Z, X̄) V (s/λ)(Λ) Vᵀ P."""
        return rbf(np.asarray(Z, np.float64), self.X, self.ls) @ ((self.V * self.r) @ self.V[: self.n].T)

    def predict(self, Z):
        return self.cross(Z) @ self.alpha

    def amplification(self, Z):
        return float(np.linalg.norm(self.cross(Z) @ np.linalg.inv(self.A), 2))


def _assert_bound(pred, oracle, Z, tol, dtype):
    ref = oracle.predict(Z)
    err = float(np.linalg.norm(np.asarray(pred, np.float64).reshape(ref.shape) - ref))
    rt = 10 * tol if RT[np.dtype(dtype)] else max(10 * tol, 1e-3)
    bound = rt * (oracle.amplification(Z) * float(np.linalg.norm(oracle.y)) + float(np.linalg.norm(ref)))
    assert err <= bound, (err, bound)


TRANSFORMS = {
    "polynomial": (dict(transformation="polynomial", coefficients=[0.5, 0.0, 2.0, 1.0]),
                   lambda lam, eta: 0.5 * lam + 2.0 * lam**3 + lam**4),
    "inverse_laplacian": (dict(transformation="inverse_laplacian", eta="ratio:0.9"),
                          lambda lam, eta: lam / (1 - eta * lam)),
    "inverse_laplacian_auto": (dict(transformation="inverse_laplacian"), lambda lam, eta: lam / (1 - eta * lam)),
    "truncated_series": (dict(transformation="inverse_laplacian", eta="ratio:0.9", n_terms=6),
                         lambda lam, eta: sum(eta**p * lam ** (p + 1) for p in range(6))),
}


def _resolve(kw, Xl, Xu):
    """Replace ``eta="ratio:f"`` by f/λ_max of the problem's K/N (so the test needs no hand-tuned η)."""
    kw = dict(kw)
    if isinstance(kw.get("eta"), str) and kw["eta"].startswith("ratio:"):
        X = np.vstack([Xl, Xu]).astype(np.float64)
        lam_max = float(np.linalg.eigvalsh(rbf(X, X, 0.8) / len(X))[-1])
        kw["eta"] = float(kw["eta"][6:]) / lam_max
    return kw


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_matches_dense_oracle(name, dtype):
    dtype = np.dtype(dtype)
    Xl, y, Xu, Xt = _problem(dtype=dtype)
    kw, s_fn = TRANSFORMS[name]
    kw = _resolve(kw, Xl, Xu)
    tol = TOL[dtype]
    res = stkr(RBF(0.8), Xl, y, Xu, ridge=RIDGE[dtype], tol=tol, random_state=0, **kw)
    assert isinstance(res, STKRResult)
    assert res.weights.dtype == dtype and res.dual_coef.dtype == dtype and res.weights.shape == (len(Xl) + len(Xu), 2)
    eta = res.eta if res.eta is not None else 0.0
    oracle = _Oracle(Xl, y, Xu, 0.8, lambda lam: s_fn(lam, eta), RIDGE[dtype])
    if name == "inverse_laplacian_auto":  # 0.99/λ_max, λ_max by Lanczos to 1e-6 (relative; float32: its data)
        assert abs(eta * oracle.lam_max - 0.99) < (1e-5 if dtype == np.float64 else 1e-4)
    X_all = np.vstack([Xl, Xu])
    _assert_bound(res.predict(Xt), oracle, Xt, tol, dtype)         # inductive, new points
    _assert_bound(res.predict(X_all), oracle, X_all, tol, dtype)   # = transductive on X̄


def test_nystrom_and_streamed_paths_match_the_oracle():
    """Preconditioner from a 150-point subsample (Nyström + Rayleigh–Ritz) and, separately, every
    product with K/N streamed through kernel_matvec (a budget too small for the Gram matrix):
    the preconditioner changes the iteration count, never the answer."""
    Xl, y, Xu, Xt = _problem(n=40, m=560)
    eta = 0.95 / float(np.linalg.eigvalsh(rbf(np.vstack([Xl, Xu]), np.vstack([Xl, Xu]), 0.8) / 600)[-1])
    oracle = _Oracle(Xl, y, Xu, 0.8, lambda lam: lam / (1 - eta * lam), 1e-3)
    for kw in (dict(subsample_size=150, n_eigen=60), dict(memory_budget="4MiB"),
               dict(memory_budget="4MiB", subsample_size=100, n_eigen=30)):
        res = stkr(RBF(0.8), Xl, y, Xu, eta=eta, ridge=1e-3, tol=1e-10, random_state=1, **kw)
        _assert_bound(res.predict(Xt), oracle, Xt, 1e-10, np.float64)


def test_inductive_on_labeled_points_is_the_fitted_value():
    """f(X_l) = K̂_s(X_l, X_l) α = y − n·ridge·α (the normal equations), from the solver's own α, to
    the final true residual the result reports."""
    Xl, y, Xu, _ = _problem()
    res = stkr(RBF(0.8), Xl, y, Xu, ridge=1e-3, tol=1e-10, random_state=0)
    fitted = y - len(Xl) * 1e-3 * res.dual_coef
    assert np.linalg.norm(res.predict(Xl) - fitted) <= 2 * res.history[-1] * np.linalg.norm(y) + 1e-12
    assert res.history[-1] <= 1e-10 and res.n_labeled == len(Xl)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_single_power_is_krr_with_the_power_kernel(p):
    """s(λ) = λ^p: kernel ridge regression with K̂^p = G^p / N^{p-1} (matrix powers, no eigh);
    p = 1 is plain kernel ridge regression on the labeled points (the unlabeled ones drop out)."""
    Xl, y, Xu, Xt = _problem(n=25, m=300)
    X = np.vstack([Xl, Xu])
    N, n, ridge = len(X), len(Xl), 1e-3
    G = rbf(X, X, 0.8)
    Kp = np.linalg.matrix_power(G, p) / N ** (p - 1)
    alpha = np.linalg.solve(Kp[:n, :n] + n * ridge * np.eye(n), y)
    cross = rbf(Xt, X, 0.8) @ np.linalg.matrix_power(G, p - 1)[:, :n] / N ** (p - 1) if p > 1 else rbf(Xt, Xl, 0.8)
    ref = cross @ alpha
    res = stkr(RBF(0.8), Xl, y, Xu, transformation="polynomial", coefficients=[0.0] * (p - 1) + [1.0], ridge=ridge,
               tol=1e-10, random_state=0)
    amp = np.linalg.norm(cross @ np.linalg.inv(Kp[:n, :n] + n * ridge * np.eye(n)), 2)
    assert np.linalg.norm(res.predict(Xt) - ref) <= 10 * 1e-10 * (amp * np.linalg.norm(y) + np.linalg.norm(ref))
    if p == 1:
        alone = stkr(RBF(0.8), Xl, y, None, transformation="polynomial", coefficients=[1.0], ridge=ridge, tol=1e-10)
        np.testing.assert_allclose(alone.predict(Xt), res.predict(Xt), rtol=1e-8, atol=1e-8 * np.abs(ref).max())


def test_truncated_series_tends_to_the_exact_inverse_laplacian():
    """Σ_{p≤q} η^{p-1}λ^p → λ/(1 − ηλ) geometrically, as (ηλ_max)^q = 0.5^40 ≈ 1e-12."""
    Xl, y, Xu, Xt = _problem(n=25, m=300)
    X = np.vstack([Xl, Xu])
    eta = 0.5 / float(np.linalg.eigvalsh(rbf(X, X, 0.8) / len(X))[-1])
    exact = stkr(RBF(0.8), Xl, y, Xu, eta=eta, tol=1e-11, random_state=0).predict(Xt)
    series = stkr(RBF(0.8), Xl, y, Xu, eta=eta, n_terms=40, tol=1e-11, random_state=0).predict(Xt)
    np.testing.assert_allclose(series, exact, rtol=1e-7, atol=1e-7 * np.abs(exact).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_pca_matches_dense_oracle(dtype):
    dtype = np.dtype(dtype)
    Xl, y, Xu, Xt = _problem(dtype=dtype)
    d, ridge = 6, RIDGE[dtype]
    res = stkr(RBF(0.8), Xl, y, Xu, transformation="kernel_pca", n_components=d, ridge=ridge)
    X = np.vstack([Xl, Xu]).astype(np.float64)
    N, n = len(X), len(Xl)
    lam, V = np.linalg.eigh(rbf(X, X, 0.8) / N)
    lam, V = lam[::-1][:d], V[:, ::-1][:, :d]
    Psi = np.sqrt(N) * V[:n]
    w = np.linalg.solve(Psi.T @ Psi + n * ridge * np.eye(d), Psi.T @ y)
    ref = (rbf(np.asarray(Xt, np.float64), X, 0.8) @ V / (np.sqrt(N) * lam)) @ w     # Nyström extension
    rtol = 1e-8 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(res.eigenvalues, lam, rtol=rtol)
    np.testing.assert_allclose(res.predict(Xt), ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    np.testing.assert_allclose(res.predict(X[:n]), Psi @ w, rtol=rtol, atol=rtol * np.abs(ref).max())
    assert res.predict(Xt).dtype == dtype


def test_kernel_pca_by_subspace_iteration_matches_dense_oracle():
    """N = 800 > subsample_size = 200: Nyström start, then Rayleigh–Ritz subspace iterations to an
    eigen-residual of 1e-11; eigenvector error ≤ tol·λ_1/gap_d, the predictions' within 1e3 of it."""
    Xl, y, Xu, Xt = _problem(n=50, m=750)
    d = 5
    res = stkr(RBF(0.8), Xl, y, Xu, transformation="kernel_pca", n_components=d, tol=1e-11, subsample_size=200,
               random_state=0)
    assert res.n_iter >= 1 and res.history[-1] <= 1e-11
    X = np.vstack([Xl, Xu])
    N, n = len(X), len(Xl)
    lam, V = np.linalg.eigh(rbf(X, X, 0.8) / N)
    lam, V = lam[::-1], V[:, ::-1]
    gap = float(np.min(-np.diff(lam[: d + 1])))
    P = np.sqrt(N) * V[:n, :d]
    w = np.linalg.solve(P.T @ P + n * 1e-3 * np.eye(d), P.T @ y)
    ref = (rbf(Xt, X, 0.8) @ V[:, :d] / (np.sqrt(N) * lam[:d])) @ w
    rel = np.linalg.norm(res.predict(Xt) - ref) / np.linalg.norm(ref)
    assert rel <= 1e3 * 1e-11 * lam[0] / gap, (rel, lam[0] / gap)


def test_multiple_targets_are_independent_fits_and_1d_targets_stay_1d():
    Xl, y, Xu, Xt = _problem(n=20, m=200)
    both = stkr(RBF(0.8), Xl, y, Xu, tol=1e-11, random_state=0)
    for j in range(2):
        one = stkr(RBF(0.8), Xl, y[:, j], Xu, tol=1e-11, random_state=0)
        assert one.weights.shape == (220,) and one.predict(Xt).shape == (len(Xt),)
        np.testing.assert_allclose(one.predict(Xt), both.predict(Xt)[:, j], rtol=1e-7,
                                   atol=1e-7 * np.abs(both.predict(Xt)).max())


def test_callable_kernel_and_edge_sizes():
    Xl, y, Xu, Xt = _problem(n=15, m=100)
    ref = stkr(Laplace(1.0), Xl, y[:, 0], Xu, tol=1e-11, random_state=0)
    res = stkr(lambda A, B: Laplace(1.0)(A, B), Xl, y[:, 0], Xu, tol=1e-11, random_state=0)
    np.testing.assert_allclose(res.predict(Xt), ref.predict(Xt), rtol=1e-7, atol=1e-9)
    # no unlabeled points (None or zero rows), and a single labeled point
    for Xu0 in (None, Xu[:0]):
        assert stkr(RBF(1.0), Xl, y, Xu0, transformation="kernel_pca", n_components=3).weights.shape == (15, 2)
        assert stkr(RBF(1.0), Xl, y, Xu0).predict(Xt).shape == (len(Xt), 2)
    one = stkr(RBF(1.0), Xl[:1], y[:1, 0], Xu, random_state=0)
    assert one.predict(Xt).shape == (len(Xt),) and np.isfinite(one.predict(Xt)).all()


def test_too_few_iterations_warn():
    Xl, y, Xu, _ = _problem(n=40, m=600)
    with pytest.warns(NumericalWarning, match="stopped after 1 iterations"):
        stkr(RBF(0.8), Xl, y, Xu, maxiter=1, n_eigen=2, tol=1e-14, random_state=0)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(transformation="laplacian"), InvalidParameterError, "'transformation' parameter of stkr"),
    (dict(ridge=0.0), InvalidParameterError, "'ridge' parameter of stkr"),
    (dict(ridge=-1.0), InvalidParameterError, "'ridge' parameter of stkr"),
    (dict(transformation="polynomial"), InvalidParameterError, "'coefficients' parameter"),
    (dict(transformation="polynomial", coefficients=[1.0, -0.5]), InvalidParameterError, "'coefficients' parameter"),
    (dict(transformation="polynomial", coefficients=[0.0, 0.0]), InvalidParameterError, "'coefficients' parameter"),
    (dict(transformation="polynomial", coefficients="1,2"), InvalidParameterError, "'coefficients' parameter"),
    (dict(eta=-1.0), InvalidParameterError, "'eta' parameter of stkr"),
    (dict(eta=1e6), ValueError, "eta=1e\\+06 is too large"),
    (dict(eta="large"), InvalidParameterError, "'eta' parameter of stkr"),
    (dict(n_terms=0), InvalidParameterError, "'n_terms' parameter"),
    (dict(transformation="kernel_pca", n_components=0), InvalidParameterError, "'n_components' parameter"),
    (dict(transformation="kernel_pca", n_components=10_000), InvalidParameterError, "'n_components' parameter"),
    (dict(tol=0.0), InvalidParameterError, "'tol' parameter of stkr"),
    (dict(maxiter=0), InvalidParameterError, "'maxiter' parameter of stkr"),
    (dict(n_eigen=0), InvalidParameterError, "'n_eigen' parameter of stkr"),
    (dict(subsample_size="all"), InvalidParameterError, "'subsample_size' parameter of stkr"),
    (dict(device="tpu"), InvalidParameterError, "'device' parameter of stkr"),
])
def test_bad_parameters_name_the_argument(kwargs, error, match):
    Xl, y, Xu, _ = _problem(n=10, m=50)
    with pytest.raises(error, match=match):
        stkr(RBF(0.8), Xl, y, Xu, **kwargs)


def test_bad_data_name_the_argument():
    Xl, y, Xu, _ = _problem(n=10, m=50)
    bad = Xl.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        stkr(RBF(), bad, y, Xu)
    with pytest.raises(ValueError, match="X_unlabeled contains NaN"):
        stkr(RBF(), Xl, y, np.vstack([Xu, bad]))
    with pytest.raises(ValueError, match="X_unlabeled has 3 features but X has 2"):
        stkr(RBF(), Xl, y, np.ones((4, 3)))
    with pytest.raises(ValueError, match="y contains NaN"):
        stkr(RBF(), Xl, np.where(np.arange(10)[:, None] == 0, np.nan, y), Xu)
    with pytest.raises(ValueError, match="y has 9 rows but X has 10"):
        stkr(RBF(), Xl, y[:9], Xu)
    with pytest.raises(ValueError, match="y must have shape"):
        stkr(RBF(), Xl, y[:, :, None], Xu)
    with pytest.raises(TypeError, match="y must hold numbers"):
        stkr(RBF(), Xl, np.array(["a"] * 10), Xu)
    with pytest.raises(ValueError, match="X must have at least 1 rows"):
        stkr(RBF(), Xl[:0], y[:0], Xu)
    with pytest.raises(TypeError, match="X must have dtype float32 or float64"):
        stkr(RBF(), Xl.astype(int), y, Xu)
    with pytest.raises(InvalidParameterError, match="stkr needs a kernel function"):
        stkr("precomputed", Xl, y, Xu)
    with pytest.raises(TypeError, match="kernel must be an ntkit kernel or a callable"):
        stkr(3, Xl, y, Xu)


def test_jax_in_jax_out():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    cpu = jax.devices("cpu")[0]
    Xl, y, Xu, Xt = _problem(n=20, m=200)
    for dtype, kw in ((np.float64, dict(transformation="polynomial", coefficients=[1.0, 0.0, 3.0])),
                      (np.float32, dict(transformation="polynomial", coefficients=[1.0, 0.0, 3.0])),
                      (np.float64, dict(transformation="kernel_pca", n_components=4)),
                      (np.float64, dict(transformation="inverse_laplacian", eta=_resolve({"eta": "ratio:0.9"}, Xl,
                                                                                        Xu)["eta"]))):
        host = stkr(RBF(0.8), Xl.astype(dtype), y.astype(dtype), Xu.astype(dtype), random_state=0, **kw)
        with jax.enable_x64(dtype == np.float64):
            Jl, Jy, Ju, Jt = (jax.device_put(jnp.asarray(a.astype(dtype)), cpu) for a in (Xl, y, Xu, Xt))
        res = stkr(RBF(0.8), Jl, Jy, Ju, random_state=0, **kw)
        pred = res.predict(Jt)
        for a in (res.weights, res.dual_coef, res.centers, pred):
            assert isinstance(a, jax.Array) and a.dtype == dtype and cpu in a.devices()
        ref = host.predict(Xt.astype(dtype))
        rt = 1e-6 if dtype == np.float64 else 1e-3  # two CG runs, each within tol = 1e-8 (float32 1e-5) of α
        np.testing.assert_allclose(np.asarray(pred), ref, rtol=rt, atol=rt * np.abs(ref).max())
    # numpy data on a named device: computed there, numpy out
    out = stkr(RBF(0.8), Xl, y, Xu, transformation="polynomial", coefficients=[1.0, 1.0], device="cpu")
    assert isinstance(out.weights, np.ndarray) and out.weights.dtype == np.float64


def test_unlabeled_points_help_on_two_moons():
    """The point of STKR: 12 labels, 588 unlabeled points; the inverse Laplacian beats kernel ridge
    regression on the labels alone (same base kernel, same ridge)."""
    from sklearn.datasets import make_moons

    X, y = make_moons(800, noise=0.12, random_state=3)
    y = y - 0.5
    Xl, yl, Xu, Xt, yt = X[:12], y[:12], X[12:600], X[600:], y[600:]
    krr = stkr(RBF(0.15), Xl, yl, Xu, transformation="polynomial", coefficients=[1.0])
    lap = stkr(RBF(0.15), Xl, yl, Xu, random_state=0)
    err_krr = np.mean((krr.predict(Xt) > 0) != (yt > 0))
    err_lap = np.mean((lap.predict(Xt) > 0) != (yt > 0))
    assert err_lap < err_krr and err_lap < 0.05, (err_lap, err_krr)


def test_no_warnings_on_a_plain_fit():
    Xl, y, Xu, _ = _problem(n=20, m=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stkr(RBF(0.8), Xl, y, Xu, random_state=0)
