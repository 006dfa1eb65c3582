"""The primitive: gram / kernel_matvec / iter_gram_blocks / KernelOperator / batched_gram."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import LinearOperator, cg

import ntkit
from ntkit import InvalidParameterError
from ntkit.kernels import RBF, ArcCosine, Laplace, Matern, Polynomial, ReluNTK
from ntkit.ops import KernelOperator, batched_gram, gram, iter_gram_blocks, kernel_matvec, plan_blocks
from ntkit.ops._blocks import WORKSPACE_COPIES
from tests import _reference as ref
from tests.conftest import BACKENDS, assert_close, native_available

MV_KERNELS = [RBF(1.1), Laplace(1.7), Matern(1.4, nu=2.5), Polynomial(2, 0.3, 1.0), ArcCosine(1), ReluNTK(3, 0.2, 1.2)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", MV_KERNELS, ids=repr)
def test_kernel_matvec_matches_dense_oracle(kernel, dtype, backend, rng):
    for n, m, d, t in [(1, 1, 1, 1), (9, 13, 3, 1), (70, 45, 5, 3)]:
        X = rng.normal(size=(n, d)).astype(dtype)
        Z = rng.normal(size=(m, d)).astype(dtype)
        K = ref.oracle_gram(kernel, X.astype(np.float64), Z.astype(np.float64))
        # Cauchy-Schwarz for PSD kernels, |k(x, z)| <= sqrt(k(x, x) k(z, z)): the natural size of
        # each entry, and the scale of its rounding error (even where k(x, z) itself is ~0).
        kx = np.diag(ref.oracle_gram(kernel, X.astype(np.float64)))
        kz = np.diag(ref.oracle_gram(kernel, Z.astype(np.float64)))
        bound = np.sqrt(np.outer(kx, kz))
        for v in (rng.normal(size=m).astype(dtype), rng.normal(size=(m, t)).astype(dtype)):
            # A budget of a few KiB forces many small blocks: the result may not depend on blocking.
            for budget in (None, 4096):
                out = kernel_matvec(kernel, X, Z, v, backend=backend, memory_budget=budget)
                assert out.shape == (n,) + v.shape[1:] and out.dtype == dtype
                expect = K @ v.astype(np.float64)
                # Sum of m terms, each off by ~eps * bound_ij |v_j|: scale the tolerance by that sum.
                scale = float(np.max(bound @ np.abs(v.astype(np.float64)).reshape(m, -1)))
                np.testing.assert_allclose(
                    np.asarray(out, np.float64), expect,
                    rtol=0, atol=(1e-10 if dtype == np.float64 else 1e-4) * max(scale, 1e-300),
                )


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_matvec_z_none_is_symmetric_product(backend, rng):
    X = rng.normal(size=(20, 4))
    v = rng.normal(size=(20, 2))
    np.testing.assert_allclose(kernel_matvec(RBF(), X, None, v, backend=backend), ref.rbf(X, X) @ v, rtol=1e-10)


@pytest.mark.skipif(not native_available(), reason="ntkit_native not built")
@pytest.mark.parametrize("kernel", MV_KERNELS + [Matern(0.9, nu=0.5), Matern(0.9, nu=1.5)], ids=repr)
def test_native_equals_numpy_to_1e12(kernel, rng):
    """Same formulas, different summation order: float64 agreement to 1e-12 relative."""
    X = rng.normal(size=(61, 7))
    Z = rng.normal(size=(37, 7))
    v = rng.normal(size=(37, 2))
    for a, b in [
        (gram(kernel, X, Z, backend="native"), gram(kernel, X, Z, backend="numpy")),
        (gram(kernel, X, backend="native"), gram(kernel, X, backend="numpy")),
    ]:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    a = kernel_matvec(kernel, X, Z, v, backend="native")
    b = kernel_matvec(kernel, X, Z, v, backend="numpy")
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_block_size_independence(backend, rng):
    X = rng.normal(size=(57, 6))
    Z = rng.normal(size=(31, 6))
    k = Matern(1.2, nu=1.5)
    big = gram(k, X, Z, backend=backend)
    small = gram(k, X, Z, backend=backend, memory_budget=2000)
    np.testing.assert_allclose(small, big, rtol=1e-13, atol=1e-15)
    sym_small = gram(k, X, backend=backend, memory_budget=2000)
    np.testing.assert_allclose(sym_small, gram(k, X, backend=backend), rtol=1e-13, atol=1e-15)


def test_iter_gram_blocks_tiles_the_matrix(rng):
    X = rng.normal(size=(23, 3))
    Z = rng.normal(size=(19, 3))
    K = np.full((23, 19), np.nan)
    count = 0
    for rows, cols, blk in iter_gram_blocks(RBF(), X, Z, memory_budget=3000):
        assert np.all(np.isnan(K[rows, cols]))  # each entry exactly once
        K[rows, cols] = blk
        count += 1
    assert count > 1
    np.testing.assert_allclose(K, ref.rbf(X, Z), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n, m", [(0, 5), (5, 0), (0, 0)])
def test_empty_inputs(backend, n, m):
    X = np.zeros((n, 3))
    Z = np.zeros((m, 3))
    assert gram(RBF(), X, Z, backend=backend).shape == (n, m)
    out = kernel_matvec(RBF(), X, Z, np.zeros((m, 2)), backend=backend)
    assert out.shape == (n, 2) and np.all(np.asarray(out) == 0)
    assert gram(RBF(), X, backend=backend).shape == (n, n)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_features(backend):
    X, Z = np.zeros((3, 0)), np.zeros((2, 0))
    np.testing.assert_array_equal(gram(RBF(), X, Z, backend=backend), np.ones((3, 2)))
    np.testing.assert_array_equal(gram(Polynomial(2, 1.0, 1.0), X, Z, backend=backend), np.ones((3, 2)))


def test_mixed_dtypes_promote_to_float64(rng):
    X = rng.normal(size=(4, 2)).astype(np.float32)
    Z = rng.normal(size=(3, 2))
    assert gram(RBF(), X, Z).dtype == np.float64
    assert kernel_matvec(RBF(), X, X, np.ones(4, np.float32)).dtype == np.float32


def test_non_contiguous_inputs_are_accepted(rng):
    X = np.asfortranarray(rng.normal(size=(10, 4)))
    Zs = rng.normal(size=(12, 8))[:, ::2]
    np.testing.assert_allclose(gram(RBF(), X, Zs), ref.rbf(X, Zs), rtol=1e-12)


# ----------------------------------------------------------------------------- bad input

BAD = [
    (lambda: gram(RBF(), np.array([[np.nan, 1.0]])), ValueError, "X contains NaN or infinity"),
    (lambda: gram(RBF(), np.ones((2, 2)), np.array([[np.inf, 1.0]])), ValueError, "Z contains NaN or infinity"),
    (lambda: gram(RBF(), np.ones((2, 3)), np.ones((2, 2))), ValueError, "X has 3 features but Z has 2"),
    (lambda: gram(RBF(), np.ones((2, 2), dtype=np.int64)), TypeError, "X must have dtype float32 or float64; got int64"),
    (lambda: gram(RBF(), np.ones((2, 2), dtype=object)), TypeError, "X must have dtype float32 or float64; got object"),
    (lambda: gram(RBF(), np.ones((2, 2), dtype=np.float16)), TypeError, "float16"),
    (lambda: gram(RBF(), np.ones((2, 2), dtype=complex)), TypeError, "complex128"),
    (lambda: gram(RBF(), np.ones(3)), ValueError, r"X must be a 2-D array; got shape \(3,\)"),
    (lambda: gram(RBF(), "abc"), TypeError, "X must be a numpy or jax array"),
    (lambda: gram(lambda a, b: a, np.ones((2, 2))), TypeError, "kernel must be an ntkit.kernels.Kernel"),
    (lambda: gram(RBF(), np.ones((2, 2)), backend="cuda"), InvalidParameterError, "'backend' parameter"),
    (lambda: kernel_matvec(RBF(), np.ones((2, 2)), np.ones((3, 2)), np.ones(4)), ValueError,
     r"v must have 3 rows to match Z"),
    (lambda: kernel_matvec(RBF(), np.ones((2, 2)), np.ones((3, 2)), np.ones((3, 1, 1))), ValueError,
     "v must be a 1-D or 2-D array"),
    (lambda: kernel_matvec(RBF(), np.ones((2, 2)), np.ones((3, 2)), np.array([1.0, np.nan, 0])), ValueError,
     "v contains NaN"),
    (lambda: kernel_matvec(RBF(), np.ones((2, 2)), None, np.ones(2, dtype=int)), TypeError, "v must have dtype"),
    (lambda: gram(RBF(), np.ones((2, 2)), memory_budget="lots"), InvalidParameterError, "memory_budget"),
    (lambda: gram(RBF(), np.ones((2, 2)), memory_budget=-5), InvalidParameterError, "memory_budget must be positive"),
    (lambda: plan_blocks(10, 10, n_features=1000, memory_budget=100), ValueError, "raise memory_budget"),
    (lambda: batched_gram(np.ones((2, 3, 4)), np.ones((3, 3, 4))), ValueError, "same batch size"),
    (lambda: batched_gram(np.ones((2, 3, 4)), np.ones((2, 3, 5))), ValueError, "same last dimension"),
    (lambda: batched_gram(np.ones((3, 4))), ValueError, "A must be a 3-D array"),
    (lambda: batched_gram(np.ones((2, 3, 4)), reduce="mean"), InvalidParameterError, "'reduce' parameter"),
    (lambda: KernelOperator(RBF(), np.ones((3, 2)), np.ones((4, 2)), ridge=1.0), ValueError, "square operator"),
    (lambda: KernelOperator(RBF(), np.ones((3, 2)), ridge=-1.0), InvalidParameterError, "'ridge' parameter"),
]


@pytest.mark.parametrize("call, exc, match", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_input_gives_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.skipif(not native_available(), reason="ntkit_native not built")
def test_bad_input_through_native_backend_never_crashes():
    """Every bad call above, forced onto the native backend, in a subprocess: a crash fails the test."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import numpy as np
        import ntkit
        from tests.ops.test_ops import BAD
        n = 0
        with ntkit.config_context(backend="native"):
            for call, exc, match in BAD:
                try:
                    call()
                except exc:
                    n += 1
        print("OK", n)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"OK {len(BAD)}" in proc.stdout


