"""Every kernel against its oracle, on every backend, in both dtypes."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
from sklearn.base import clone

from ntkit import InvalidParameterError
from ntkit.kernels import RBF, ArcCosine, Laplace, Linear, Matern, Polynomial, ReluNNGP, ReluNTK
from tests._reference import arccos, oracle_gram
from tests.conftest import BACKENDS, assert_close, native_available

GOLDEN = pathlib.Path(__file__).parents[1] / "golden" / "relu_kernels_nt.npz"

KERNELS = [
    RBF(1.3),
    RBF(np.array([0.7, 1.1, 1.9, 2.5, 1.0, 3.0, 0.9, 1.4])),
    Laplace(2.1),
    Matern(1.7, nu=0.5),
    Matern(1.7, nu=1.5),
    Matern(1.7, nu=2.5),
    Linear(),
    Polynomial(degree=3, gamma=0.5, coef0=1.0),
    ArcCosine(0),
    ArcCosine(1),
    ArcCosine(2),
    ReluNNGP(depth=0),
    ReluNNGP(depth=3, weight_std=1.5, bias_std=0.2),
    ReluNTK(depth=1),
    ReluNTK(depth=4, weight_std=1.3, bias_std=0.1),
]
IDS = [repr(k) if not isinstance(k.get_params().get("lengthscale"), np.ndarray) else "RBF(ard)" for k in KERNELS]
SHAPES = [(1, 1, 8), (7, 5, 8), (33, 17, 8), (130, 65, 8)]


def _data(rng, n, m, d, dtype, kernel):
    X = rng.normal(size=(n, d))
    Z = rng.normal(size=(m, d)) + 0.25
    if not isinstance(kernel, (ArcCosine, ReluNNGP, ReluNTK)):
        X += 3.0  # far from the origin: exercises the centring of stationary kernels
        Z += 3.0
    X, Z = X / math.sqrt(d) * 2, Z / math.sqrt(d) * 2
    return X.astype(dtype), Z.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
def test_gram_matches_oracle(kernel, dtype, rng):
    """Rectangular and symmetric Gram matrices, odd sizes, every backend (oracle computed once)."""
    backends = ["numpy", "jax"] + (["native"] if native_available() else [])
    for n, m, d in SHAPES:
        X, Z = _data(rng, n, m, d, dtype, kernel)
        ref_xz = oracle_gram(kernel, X.astype(np.float64), Z.astype(np.float64))
        ref_xx = oracle_gram(kernel, X.astype(np.float64))
        for backend in backends:
            K = kernel(X, Z, backend=backend)
            assert K.shape == (n, m) and K.dtype == dtype, backend
            assert_close(K, ref_xz, dtype)
            S = kernel(X, backend=backend)
            assert_close(S, ref_xx, dtype)
            np.testing.assert_array_equal(S, S.T)  # exactly symmetric
        assert_close(kernel.diag(X), np.diag(ref_xx), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
def test_gram_psd(kernel, dtype, rng):
    X, _ = _data(rng, 40, 1, 8, dtype, kernel)
    K = kernel(X).astype(np.float64)
    w = np.linalg.eigvalsh(K)
    # Rounding perturbs eigenvalues by at most |K|_2 * n * eps (Weyl): the bound we allow.
    eps = np.finfo(dtype).eps
    assert w.min() >= -40 * eps * max(1.0, w.max()) * 10


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("Kernel", [ReluNNGP, ReluNTK])
def test_relu_kernels_match_neural_tangents(Kernel, backend):
    """Golden values from neural-tangents 0.6.5 (tests/golden/make_golden_kernels.py)."""
    g = np.load(GOLDEN)
    name = "nngp" if Kernel is ReluNNGP else "ntk"
    configs = g["configs"]
    if backend == "jax":
        # The same Python formulas as numpy's (one compilation per configuration and shape, ~0.7 s each):
        # with and without bias, depths 1 and 5, both weight scales.
        configs = configs[[5, 6, 17, 18]]
    for depth, w, b in configs:
        tag = f"d{int(depth)}_w{w}_b{b}"
        k = Kernel(depth=int(depth), weight_std=w, bias_std=b)
        # Both sides evaluate the same closed form in float64: only rounding differs.
        np.testing.assert_allclose(k(g["x1"], g["x2"], backend=backend), g[f"{name}_12_{tag}"], rtol=1e-10, atol=0)
        np.testing.assert_allclose(k(g["x1"], backend=backend), g[f"{name}_11_{tag}"], rtol=1e-10, atol=0)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_arccos_is_the_relu_expectation_monte_carlo(order):
    """k_n(x, z) = 2 E[H(w.x) H(w.z) (w.x)^n (w.z)^n], w ~ N(0, I), by brute-force sampling."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3, 4))
    W = rng.normal(size=(400_000, 4))
    P = W @ X.T
    F = np.where(P > 0, P**order, 0.0)
    samples = 2 * F[:, :, None] * F[:, None, :]
    est = samples.mean(axis=0)
    se = samples.std(axis=0) / math.sqrt(W.shape[0])
    exact = ArcCosine(order)(X)
    # 5 standard errors: a false failure has probability < 1e-5 per entry.
    assert np.all(np.abs(est - exact) <= 5 * se + 1e-12)
    np.testing.assert_allclose(exact, arccos(X, X, order), rtol=1e-12)


