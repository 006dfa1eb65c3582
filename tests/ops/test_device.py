"""The primitive with jax arrays: jax in → jax out on the arrays' device, equal to the numpy path.

Tolerances are the house table's "same maths, different summation order": rtol 1e-10 (float64),
1e-4 (float32) on whole results (relative Frobenius), since XLA forms the same inner products and
kernel transforms as the host engines in another order. x64 is enabled per test with
``jax.enable_x64`` (never globally).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from ntkit.kernels import RBF, Matern, ReluNTK  # noqa: E402
from ntkit.ops import KernelOperator, batched_gram, gram, iter_gram_blocks, kernel_matvec  # noqa: E402

CPU = jax.devices("cpu")[0]
RTOL = {np.float64: 1e-10, np.float32: 1e-4}
KERNELS = [RBF(1.3), Matern(0.8, nu=2.5), ReluNTK(depth=2)]


def _x64(dtype):
    return jax.enable_x64(True) if dtype == np.float64 else contextlib.nullcontext()


def _close(a, b, dtype):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.linalg.norm(a - b) <= RTOL[dtype] * max(np.linalg.norm(b), 1e-300)


def _is_on_cpu_jax(a, dtype):
    return isinstance(a, jax.Array) and a.devices() == {CPU} and a.dtype == dtype


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return rng.normal(size=(37, 5)), rng.normal(size=(23, 5)), rng.normal(size=(23, 3))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: type(k).__name__)
def test_gram_and_matvec_jax_in_jax_out(kernel, dtype, arrays):
    X, Z, V = (a.astype(dtype) for a in arrays)
    with _x64(dtype):
        Xj, Zj, Vj = (jax.device_put(a, CPU) for a in (X, Z, V))
        for out, ref in ((gram(kernel, Xj, Zj), gram(kernel, X, Z)),
                         (gram(kernel, Xj), gram(kernel, X)),
                         (kernel_matvec(kernel, Xj, Zj, Vj), kernel_matvec(kernel, X, Z, V)),
                         (kernel_matvec(kernel, Zj, None, Vj[:, 0]), kernel_matvec(kernel, Z, None, V[:, 0]))):
            assert _is_on_cpu_jax(out, dtype)
            _close(out, ref, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_operator_on_device(dtype, arrays):
    X, _, V = (a.astype(dtype) for a in arrays)
    V = np.random.default_rng(1).normal(size=(37, 3)).astype(dtype)
    with _x64(dtype):
        Xj, Vj = jax.device_put(X, CPU), jax.device_put(V, CPU)
        A, An = KernelOperator(RBF(1.3), Xj, ridge=0.5), KernelOperator(RBF(1.3), X, ridge=0.5)
        for out, ref in ((A.matvec(Vj[:, 0]), An.matvec(V[:, 0])), (A @ Vj, An @ V), (A.matmat(Vj), An.matmat(V)),
                         (A.rmatvec(Vj[:, 1]), An.rmatvec(V[:, 1])), (A.to_dense(), An.to_dense()),
                         (A.diagonal(), An.diagonal())):
            assert _is_on_cpu_jax(out, dtype)
            _close(out, ref, dtype)
        # numpy operands (scipy's solvers) still get numpy back
        out = A.matvec(V[:, 0])
        assert isinstance(out, np.ndarray)
        _close(out, An.matvec(V[:, 0]), dtype)
        with pytest.raises(ValueError, match="x must have 37 rows"):
            A.matvec(Vj[:5, 0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batched_gram_and_blocks_on_device(dtype):
    rng = np.random.default_rng(2)
    A, B = rng.normal(size=(3, 9, 4)).astype(dtype), rng.normal(size=(3, 7, 4)).astype(dtype)
    X = rng.normal(size=(30, 3)).astype(dtype)
    with _x64(dtype):
        Aj, Bj, Xj = (jax.device_put(a, CPU) for a in (A, B, X))
        for reduce in ("none", "sum"):
            out = batched_gram(Aj, Bj, reduce=reduce)
            assert _is_on_cpu_jax(out, dtype)
            _close(out, batched_gram(A, B, reduce=reduce), dtype)
        K = gram(RBF(1.0), X)
        seen = 0
        for rows, cols, blk in iter_gram_blocks(RBF(1.0), Xj, memory_budget=4096):
            assert _is_on_cpu_jax(blk, dtype)
            _close(blk, K[rows, cols], dtype)
            seen += blk.size
        assert seen == K.size


def test_matvec_rows_do_not_depend_on_other_rows():
    """A row's result is bit-identical whatever other rows X holds (row blocks of two fixed sizes, one
    for up to 128 rows and one above; Z anchors the preparation): scikit-learn's subset and
    sample-order invariance on the device path."""
    rng = np.random.default_rng(3)
    X, Z, v = rng.normal(size=(700, 4)), rng.normal(size=(300, 4)), rng.normal(size=300)

    def mv(A):
        return np.asarray(kernel_matvec(RBF(0.9), jnp.asarray(A), jnp.asarray(Z), jnp.asarray(v)))

    with jax.enable_x64(True):
        full = mv(X)
        perm = rng.permutation(700)
        np.testing.assert_array_equal(mv(X[perm[:300]]), full[perm[:300]])  # both above 128 rows
        small = mv(X[:100])
        np.testing.assert_array_equal(mv(X[50:100][::-1]), small[50:][::-1])  # both within 128 rows


def test_device_budget_plans_gram_blocks(monkeypatch, arrays):
    """jax inputs take their workspace budget from their device's allocator, not from host memory."""
    import ntkit.ops._gram as g

    seen = {}
    real = g.device_budget

    def spy(device, budget):
        seen["device"] = device
        return real(device, budget)

    monkeypatch.setattr(g, "device_budget", spy)
    X = jax.device_put(arrays[0].astype(np.float32), CPU)
    gram(RBF(1.0), X)
    assert seen["device"] == CPU
