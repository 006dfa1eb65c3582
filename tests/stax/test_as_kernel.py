"""A stax network's kernel as an ntkit Kernel (ntkit.ops, estimators) and block-wise evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from ntkit import config_context, stax
from ntkit.ops import KernelOperator, gram, kernel_matvec

RNG = np.random.default_rng(2)
X = RNG.normal(size=(40, 5))
Z = RNG.normal(size=(9, 5))
NET = stax.serial(stax.Dense(64, W_std=1.3, b_std=0.2), stax.Erf(), stax.Dense(64, W_std=1.3, b_std=0.2),
                  stax.Relu(), stax.Dense(1, W_std=1.3, b_std=0.2))


@pytest.mark.parametrize("backend, get", [("numpy", "ntk"), ("jax", "nngp")])
def test_as_kernel_through_the_primitive(backend, get):
    k = stax.as_kernel(NET, get=get)
    ref_xx = np.asarray(NET[2](X, None, get))
    ref_xz = np.asarray(NET[2](X, Z, get))
    np.testing.assert_allclose(gram(k, X, backend=backend), ref_xx, rtol=1e-12)
    np.testing.assert_allclose(gram(k, X, Z, backend=backend, memory_budget=4096), ref_xz, rtol=1e-12)
    v = RNG.normal(size=(9, 2))
    np.testing.assert_allclose(kernel_matvec(k, X, Z, v, backend=backend, memory_budget=4096), ref_xz @ v,
                               rtol=1e-11)
    np.testing.assert_allclose(k.diag(X), np.diag(ref_xx), rtol=1e-13)
    u = RNG.normal(size=40)
    np.testing.assert_allclose(KernelOperator(k, X, ridge=0.5).matvec(u), ref_xx @ u + 0.5 * u, rtol=1e-11)


def test_as_kernel_float32_and_estimator():
    from sklearn.base import clone

    from ntkit.estimators import NTKRegressor

    k = stax.as_kernel(NET)
    K32 = gram(k, X.astype(np.float32))
    assert K32.dtype == np.float32
    np.testing.assert_allclose(K32, NET[2](X, None, "ntk"), rtol=1e-4)
    y = np.sin(X[:, 0])
    model = NTKRegressor(kernel=k, ridge=1e-3).fit(X, y)
    ref = NTKRegressor(kernel=clone(k), ridge=1e-3, solver="cholesky").fit(X, y)
    np.testing.assert_allclose(model.predict(Z), ref.predict(Z), rtol=1e-6, atol=1e-8)


def test_as_kernel_rejects_image_networks():
    _, _, cnn = stax.serial(stax.Conv(4, (2, 2)), stax.Relu(), stax.Conv(4, (2, 2)))
    with pytest.raises(ValueError, match="as_kernel needs"):
        gram(stax.as_kernel(cnn), X)


CNN = stax.serial(stax.Conv(8, (2, 2), padding="SAME", W_std=1.3, b_std=0.1), stax.Relu(), stax.AvgPool((2, 2)),
                  stax.Conv(8, (2, 2), padding="SAME"), stax.Erf(), stax.GlobalAvgPool(), stax.Dense(1))
IMGS = RNG.normal(size=(7, 3, 3, 2))


@pytest.mark.parametrize("backend, get", [("numpy", "ntk"), ("jax", "nngp")])
def test_as_kernel_of_images_through_the_primitive(backend, get):
    """input_shape: rows are flattened images; blocks (sized by the pixel pairs), the diagonal and
    products equal the network's kernel_fn on the images (float64: the same arithmetic, reordered)."""
    import jax.numpy as jnp

    k = stax.as_kernel(CNN, get=get, input_shape=(3, 3, 2))
    ref = np.asarray(CNN[2](IMGS, None, get))
    ref_xz = np.asarray(CNN[2](IMGS, IMGS[:3], get))
    Xf = IMGS.reshape(7, -1)
    Xb = Xf if backend == "numpy" else jnp.asarray(Xf)
    # 12 copies of (3 * 3)^2 pixel pairs x 8 bytes per pair of images: 20 kB holds 2 x 2 images per block
    assert k._workspace_copies(k._validated()) == 12 * 81
    np.testing.assert_allclose(np.asarray(gram(k, Xb, backend=backend, memory_budget=20_000)), ref, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(gram(k, Xb, Xb[:3], backend=backend, memory_budget=20_000)), ref_xz,
                               rtol=1e-12)
    np.testing.assert_allclose(np.asarray(k.diag(Xb)), np.diag(ref), rtol=1e-13)
    with config_context(memory_budget=20_000):  # the diagonal in chunks of rows (2 images at a time)
        np.testing.assert_allclose(np.asarray(k.diag(Xb)), np.diag(ref), rtol=1e-13)
    v = RNG.normal(size=(7, 2))
    np.testing.assert_allclose(np.asarray(kernel_matvec(k, Xb, None, v, backend=backend, memory_budget=20_000)),
                               ref @ v, rtol=1e-11)
    with pytest.raises(ValueError, match="reads rows of 18 features"):
        gram(k, Xf[:, :10])