def test_against_scikit_learn(rng):
    from sklearn.gaussian_process.kernels import Matern as SkMatern
    from sklearn.metrics.pairwise import polynomial_kernel, rbf_kernel

    X, Z = rng.normal(size=(20, 5)), rng.normal(size=(9, 5))
    np.testing.assert_allclose(RBF(0.8)(X, Z), rbf_kernel(X, Z, gamma=1 / (2 * 0.8**2)), rtol=1e-10)
    for nu in (0.5, 1.5, 2.5):
        np.testing.assert_allclose(Matern(1.3, nu=nu)(X, Z), SkMatern(1.3, nu=nu)(X, Z), rtol=1e-10)
    np.testing.assert_allclose(
        Polynomial(3, 0.2, 0.5)(X, Z), polynomial_kernel(X, Z, degree=3, gamma=0.2, coef0=0.5), rtol=1e-10
    )


def test_translation_invariance_of_stationary_kernels(rng):
    X, Z = rng.normal(size=(15, 3)), rng.normal(size=(6, 3))
    shift = np.array([1e3, -2e3, 5e2])
    for k in (RBF(1.0), Laplace(1.0), Matern(1.0, nu=2.5)):
        np.testing.assert_allclose(k(X + shift, Z + shift), k(X, Z), rtol=1e-10, atol=1e-12)


def test_params_clone_and_set_params():
    k = ReluNTK(depth=3, bias_std=0.1)
    assert k.get_params() == {"depth": 3, "bias_std": 0.1, "weight_std": 1.0}
    k2 = clone(k).set_params(depth=1)
    assert k2.depth == 1 and k.depth == 3
    assert repr(RBF(2.0)) == "RBF(lengthscale=2.0)"


@pytest.mark.parametrize(
    "kernel, match",
    [
        (RBF(0.0), "'lengthscale' parameter of RBF must be a finite real number in the range \\(0.0, inf\\]"),
        (RBF(-1.0), "lengthscale"),
        (RBF(float("nan")), "lengthscale"),
        (RBF("a"), "lengthscale"),
        (RBF(np.array([1.0, -1.0])), "lengthscale"),
        (Laplace(0), "lengthscale"),
        (Matern(1.0, nu=0.7), "'nu' parameter of Matern"),
        (Polynomial(degree=0), "'degree' parameter of Polynomial must be an int"),
        (Polynomial(degree=2.5), "degree"),
        (Polynomial(gamma=float("inf")), "gamma"),
        (ArcCosine(order=3), "'order' parameter of ArcCosine"),
        (ReluNTK(depth=-1), "'depth' parameter of ReluNTK"),
        (ReluNTK(weight_std=0.0), "weight_std"),
        (ReluNNGP(bias_std=-0.1), "bias_std"),
    ],
)
def test_invalid_hyperparameters(kernel, match):
    with pytest.raises(InvalidParameterError, match=match):
        kernel(np.ones((2, 2)))


def test_ard_lengthscale_must_match_features():
    with pytest.raises(ValueError, match="lengthscale has 3 entries but X has 2 features"):
        RBF(np.ones(3))(np.ones((4, 2)))


def test_ard_equals_rescaled_data(rng):
    X = rng.normal(size=(10, 3))
    ls = np.array([0.5, 2.0, 1.5])
    np.testing.assert_allclose(RBF(ls)(X), RBF(1.0)(X / ls), rtol=1e-12)


def test_jax_in_jax_out(rng):
    import jax
    import jax.numpy as jnp

    X = jnp.asarray(rng.normal(size=(6, 3)), dtype=jnp.float32)
    K = RBF(1.0)(X)
    assert isinstance(K, jax.Array) and K.dtype == jnp.float32
    assert_close(K, oracle_gram(RBF(1.0), np.asarray(X, np.float64)), np.float32)
    d = ReluNTK().diag(X)
    assert isinstance(d, jax.Array)


def test_kernel_functions_are_jax_differentiable(rng):
    """The formulas are plain jnp code: gradients w.r.t. inputs work and match finite differences."""
    import jax
    import jax.numpy as jnp

    from ntkit.ops import gram

    X = rng.normal(size=(4, 3))
    Z = rng.normal(size=(3, 3))
    with jax.enable_x64(True):
        f = lambda x: jnp.sum(gram(RBF(1.2), x, jnp.asarray(Z)))  # noqa: E731
        g = np.asarray(jax.grad(f)(jnp.asarray(X)))
        h = 1e-6
        E = np.zeros_like(X)
        E[1, 2] = h
        fd = (float(f(jnp.asarray(X + E))) - float(f(jnp.asarray(X - E)))) / (2 * h)
    np.testing.assert_allclose(g[1, 2], fd, rtol=1e-6)