def test_native_backend_error_when_unavailable(monkeypatch):
    from ntkit.ops._backends import _native

    monkeypatch.setattr(_native, "available", lambda: False)
    with pytest.raises(RuntimeError, match="ntkit_native is not built"):
        gram(RBF(), np.ones((2, 2)), backend="native")
    # "auto" falls back to numpy without complaint
    np.testing.assert_allclose(gram(RBF(), np.ones((2, 2))), np.ones((2, 2)))


def test_output_larger_than_memory_is_refused(monkeypatch):
    from ntkit.ops import _gram

    monkeypatch.setattr(_gram, "available_memory", lambda: 1000)
    with pytest.raises(MemoryError, match="use ntkit.ops.kernel_matvec"):
        gram(RBF(), np.ones((20, 2)))


# ----------------------------------------------------------------------------- planning


@given(
    n=st.integers(1, 10**6), m=st.integers(1, 10**6), d=st.integers(0, 2000), t=st.integers(0, 64),
    itemsize=st.sampled_from([4, 8]), budget=st.integers(10**5, 10**10), square=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_plan_blocks_respects_budget(n, m, d, t, itemsize, budget, square):
    plan = plan_blocks(n, m, n_features=d, n_targets=t, itemsize=itemsize, memory_budget=budget, square=square)
    assert 1 <= plan.block_rows <= n and 1 <= plan.block_cols <= m
    assert plan.workspace_bytes <= budget
    assert plan.workspace_bytes == WORKSPACE_COPIES * itemsize * plan.block_rows * plan.block_cols + itemsize * (
        plan.block_rows + plan.block_cols) * (d + t + 1)
    if square:
        assert plan.block_rows == plan.block_cols


def test_config_context_sets_backend_and_budget(monkeypatch):
    from ntkit.ops._backends import _numpy

    seen = {}
    orig = _numpy.gram

    def spy(*args):
        seen["budget"] = args[-1]
        return orig(*args)

    monkeypatch.setattr(_numpy, "gram", spy)
    with ntkit.config_context(backend="numpy", memory_budget="1MiB"):
        assert ntkit.get_config()["backend"] == "numpy"
        gram(RBF(), np.ones((3, 2)))
    assert "budget" in seen
    assert ntkit.get_config()["backend"] == "auto"
    with pytest.raises(InvalidParameterError):
        with ntkit.config_context(backend="gpu"):
            pass


def test_parse_memory():
    from ntkit._config import parse_memory

    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory("2GB") == 2 * 10**9
    assert parse_memory(4096) == 4096
    assert parse_memory(None) is None


# ----------------------------------------------------------------------------- properties


@given(n=st.integers(1, 12), d=st.integers(1, 5), seed=st.integers(0, 2**16), ls=st.floats(0.3, 3.0))
@settings(max_examples=25, deadline=None)
def test_gram_properties(n, d, seed, ls):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    K = gram(Matern(ls, nu=2.5), X, backend="numpy")
    np.testing.assert_array_equal(K, K.T)
    assert np.linalg.eigvalsh(K).min() >= -1e-12 * n
    perm = rng.permutation(n)
    np.testing.assert_allclose(gram(Matern(ls, nu=2.5), X[perm], backend="numpy"), K[np.ix_(perm, perm)],
                               rtol=1e-12, atol=1e-14)


@given(n=st.integers(1, 15), m=st.integers(1, 15), seed=st.integers(0, 2**16), a=st.floats(-3, 3))
@settings(max_examples=25, deadline=None)
def test_kernel_matvec_is_linear(n, m, seed, a):
    rng = np.random.default_rng(seed)
    X, Z = rng.normal(size=(n, 3)), rng.normal(size=(m, 3))
    u, w = rng.normal(size=m), rng.normal(size=m)
    lhs = kernel_matvec(RBF(), X, Z, a * u + w, backend="numpy")
    rhs = a * kernel_matvec(RBF(), X, Z, u, backend="numpy") + kernel_matvec(RBF(), X, Z, w, backend="numpy")
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10 * (abs(a) + 1) * m)