def test_as_kernel_of_images_in_an_estimator():
    from ntkit.estimators import NTKRegressor

    k = stax.as_kernel(CNN, input_shape=(3, 3, 2))
    y = RNG.normal(size=7)
    # (a Cholesky solve against numpy's LU on K + 1e-2 I, condition number < 1e3: agreement to ~1e-13)
    model = NTKRegressor(kernel=k, ridge=1e-2, normalize_y=False).fit(IMGS.reshape(7, -1), y)
    ref = np.asarray(CNN[2](IMGS, None, "ntk"))
    np.testing.assert_allclose(model.predict(IMGS.reshape(7, -1)), ref @ np.linalg.solve(ref + 1e-2 * np.eye(7), y),
                               rtol=1e-9, atol=1e-12)
    for bad in ((3, 3), (3, -3, 2), "3x3"):
        with pytest.raises(ValueError, match="input_shape"):
            gram(stax.as_kernel(CNN, input_shape=bad), IMGS.reshape(7, -1))


def test_batch_matches_direct():
    _, _, mlp = NET
    batched = stax.batch(mlp, batch_size=5)
    np.testing.assert_allclose(batched(X[:10], None, "ntk"), mlp(X[:10], None, "ntk"), rtol=1e-13)
    both = batched(X[:10], X[10:19], ("nngp", "ntk"))
    np.testing.assert_allclose(both.nngp, mlp(X[:10], X[10:19], "nngp"), rtol=1e-13)
    imgs = RNG.normal(size=(4, 3, 3, 2))
    _, _, cnn = stax.serial(stax.Conv(4, (2, 2), padding="SAME", b_std=0.1), stax.Relu(), stax.GlobalAvgPool(),
                            stax.Dense(1))
    # 40 kB for 12 float64 temporaries of (3 * 3)^2 per pair of images: blocks of 2 x 2 images
    auto = stax.batch(cnn, memory_budget=40_000)(imgs, None, "ntk")
    np.testing.assert_allclose(auto, cnn(imgs, None, "ntk"), rtol=1e-12)
    # x2 = None computes the upper blocks and mirrors them (a readout: no spatial axes); a result with
    # spatial axes (no readout) computes every block: both equal the direct kernel
    np.testing.assert_array_equal(auto[2:, :2], auto[:2, 2:].T)
    both = stax.batch(cnn, 2)(imgs, None, ("nngp", "ntk"))
    np.testing.assert_allclose(both.nngp, cnn(imgs, None, "nngp"), rtol=1e-12)
    np.testing.assert_allclose(both.ntk, auto, rtol=1e-12)
    _, _, conv = stax.serial(stax.Conv(3, (2, 2), padding="SAME"), stax.Relu())
    np.testing.assert_allclose(stax.batch(conv, 2)(imgs, None, "nngp"), conv(imgs, None, "nngp"), rtol=1e-12)
    with pytest.raises(ValueError, match="get"):
        stax.batch(mlp)(X, None, "cov1")
