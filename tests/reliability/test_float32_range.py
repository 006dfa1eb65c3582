"""float32 data far outside float32's comfortable range: stabilised, checked against float64.

The fast paths form squared norms (|x/ℓ|², and for dot-product kernels products of norms) on the
way to the kernel value; in float32 they overflow from |x/ℓ| ≈ 1e19 (NaN or wrong values before
this fix) and underflow below 1e-19. Such inputs are computed in float64 and the result is cast
back, so it is the float64 value rounded once to float32: relative error ≤ 2⁻²⁴ ≈ 6e-8 (1e-6
asserted, leaving room for the float64 reference's own ~1e-13). Values that are themselves beyond
float32's range raise instead of returning inf.
"""

from __future__ import annotations

import numpy as np
import pytest

from ntkit.kernels import RBF, ArcCosine, Laplace, Matern, Polynomial, ReluNNGP, ReluNTK
from ntkit.ops import gram, kernel_matvec
from ntkit.ops._gram import _setup

BACKENDS = ["numpy", "native", "jax"]


def _backend_ok(name):
    if name == "native":
        from ntkit.ops._backends import _native

        return _native.available()
    return True


CASES = [  # (kernel, data scale): every one of these gave NaN, inf or wrong values in float32 before
    (RBF(1.0), 1e20), (Laplace(1e-10), 1e25), (Matern(1e-25, nu=1.5), 1.0), (RBF(1e-30), 1e-12),
    (ReluNTK(depth=3), 1e-17), (ReluNNGP(depth=2, bias_std=0.1), 1e-22), (ArcCosine(order=1), 1e-18), (ArcCosine(order=1), 1e15),
    (ReluNTK(depth=2), 1e18),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel,scale", CASES, ids=[f"{k!r}@{s:g}" for k, s in CASES])
def test_extreme_float32_inputs_match_float64(kernel, scale, backend):
    if not _backend_ok(backend) or (backend == "native" and kernel._native_spec(kernel._validated()) is None):
        pytest.skip("backend not available for this kernel")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(23, 5)) * scale
    Z = rng.normal(size=(17, 5)) * scale
    v = rng.normal(size=(17, 2))
    X32, Z32, v32 = (a.astype(np.float32) for a in (X, Z, v))
    # the reference: float64 arithmetic on the float32-rounded data
    ref = np.asarray(gram(kernel, X32.astype(np.float64), Z32.astype(np.float64), backend="numpy"))
    K = gram(kernel, X32, Z32, backend=backend)
    K = np.asarray(K)
    assert K.dtype == np.float32
    # plus the spacing of float32's subnormals for values below its normal range (1.2e-38)
    sub = 2 * float(np.finfo(np.float32).smallest_subnormal)
    np.testing.assert_allclose(K, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max() + sub)
    mv = np.asarray(kernel_matvec(kernel, X32, Z32, v32, backend=backend))
    ref_mv = ref @ v32.astype(np.float64)
    assert mv.dtype == np.float32
    # the product is formed in float64 too; the v entries are float32 already: the same bound
    np.testing.assert_allclose(mv, ref_mv, rtol=1e-6, atol=1e-6 * np.abs(ref_mv).max() + 8 * sub)


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_beyond_float32_raise(backend):
    if not _backend_ok(backend):
        pytest.skip("native extension not built")
    X = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32) * np.float32(1e30)
    for k in (Polynomial(degree=3), ArcCosine(order=2), ReluNTK(depth=2)):
        with pytest.raises(ValueError, match="beyond float32's range"):
            gram(k, X, backend=backend)
        np.testing.assert_array_equal(np.isfinite(np.asarray(gram(k, X.astype(np.float64), backend=backend))),
                                      True)


def test_ordinary_float32_data_stay_in_float32_arithmetic():
    X = np.random.default_rng(2).normal(size=(10, 784)).astype(np.float32) * 255
    for k in (RBF(10.0), ReluNTK(depth=2), Polynomial(degree=2)):
        prob, _ = _setup(k, X, None, "numpy")
        assert prob.compute is None and prob.X.dtype == np.float32
    prob, _ = _setup(RBF(1.0), X * np.float32(1e12), None, "numpy")
    assert prob.compute == np.float64 and prob.dtype == np.float32