# ----------------------------------------------------------------------------- KernelOperator


def test_kernel_operator_products(rng):
    X, Z = rng.normal(size=(30, 4)), rng.normal(size=(20, 4))
    K = ref.rbf(X, Z, 1.3)
    A = KernelOperator(RBF(1.3), X, Z)
    assert isinstance(A, LinearOperator) and A.shape == (30, 20)
    v, V, u = rng.normal(size=20), rng.normal(size=(20, 3)), rng.normal(size=30)
    np.testing.assert_allclose(A @ v, K @ v, rtol=1e-10)
    np.testing.assert_allclose(A @ V, K @ V, rtol=1e-10)
    np.testing.assert_allclose(A.rmatvec(u), K.T @ u, rtol=1e-10)
    np.testing.assert_allclose(A.H @ u, K.T @ u, rtol=1e-10)
    np.testing.assert_allclose(A.to_dense(), K, rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_operator_ridge_solve_matches_dense(backend, rng):
    """Laplace is the hard case: |x - x| = 0 must give exactly k = 1, not 1 - sqrt(eps)."""
    X, y = rng.normal(size=(80, 3)), rng.normal(size=80)
    lam = 0.1
    A = KernelOperator(Laplace(1.0), X, ridge=lam, backend=backend)
    alpha, info = cg(A, y, rtol=1e-12, maxiter=1000)
    assert info == 0
    K = ref.laplace(X, X, 1.0) + lam * np.eye(80)
    expect = scipy.linalg.solve(K, y, assume_a="pos")
    # CG stops at |r| <= 1e-12 |y|, so |alpha - alpha*| <= |K^-1| 1e-12 |y| <= 1e-12 |y| / lam;
    # a factor 100 covers the drift between CG's recursive and true residual.
    np.testing.assert_allclose(alpha, expect, rtol=0, atol=100 * 1e-12 * np.linalg.norm(y) / lam)
    np.testing.assert_allclose(A.diagonal(), np.diag(K), rtol=1e-12)


# ----------------------------------------------------------------------------- batched_gram


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batched_gram_matches_oracle(backend, dtype, rng):
    for b, n, m, p in [(1, 1, 1, 1), (3, 7, 5, 4), (4, 65, 33, 17), (0, 3, 2, 4), (2, 0, 3, 4)]:
        A = rng.normal(size=(b, n, p)).astype(dtype)
        B = rng.normal(size=(b, m, p)).astype(dtype)
        for reduce in ("none", "sum"):
            out = batched_gram(A, B, reduce=reduce, backend=backend)
            exp = ref.batched_gram(A, B, reduce)
            assert out.shape == exp.shape and out.dtype == dtype
            assert_close(out, exp, dtype)
            sym = batched_gram(A, reduce=reduce, backend=backend)
            assert_close(sym, ref.batched_gram(A, None, reduce), dtype)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=pytest.mark.skipif(
    not native_available(), reason="ntkit_native not built"))])
