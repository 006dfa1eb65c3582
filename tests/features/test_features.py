"""ntkit.features against the exact kernels they estimate.

Statistical assertions use fixed seeds (deterministic) and bounds derived from the estimators'
variance: an average of S independent unbiased estimates differs from its mean by at most
z·se with se the standard error measured across the S estimates; z = 5 for every entry of a
Gram matrix (≈ 1e-3 chance that any of a thousand Gaussian entries exceeds it).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from ntkit._leverage import exact_leverage_scores
from ntkit.features import (ArcCosineFeatures, NTKRandomFeatures, Nystroem, PositiveRandomFeatures,
                            RandomFourierFeatures, UniversalRandomFeatures, approximation_error)
from ntkit.features._fourier import _hadamard_blocks, fwht
from ntkit.features._neural import _count_sketch, tensor_sketch
from ntkit.kernels import RBF, ArcCosine, Laplace, Matern, ReluNNGP, ReluNTK


def _unbiased(make, X, K, seeds=30, z=5.0):
    """Mean of ΦΦᵀ over seeds is within z standard errors (+ rounding) of K everywhere."""
    est = np.stack([(lambda F: F @ F.T)(make(s).fit_transform(X)) for s in range(seeds)])
    mean = est.mean(0)
    se = est.std(0, ddof=1) / np.sqrt(seeds)
    excess = np.abs(mean - K) - z * se - 1e-12 * np.abs(K).max()
    assert excess.max() <= 0, f"bias beyond {z} s.e.: worst |mean - K| = {np.abs(mean - K).max():.3g}"
    return mean


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).normal(size=(25, 6))


# ------------------------------------------------------------------------ Fourier

@pytest.mark.parametrize("kernel,exact", [("rbf", RBF(2.0)), ("laplace", Laplace(2.0)), ("matern", Matern(2.0, nu=1.5)),
                                          ("matern", Matern(2.0, nu=2.5))])
@pytest.mark.parametrize("orthogonal", [False, True])
def test_rff_unbiased(X, kernel, exact, orthogonal):
    nu = getattr(exact, "nu", 1.5)
    _unbiased(lambda s: RandomFourierFeatures(kernel, lengthscale=2.0, nu=nu, n_components=64,
                                              orthogonal=orthogonal, random_state=s), X, exact(X))


def test_odd_output_sizes_stay_unbiased(X):
    _unbiased(lambda s: RandomFourierFeatures(lengthscale=2.0, n_components=7, random_state=s), X, RBF(2.0)(X),
              seeds=60)
    _unbiased(lambda s: RandomFourierFeatures(lengthscale=2.0, n_components=1, random_state=s), X, RBF(2.0)(X),
              seeds=60)
    Xs = 0.4 * X
    _unbiased(lambda s: PositiveRandomFeatures(9, kind="hyperbolic", random_state=s), Xs, np.exp(Xs @ Xs.T), seeds=60)


def test_rff_ard_lengthscale(X):
    ls = np.linspace(0.5, 3.0, X.shape[1])
    _unbiased(lambda s: RandomFourierFeatures(lengthscale=ls, n_components=64, random_state=s), X, RBF(ls)(X))


def test_rff_error_falls_like_one_over_sqrt_D():
    X = np.random.default_rng(1).normal(size=(40, 8))
    K = RBF(3.0)(X)
    Ds = np.array([32, 128, 512, 2048])
    err = [np.mean([np.linalg.norm(RandomFourierFeatures(lengthscale=3.0, n_components=D, random_state=s)
                                   .fit_transform(X) @ RandomFourierFeatures(lengthscale=3.0, n_components=D,
                                                                            random_state=s).fit_transform(X).T - K)
                    for s in range(12)]) for D in Ds]
    slope = np.polyfit(np.log(Ds), np.log(err), 1)[0]
    # Monte-Carlo error: E‖K̂ − K‖_F ∝ D^{-1/2} exactly in expectation of the square; 12 seeds
    # give a slope within ±0.1 of −1/2
    assert abs(slope + 0.5) < 0.1, slope


def _mean_err(X, K, seeds=24, **kw):
    errs = []
    for s in range(seeds):
        F = RandomFourierFeatures(random_state=s, **kw).fit_transform(X)
        errs.append(np.linalg.norm(F @ F.T - K) / np.linalg.norm(K))
    return np.mean(errs), np.std(errs, ddof=1) / np.sqrt(seeds)


def test_orthogonal_beats_iid_and_structured_matches_orthogonal():
    d = 64
    X = np.random.default_rng(2).normal(size=(60, d))
    ls = np.sqrt(d)
    K = RBF(ls)(X)
    iid, iid_se = _mean_err(X, K, lengthscale=ls, n_components=256)
    orf, orf_se = _mean_err(X, K, lengthscale=ls, n_components=256, orthogonal=True)
    srf, _ = _mean_err(X, K, lengthscale=ls, n_components=256, structured=True)
    # strictly better: the gap exceeds 3 combined standard errors
    assert iid - orf > 3 * np.hypot(iid_se, orf_se), (iid, orf)
    assert srf <= 1.10 * orf, (srf, orf)


def test_structured_frequencies_are_the_map():
    X = np.random.default_rng(3).normal(size=(10, 20))
    f = RandomFourierFeatures(lengthscale=1.5, n_components=80, structured=True, random_state=0).fit(X)
    W = f.frequencies_
    assert W.shape == (40, 20)
    np.testing.assert_allclose(f._project(X), (X / 1.5) @ W.T, rtol=1e-12, atol=1e-12)


def test_native_hadamard_equals_numpy_fallback(monkeypatch):
    ntkit_native = pytest.importorskip("ntkit_native")
    if not ntkit_native.is_available():
        pytest.skip("native extension not built")
    rng = np.random.default_rng(4)
    for d, dp, dtype, tol in [(5, 8, np.float64, 1e-14), (100, 128, np.float64, 1e-13), (300, 512, np.float32, 1e-5),
                              (1, 1, np.float64, 0)]:
        X = rng.normal(size=(9, d)).astype(dtype)
        S = rng.choice([-1.0, 1.0], size=(3, 3, dp)).astype(dtype)
        native = _hadamard_blocks(X, S)
        out = np.zeros((9, 3, dp), dtype=np.float64)
        out[:, :, :d] = X[:, None, :]
        for k in range(3):
            out *= S[None, :, k, :]
            fwht(out)
            out /= np.sqrt(dp)
        np.testing.assert_allclose(native, out.reshape(9, 3 * dp), rtol=0, atol=tol * max(1.0, np.abs(out).max()))
    # the H D H D H D block is orthogonal: norms are kept
    X = rng.normal(size=(4, 64))
    S = rng.choice([-1.0, 1.0], size=(1, 3, 64))
    np.testing.assert_allclose(np.linalg.norm(_hadamard_blocks(X, S), axis=1), np.linalg.norm(X, axis=1), rtol=1e-13)
    with pytest.raises(ValueError, match="power of two"):
        ntkit_native.hadamard_blocks(X, rng.choice([-1.0, 1.0], size=(1, 3, 65)))
    with pytest.raises(ValueError, match="features"):
        ntkit_native.hadamard_blocks(rng.normal(size=(2, 70)), S)


# ------------------------------------------------------------------------ positive

@pytest.mark.parametrize("kernel", ["softmax", "gaussian"])
@pytest.mark.parametrize("kind", ["positive", "hyperbolic"])
@pytest.mark.parametrize("orthogonal", [False, True])
def test_positive_features_positive_and_unbiased(X, kernel, kind, orthogonal):
    Xs = 0.4 * X
    K = np.exp(Xs @ Xs.T) if kernel == "softmax" else RBF(1.0)(Xs)
    make = lambda s: PositiveRandomFeatures(256, kernel=kernel, kind=kind, orthogonal=orthogonal,  # noqa: E731
                                            random_state=s)
    assert (make(0).fit_transform(Xs) > 0).all()
    _unbiased(make, Xs, K, seeds=40)


def test_positive_features_lengthscale_and_overflow():
    X = np.random.default_rng(5).normal(size=(10, 4))
    _unbiased(lambda s: PositiveRandomFeatures(256, kernel="gaussian", lengthscale=2.0, random_state=s), X,
              RBF(2.0)(X), seeds=40)
    f = PositiveRandomFeatures(16, random_state=0).fit(X)
    with pytest.raises(ValueError, match="underflow"):
        f.transform(100.0 * X)


# ------------------------------------------------------------------------ neural

@pytest.mark.parametrize("order", [0, 1, 2])
def test_arccos_unbiased_at_depth_one(X, order):
    _unbiased(lambda s: ArcCosineFeatures(order, n_components=256, random_state=s), X, ArcCosine(order)(X))


def _arccos_depth(X, order, depth):
    """The depth-fold arc-cosine kernel by its recursion (Cho & Saul 2009, eq. 8)."""
    K = ArcCosine(order)(X)
    for _ in range(depth - 1):
        dg = np.sqrt(np.diag(K))
        cos = np.clip(K / np.outer(dg, dg), -1, 1)
        th = np.arccos(cos)
        J = {0: np.pi - th, 1: np.sin(th) + (np.pi - th) * cos,
             2: 3 * np.sin(th) * cos + (np.pi - th) * (1 + 2 * cos**2)}[order]
        K = np.outer(dg, dg) ** order * J / np.pi
    return K


@pytest.mark.parametrize("order", [0, 1])
def test_arccos_deep_converges(X, order):
    K = _arccos_depth(X, order, 3)
    errs = [np.linalg.norm((lambda F: F @ F.T)(ArcCosineFeatures(order, depth=3, n_components=m, random_state=0)
                                                .fit_transform(X)) - K) / np.linalg.norm(K) for m in (128, 4096)]
    # Monte-Carlo error ∝ m^{-1/2}: 32× more units, about 5.7× smaller error (the O(1/m) bias is below it)
    assert errs[1] < errs[0] / 3 and errs[1] < 0.06, errs


def test_tensor_sketch_unbiased():
    rng = np.random.default_rng(6)
    U, V = rng.normal(size=(5, 7)), rng.normal(size=(5, 3))
    exact = (U @ U.T) * (V @ V.T)
    est = []
    for s in range(400):
        r = np.random.default_rng(s)
        C1, C2 = _count_sketch(r, 7, 16), _count_sketch(r, 3, 16)
        T = tensor_sketch(U, V, C1, C2)
        est.append(T @ T.T)
    est = np.stack(est)
    se = est.std(0, ddof=1) / np.sqrt(len(est))
    assert np.all(np.abs(est.mean(0) - exact) <= 5 * se + 1e-12)


@pytest.mark.parametrize("bias_std", [0.0, 0.7])
def test_ntk_features_unbiased_at_depth_one(X, bias_std):
    _unbiased(lambda s: NTKRandomFeatures(1, n_components=512, weight_std=1.3, bias_std=bias_std, random_state=s), X,
              ReluNTK(depth=1, weight_std=1.3, bias_std=bias_std)(X))


@pytest.mark.parametrize("depth", [2, 3])
def test_ntk_features_converge_deep(X, depth):
    K = ReluNTK(depth=depth, weight_std=1.2, bias_std=0.3)(X)
    errs = []
    for m in (256, 8192):
        F = NTKRandomFeatures(depth, n_components=m, weight_std=1.2, bias_std=0.3, random_state=1).fit_transform(X)
        errs.append(np.linalg.norm(F @ F.T - K) / np.linalg.norm(K))
    # 32× more units: about 5.7× smaller Monte-Carlo error
    assert errs[1] < errs[0] / 3 and errs[1] < 0.06, errs
    # the NNGP part of the features is the first block: its Gram estimates ReluNNGP
    G = F[:, : 8192 // 2 + 1]
    Kg = ReluNNGP(depth=depth, weight_std=1.2, bias_std=0.3)(X)
    assert np.linalg.norm(G @ G.T - Kg) / np.linalg.norm(Kg) < 0.06


# ------------------------------------------------------------------------ Nyström

def test_nystroem_with_all_points_is_exact():
    X = np.random.default_rng(7).normal(size=(80, 3))
    for kernel in (RBF(1.0), Laplace(2.0), ReluNTK(depth=2), lambda A, B: (A @ B.T + 1.0) ** 2):
        ny = Nystroem(kernel, n_components=80).fit(X)
        K = kernel(X, X)
        # K K⁺ K = K; eigenvalues dropped below n·eps·μ_max move entries by at most that much
        np.testing.assert_allclose(ny.transform(X) @ ny.transform(X).T, K, rtol=0, atol=1e-9 * np.abs(K).max())
        assert approximation_error(ny, kernel, X).frobenius < 1e-9


def _clusters(seed):
    """One big tight cluster plus fifty small far-away ones (10 points each)."""
    rng = np.random.default_rng(seed)
    big = 0.5 * rng.normal(size=(3000, 3))
    c = rng.normal(size=(50, 3))
    c = 40 * c / np.linalg.norm(c, axis=1, keepdims=True)
    return np.vstack([big] + [ci + 0.1 * rng.normal(size=(10, 3)) for ci in c])


def test_rls_nystroem_beats_uniform_on_unbalanced_clusters():
    X = _clusters(0)
    k = RBF(1.0)
    fro = {}
    for sampling in ("uniform", "rls"):
        fro[sampling] = np.mean([approximation_error(Nystroem(k, n_components=200, sampling=sampling, random_state=s),
                                                     k, X).frobenius for s in range(3)])
    assert fro["uniform"] > 2 * fro["rls"], fro
    ny = Nystroem(k, n_components=200, sampling="rls", random_state=0).fit(X)
    exact = exact_leverage_scores(k, X, ny.ridge_).sum()
    # the recursive estimate over-counts (dictionary residuals are ≥ the exact ones) by a small factor
    assert exact <= ny.d_eff_ <= 3 * exact, (ny.d_eff_, exact)
    assert (ny.component_indices_ >= 3000).sum() >= 30  # most small clusters get a landmark


# ------------------------------------------------------------------------ dtype, errors, sklearn

ALL = [RandomFourierFeatures(n_components=20, random_state=0),
       RandomFourierFeatures("matern", n_components=20, orthogonal=True, random_state=0),
       RandomFourierFeatures("laplace", n_components=20, structured=True, random_state=0),
       PositiveRandomFeatures(16, random_state=0),
       PositiveRandomFeatures(16, kernel="gaussian", kind="hyperbolic", random_state=0),
       ArcCosineFeatures(1, depth=2, n_components=16, random_state=0),
       NTKRandomFeatures(2, n_components=32, bias_std=0.5, random_state=0),
       Nystroem(n_components=10, random_state=0),
       Nystroem(n_components=10, sampling="rls", random_state=0),
       UniversalRandomFeatures(n_components=16, random_state=0),
       # a fixed bound: the checks' inputs (|x|² up to ~40) would otherwise ask for power series at R ≈ 40
       UniversalRandomFeatures("sin", n_components=16, bound=1.0, random_state=0)]


def _expected_failures(est):
    if isinstance(est, PositiveRandomFeatures) and est.kernel == "softmax":
        # the check fits data centred at 100: exp(xᵀz) ~ e^20000 is outside float64, and the map
        # rightly raises instead of returning zeros
        return {"check_fit_idempotent": "softmax kernel of inputs with |x| ~ 140 is out of float range"}
    return {}


@parametrize_with_checks(ALL, expected_failed_checks=_expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("est", ALL, ids=lambda e: type(e).__name__)
def test_float32_preserved_and_close_to_float64(est):
    X = 0.3 * np.random.default_rng(8).normal(size=(30, 5))
    F64 = est.fit(X).transform(X)
    F32 = est.fit(X.astype(np.float32)).transform(X.astype(np.float32))
    assert F32.dtype == np.float32 and F64.dtype == np.float64
    # same seed, same random draw: only float32 rounding of O(1) features differs
    np.testing.assert_allclose(F32, F64, rtol=0, atol=1e-4 * max(1.0, np.abs(F64).max()))


@pytest.mark.parametrize("make,match", [
    (lambda: RandomFourierFeatures(n_components=0), "n_components"),
    (lambda: RandomFourierFeatures(lengthscale=0.0), "lengthscale"),
    (lambda: RandomFourierFeatures(lengthscale=-1.0), "lengthscale"),
    (lambda: RandomFourierFeatures(lengthscale=[1.0, 2.0]), "lengthscale has 2 entries"),
    (lambda: RandomFourierFeatures(kernel="cosine"), "kernel"),
    (lambda: RandomFourierFeatures("matern", nu=-1.0), "nu"),
    (lambda: PositiveRandomFeatures(8, kernel="rbf"), "kernel"),
    (lambda: ArcCosineFeatures(3), "order"),
    (lambda: ArcCosineFeatures(1, depth=0), "depth"),
    (lambda: NTKRandomFeatures(0), "depth"),
    (lambda: NTKRandomFeatures(1, n_components=0), "n_components"),
    (lambda: NTKRandomFeatures(1, weight_std=0.0), "weight_std"),
    (lambda: Nystroem(sampling="leverage"), "sampling"),
    (lambda: Nystroem(sampling="rls", ridge=-1.0), "ridge"),
])
def test_bad_parameters(make, match):
    X = np.random.default_rng(9).normal(size=(12, 3))
    with pytest.raises(ValueError, match=match):
        make().fit(X)


@pytest.mark.parametrize("est", ALL, ids=lambda e: type(e).__name__)
def test_bad_data(est):
    X = np.random.default_rng(10).normal(size=(12, 3))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(bad)
    est.fit(X)
    with pytest.raises(ValueError, match="3 features"):
        est.transform(np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN|infinity"):
        est.transform(np.where(np.arange(3) == 0, np.inf, X[:1]))


# ------------------------------------------------------------------------ universal random features

def _act(name):
    from scipy.special import erf

    return {"exp": np.exp, "sin": np.sin, "cos": np.cos, "erf": erf,
            "gelu": lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2)))}[name]


@pytest.mark.parametrize("activation", ["exp", "sin", "cos", "erf", "gelu"])
def test_universal_features_unbiased(activation):
    rng = np.random.default_rng(11)
    X, W = 0.25 * rng.normal(size=(20, 4)), 0.25 * rng.normal(size=(6, 4))
    S = 400  # heavy-tailed products of projections: enough draws for a reliable variance estimate
    est = np.stack([(lambda u: u.transform(X) @ u.transform_weights(W).T)(
        UniversalRandomFeatures(activation, n_components=256, random_state=s).fit(X, weights=W)) for s in range(S)])
    target = _act(activation)(X @ W.T)
    # χ²-type aggregate: for an unbiased estimator Σ(mean − f)² ≈ Σ var/S (120 entries: < 2 is generous)
    ratio = np.sum((est.mean(0) - target) ** 2) / np.sum(est.var(0, ddof=1) / S)
    assert ratio < 2.0, ratio


def test_universal_relu_is_its_polynomial_plus_stated_bias():
    rng = np.random.default_rng(12)
    X, W = 0.2 * rng.normal(size=(20, 4)), 0.2 * rng.normal(size=(6, 4))
    Z = X @ W.T
    S = 200
    us = [UniversalRandomFeatures("relu", n_components=512, random_state=s).fit(X, weights=W) for s in range(S)]
    est = np.stack([u.transform(X) @ u.transform_weights(W).T for u in us])
    poly = np.polynomial.polynomial.polyval(Z, us[0].coef_)
    ratio = np.sum((est.mean(0) - poly) ** 2) / np.sum(est.var(0, ddof=1) / S)
    assert ratio < 2.0, ratio  # unbiased for the fitted polynomial ...
    assert np.abs(poly - np.maximum(Z, 0)).max() <= us[0].approximation_bias_ + 1e-12  # ... within the stated bias
    assert us[0].approximation_bias_ < 0.04 * us[0].bound_


def test_dense_layer_in_kernel_form():
    rng = np.random.default_rng(13)
    W, b, V = 0.3 * rng.normal(size=(16, 5)), 0.1 * rng.normal(size=16), rng.normal(size=(3, 16))
    X = 0.3 * rng.normal(size=(30, 5))
    layer = UniversalRandomFeatures.from_dense_layer(W, b, V, activation="exp", n_components=200_000, X=X,
                                                     random_state=0)
    exact = np.exp(X @ W.T + b) @ V.T
    assert np.linalg.norm(layer.predict(X) - exact) / np.linalg.norm(exact) < 0.02
    assert layer.M.shape == (200_000, 3)
    with pytest.raises(ValueError, match="representative inputs"):
        UniversalRandomFeatures.from_dense_layer(W, b, V)


def test_universal_bad_input():
    X = np.random.default_rng(14).normal(size=(5, 3))
    with pytest.raises(ValueError, match="activation"):
        UniversalRandomFeatures("swish").fit(X)
    with pytest.raises(ValueError, match="weights"):
        UniversalRandomFeatures().fit(X, weights=np.ones((2, 4)))
    u = UniversalRandomFeatures("sin", random_state=0).fit(X)
    with pytest.raises(ValueError, match="shape"):
        u.transform_weights(np.ones((2, 4)))
    with pytest.raises(ValueError, match="bound"):
        UniversalRandomFeatures(bound=-1.0).fit(X)
