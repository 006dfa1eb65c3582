"""ntkit.theory.estimate_spectrum on jax devices: jax in → jax out on the data's device, equal to
the host path.

Tolerances. Both paths form the kernel blocks in X's dtype and do everything after in float64;
they differ in summation order (jax's matmul and eigensolver vs BLAS/LAPACK) and, for float32 data,
in the float32 rounding of the kernel entries (jax's block formula vs the native/numpy one):

* eigenvalues, relative to the largest: float64 1e-10 (the table's "same maths, different
  summation order"; Weyl: |Δλ| ≤ ‖ΔK‖₂ ≈ n·eps·λ_max); float32 1e-4 (‖ΔK‖₂ ≤ n · 1e-7
  at n = 120);
* target coefficients |c_i| of the leading, well-separated modes (an eigenvector is determined up
  to sign, and up to rotation inside clusters of near-equal eigenvalues — the tail of an RBF
  spectrum — so only the leading ten are compared, by magnitude): Davis–Kahan gives
  |Δu| ≲ ‖ΔK‖ / gap with gaps ≥ 1e-3 λ_max there, so the float64 bound becomes 1e-8 and the float32
  one 1e-2 · max|c|;
* Nyström adds a Cholesky factor and two triangular solves of the m × m landmark matrix, whose
  condition number (≤ 1e6 with the 1e-10 jitter and these landmarks) multiplies the rounding:
  float64 1e-8, float32 1e-2.
"""

from __future__ import annotations

import numpy as np
import pytest

import ntkit
from ntkit._validation import InvalidParameterError
from ntkit.kernels import RBF, ReluNTK
from ntkit.theory import estimate_spectrum

jax = pytest.importorskip("jax")
jnp = jax.numpy

TOL = {("dense", np.float64): (1e-10, 1e-8), ("dense", np.float32): (1e-4, 1e-2),
       ("nystrom", np.float64): (1e-8, 1e-8), ("nystrom", np.float32): (1e-2, 1e-2)}


def _data(dtype, n=120):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    y = np.stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]], axis=1) + 0.1 * rng.normal(size=(n, 2))
    return X.astype(dtype), y.astype(dtype)


def _compare(dev, host, method, dtype):
    r_lam, r_c = TOL[(method, np.dtype(dtype).type)]
    lam, c = np.asarray(dev.eigenvalues, np.float64), np.asarray(dev.target_coeffs, np.float64)
    assert lam.shape == host.eigenvalues.shape and c.shape == host.target_coeffs.shape
    np.testing.assert_allclose(lam, host.eigenvalues, rtol=0, atol=r_lam * host.eigenvalues[0])
    top = np.abs(host.target_coeffs[:10])
    np.testing.assert_allclose(np.abs(c[:10]), top, rtol=0, atol=r_c * top.max())
    assert dev.n_samples == host.n_samples and dev.method == host.method
    assert abs(dev.residual_power - host.residual_power) <= r_c * max(1.0, host.residual_power)


CASES = [(RBF(1.5), "dense", {}), (RBF(1.5), "dense", {"n_components": 15}),
         (RBF(1.5), "nystrom", {"n_components": 40}), (ReluNTK(2), "dense", {})]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,method,kw", CASES,
                         ids=["rbf-dense", "rbf-dense-top15", "rbf-nystrom", "relu_ntk-dense"])
def test_jax_in_jax_out_equals_host(kernel, method, kw, dtype):
    X, y = _data(dtype)
    yv = y[:, 0]  # a single target: 1-D coefficients
    host = estimate_spectrum(kernel, X, yv, method=method, random_state=3, **kw)
    with jax.enable_x64(np.dtype(dtype) == np.float64):
        Xj, yj = jnp.asarray(X), jnp.asarray(yv)
        dev = estimate_spectrum(kernel, Xj, yj, method=method, random_state=3, **kw)
        assert isinstance(dev.eigenvalues, jax.Array) and isinstance(dev.target_coeffs, jax.Array)
        assert dev.eigenvalues.dtype == dtype and dev.target_coeffs.dtype == dtype
        assert dev.eigenvalues.devices() == Xj.devices()
    _compare(dev, host, method, dtype)


def test_several_targets_precomputed_and_callables():
    X, y = _data(np.float64)
    with jax.enable_x64(True):
        Xj, yj = jnp.asarray(X), jnp.asarray(y)
        dev = estimate_spectrum(RBF(1.5), Xj, yj)
        assert dev.target_coeffs.shape == (len(X), 2)
        _compare(dev, estimate_spectrum(RBF(1.5), X, y), "dense", np.float64)
        K = RBF(1.5)(X)
        pre = estimate_spectrum("precomputed", jnp.asarray(K), yj)
        _compare(pre, estimate_spectrum("precomputed", K, y), "dense", np.float64)
        call = estimate_spectrum(lambda A, B: RBF(1.5)(A, B), Xj, yj, method="nystrom", n_components=30,
                                 random_state=0)
        _compare(call, estimate_spectrum(RBF(1.5), X, y, method="nystrom", n_components=30, random_state=0),
                 "nystrom", np.float64)


def test_config_device_numpy_in_numpy_out():
    X, y = _data(np.float64)
    with ntkit.config_context(device="cpu"):
        dev = estimate_spectrum(RBF(1.5), X, y[:, 1])
    assert type(dev.eigenvalues) is np.ndarray and dev.eigenvalues.dtype == np.float64
    _compare(dev, estimate_spectrum(RBF(1.5), X, y[:, 1]), "dense", np.float64)


def test_device_errors():
    X, y = _data(np.float32)
    Xj = jnp.asarray(X)
    with pytest.raises(InvalidParameterError, match="y contains NaN"):
        estimate_spectrum(RBF(1.0), Xj, jnp.full(len(X), jnp.nan))
    with pytest.raises(InvalidParameterError, match="X contains NaN"):
        estimate_spectrum(RBF(1.0), Xj.at[0, 0].set(jnp.inf), jnp.asarray(y[:, 0]))
    with pytest.raises(InvalidParameterError, match="y must have shape"):
        estimate_spectrum(RBF(1.0), Xj, jnp.asarray(y[:5, 0]))
    with pytest.raises(InvalidParameterError, match="needs a kernel"):
        estimate_spectrum("precomputed", jnp.asarray(RBF(1.0)(X)), jnp.asarray(y[:, 0]), method="nystrom")