@pytest.mark.parametrize("kernel", [RBF(0.7), Laplace(0.7), Matern(0.7, nu=0.5), Matern(0.7, nu=1.5),
                                    Matern(0.7, nu=2.5)], ids=repr)
def test_near_duplicates_keep_full_precision(kernel, backend, rng):
    """Exact copies and points 1e-9 apart: the expansion |x|^2+|z|^2-2<x,z> alone would leave
    Laplace/Matern-1/2 with ~sqrt(eps) = 1e-8 relative error; the cancellation guard gives 1e-12."""
    X = rng.normal(size=(40, 6)) + 5.0
    Z = np.vstack([X[:15], X[15:30] + 1e-9 * rng.normal(size=(15, 6)), rng.normal(size=(7, 6))])
    v = rng.normal(size=Z.shape[0])
    K = gram(kernel, X, Z, backend=backend)
    ref_K = ref.oracle_gram(kernel, X, Z)
    np.testing.assert_allclose(K, ref_K, rtol=1e-12, atol=1e-300)
    # A sum of m terms: error bounded by a small multiple of eps * sum_j |K_ij v_j|.
    err = np.abs(kernel_matvec(kernel, X, Z, v, backend=backend) - ref_K @ v)
    assert np.all(err <= 1e-12 * (np.abs(ref_K) @ np.abs(v)))
    assert np.all(K[np.arange(15), np.arange(15)] == 1.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel", [Laplace(1.0), ArcCosine(0), ReluNTK(3)], ids=repr)
def test_symmetric_matvec_uses_exact_diagonal(kernel, backend, rng):
    X = rng.normal(size=(50, 4))
    v = np.zeros(50)
    v[7] = 1.0  # picks column 7: K[7, 7] must be the exact k(x, x)
    col = np.asarray(kernel_matvec(kernel, X, None, v, backend=backend))
    assert col[7] == pytest.approx(float(np.asarray(kernel.diag(X[7:8]))[0]), rel=1e-15)
    np.testing.assert_allclose(col, ref.oracle_gram(kernel, X)[:, 7], rtol=1e-11, atol=1e-14)
