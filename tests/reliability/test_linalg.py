"""Direct factorisations: crash-safe at large n, jitter / eigen-clipping with a stated amount.

OpenBLAS's 2-thread float64 Cholesky segfaults from n ≈ 16 000 on these machines
(shared/reference/baselines.md). Every direct factorisation in ntkit goes through
``ntkit._linalg``, whose blocked Cholesky never hands LAPACK more than ``BLOCK`` columns; these
tests check that path against scipy, that every solver routes through it (by shrinking BLOCK
so that small problems take the blocked path), and solve an n = 20 000 float64 system in a
subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import scipy.linalg

import ntkit
from ntkit import _linalg
from ntkit.kernels import RBF, Laplace


def _spd(n, dtype, seed=0):
    G = np.random.default_rng(seed).normal(size=(n, n + 3))
    return (G @ G.T / n + np.eye(n)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,block", [(1, 4), (2, 1), (7, 3), (64, 64), (65, 64), (257, 32), (600, 128)])
def test_blocked_cholesky_matches_lapack(n, block, dtype):
    A = _spd(n, dtype)
    L, added = _linalg.cholesky(A, block=block)
    assert added == 0.0 and L.dtype == dtype and L.flags.c_contiguous
    assert not np.triu(L, 1).any()
    R = scipy.linalg.cholesky(A.astype(np.float64), lower=True)
    # Cholesky is backward stable: ‖L Lᵀ − A‖ ≤ c·n·eps·‖A‖, and the factor of this well-conditioned
    # matrix (κ ≤ ~10) moves by at most κ times that: 100·n·eps covers c and κ
    eps = np.finfo(dtype).eps
    assert np.abs(L - R).max() <= 100 * n * eps * np.abs(R).max()
    b = np.random.default_rng(1).normal(size=(n, 3)).astype(dtype)
    x = _linalg.cho_solve(L, b)
    assert np.abs(A.astype(np.float64) @ x - b).max() <= 100 * n * eps * max(1.0, np.abs(x).max())


def test_jitter_is_minimal_and_reported():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    X = np.vstack([X, X[:6]])  # duplicate points: K is singular
    K = np.asarray(RBF(1.0)(X))
    with pytest.warns(ntkit.NumericalWarning, match=r"added jitter .* mean diagonal"):
        L, added = _linalg.cholesky(K, block=16)
    assert 0 < added <= _linalg.MAX_JITTER
    K2 = K + added * np.eye(len(K))
    assert np.abs(L @ L.T - K2).max() < 1e-12
    with warnings.catch_warnings():  # a positive definite matrix gets none
        warnings.simplefilter("error")
        _linalg.cholesky(_spd(30, np.float64))


def test_not_psd_raises_with_advice():
    A = np.diag([1.0, 1.0, -0.5])
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite.*ridge.*clip_psd"):
        _linalg.cholesky(A)
    with pytest.raises(np.linalg.LinAlgError, match="overwritten in place"):
        _linalg.cholesky(A.copy(), overwrite_a=True)
    with pytest.raises(ValueError, match="square"):
        _linalg.cholesky(np.ones((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        _linalg.cholesky(np.diag([1.0, np.nan]))


def test_clip_psd_reports_the_clipped_mass():
    A = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -0.3]])
    with pytest.warns(ntkit.NumericalWarning, match=r"1 eigenvalues .*most negative -0.3.*9.1% of its trace norm"):
        P, w, U = _linalg.clip_psd(A)
    np.testing.assert_allclose(P, np.diag([2.0, 1.0, 0.0]), atol=1e-15)
    # round-off-level negatives (an exactly PSD matrix built in floating point) are clipped silently
    G = np.random.default_rng(0).normal(size=(50, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, w, _ = _linalg.clip_psd(G @ G.T)
    assert w.min() == 0.0


def test_lapack_runs_on_one_blas_thread(monkeypatch):
    from threadpoolctl import threadpool_info

    seen = []
    real = scipy.linalg.eigh

    def spy(*a, **k):
        seen.append(max([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"], default=1))
        return real(*a, **k)

    monkeypatch.setattr(scipy.linalg, "eigh", spy)
    A = _spd(20, np.float64)
    w, _ = _linalg.eigh(A)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(A), rtol=1e-12)
    assert seen == [1]


def _solver_runs():
    """Every ntkit computation that factors a dense matrix, on small data (results as arrays)."""
    from ntkit._leverage import recursive_rls
    from ntkit.estimators import NTKRegressor
    from ntkit.solvers import eigenpro, nystrom_pcg
    from ntkit.theory import estimate_spectrum

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = np.sin(X[:, 0])
    k = Laplace(2.0)
    return {
        "NTKRegressor(cholesky)": NTKRegressor(k, ridge=1e-3, solver="cholesky").fit(X, y).predict(X[:20]),
        "nystrom_pcg": nystrom_pcg(k, X, y, n_centers=150, ridge=1e-3, random_state=0).weights,
        "eigenpro(centers, cholesky)": eigenpro(k, X, y, centers=X[:120], epochs=2, random_state=0,
                                                projection="cholesky").weights,
        "estimate_spectrum(nystrom)": estimate_spectrum(k, X, y, method="nystrom", n_components=100,
                                                        random_state=0).eigenvalues[:20],
        "recursive_rls": recursive_rls(k, X, 60, ridge=1e-2, random_state=0)[0],
    }


def test_every_factorisation_takes_the_crash_safe_path(monkeypatch):
    reference = _solver_runs()
    calls = []
    real = _linalg._factor_inplace

    def spy(A, block):
        calls.append(A.shape[0])
        return real(A, block)

    monkeypatch.setattr(_linalg, "_factor_inplace", spy)
    monkeypatch.setattr(_linalg, "BLOCK", 16)  # every matrix above 16 rows now takes the blocked path
    blocked = _solver_runs()
    for name, ref in reference.items():
        # the blocked and the LAPACK factor differ by rounding (backward-stable, 100·n·eps above), and
        # the solvers' outputs are Lipschitz in the factor with constants ≤ ~1e4 on this data
        np.testing.assert_allclose(blocked[name], ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max(), err_msg=name)
    assert len(calls) >= len(reference), calls


def test_n20000_float64_cholesky_solve_survives():
    """A 20 000 × 20 000 float64 kernel system through NTKRegressor's Cholesky solver, in a
    subprocess with the default BLAS threads (2 on CI): the configuration in which LAPACK's
    own dpotrf crashes here. Residual checked on 2000 rows."""
    code = textwrap.dedent("""
        import numpy as np
        from ntkit.estimators import NTKRegressor
        from ntkit.kernels import RBF
        from ntkit.ops import gram
        n = 20_000
        rng = np.random.default_rng(0)
        X = rng.normal(size=(n, 10))
        y = rng.normal(size=n)
        est = NTKRegressor(RBF(3.0), ridge=1e-3, solver="cholesky", normalize_y=False).fit(X, y)
        a = est.dual_coef_.reshape(-1)
        r = np.asarray(gram(RBF(3.0), X[:2000], X)) @ a + 1e-3 * a[:2000] - y[:2000]
        print("RESIDUAL", np.abs(r).max() / np.abs(y).max())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}"
    resid = float(out.stdout.split("RESIDUAL")[1])
    # κ(K + 1e-3 I) ≤ (n·max k + 1e-3) / 1e-3 = 2e7; a backward-stable solve leaves a relative residual
    # of order n·eps·‖K‖‖α‖/‖y‖, about 1e-8 here
    assert resid < 1e-6, resid
