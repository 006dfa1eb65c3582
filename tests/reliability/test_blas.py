"""``ntkit._blas``: products whose bits do not depend on the BLAS thread count, and the
process-wide one-thread section.

The accuracy bound: each entry of the tiled product is one BLAS dot product of length k, so
``|fl(AB) - AB| <= γ_k |A||B|`` elementwise with ``γ_k = k·u / (1 - k·u)`` (Higham, *Accuracy and
Stability of Numerical Algorithms*, §3.5), u the unit round-off. float32 results are compared with
the float64 product under that bound; float64 results with numpy's own product, which obeys the
same bound, so the two differ by at most 2·γ_k |A||B|.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ntkit import _blas
from ntkit._blas import matmul, one_blas_thread

SHAPES = [  # (m, k, n): thin, square, GEMV-like, one row, sizes that tile in both directions, a long k
    # (cut into pieces whose partial products are added in a fixed order), tiny (plain A @ B)
    (300, 20, 256), (700, 300, 500), (5000, 300, 1), (1, 300, 5000), (3000, 6, 2500), (1, 1, 1), (0, 5, 4),
    (4, 0, 3), (2100, 40, 4200), (60, 20000, 50), (1, 30000, 1), (7, 9, 11),
]


def _bound(A, B):
    k = A.shape[-1] if A.ndim else 1
    u = np.finfo(np.result_type(A, B)).eps / 2
    gamma = k * u / (1 - k * u)
    return gamma * (np.abs(A.astype(np.float64)) @ np.abs(B.astype(np.float64)))


def _exact(A, B):
    return A.astype(np.float64) @ B.astype(np.float64)  # float64: exact enough for float32 inputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_thread_count_invariant_and_accurate(m, k, n, dtype):
    rng = np.random.default_rng(m + 7 * k + 13 * n)
    A, B = rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(k, n)).astype(dtype)
    out = {}
    for threads in (1, 2, 3):
        with threadpool_limits(threads, user_api="blas"):
            out[threads] = matmul(A, B)
    assert out[1].dtype == dtype and out[1].shape == (m, n)
    assert np.array_equal(out[1], out[2]) and np.array_equal(out[1], out[3])
    if dtype == np.float32:
        assert np.all(np.abs(out[1] - _exact(A, B)) <= _bound(A, B) * 1.0001)
    else:
        # no higher-precision reference here: compare with numpy's own product, both within γ_k
        assert np.all(np.abs(out[1] - A @ B) <= 2 * _bound(A, B) * 1.0001)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectors_views_and_mixed_dtypes(dtype):
    rng = np.random.default_rng(3)
    A = rng.normal(size=(900, 400)).astype(dtype)
    v = rng.normal(size=400).astype(dtype)
    u = rng.normal(size=900).astype(dtype)
    cases = {
        "A v": (A, v), "u A": (u, A), "u u": (u, u), "Aᵀ u": (A.T, u),
        "strided": (A[::2, ::3], A[1::3, ::2][:134]),  # (450, 134) @ (134, 200), no unit stride
        "F-order": (np.asfortranarray(A), A.T), "mixed": (A, v.astype(np.float64)),
    }
    for name, (X, Y) in cases.items():
        with threadpool_limits(1, user_api="blas"):
            r1 = matmul(X, Y)
        with threadpool_limits(2, user_api="blas"):
            r2 = matmul(X, Y)
        ref = X @ Y
        assert np.shape(r1) == np.shape(ref) and np.asarray(r1).dtype == np.asarray(ref).dtype, name
        assert np.array_equal(r1, r2), name
        assert np.all(np.abs(np.asarray(r1) - ref) <= 2 * _bound(np.asarray(X), np.asarray(Y)) * 1.0001), name


def test_gram_products_are_exactly_symmetric():
    rng = np.random.default_rng(4)
    for n, k in [(5, 3), (1100, 30), (2500, 7), (40, 20000)]:  # the last: k cut into pieces
        X = rng.normal(size=(n, k))
        G = matmul(X, X.T)
        assert np.array_equal(G, G.T)
        assert np.all(np.abs(G - X @ X.T) <= 2 * _bound(X, X.T) * 1.0001)
        with threadpool_limits(1, user_api="blas"):
            assert np.array_equal(matmul(X, X.T), G)


def test_everything_else_is_the_plain_product():
    rng = np.random.default_rng(5)
    A = rng.integers(0, 5, size=(6, 4))
    S = sp.random(6, 4, density=0.5, random_state=0, format="csr")
    B = rng.normal(size=(4, 3))
    C = (rng.normal(size=(6, 4)) + 1j).astype(np.complex128)
    assert np.array_equal(matmul(A, A.T), A @ A.T) and matmul(A, A.T).dtype == (A @ A.T).dtype
    assert np.allclose(matmul(S, B), S @ B)
    assert np.array_equal(matmul(C, B), C @ B)
    stack = rng.normal(size=(2, 6, 4))
    assert np.array_equal(matmul(stack, B), stack @ B)
    with pytest.raises(ValueError, match="mismatch|shape|align"):
        matmul(rng.normal(size=(3, 4)), rng.normal(size=(5, 2)))


def test_the_same_from_many_python_threads():
    rng = np.random.default_rng(6)
    A, B = rng.normal(size=(700, 24)), rng.normal(size=(24, 600))
    ref = matmul(A, B)
    results, errors = [], []
    barrier = threading.Barrier(4)

    def worker():
        try:
            barrier.wait(timeout=30)
            for _ in range(10):
                results.append(matmul(A, B))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 40
    assert all(np.array_equal(r, ref) for r in results)


def _openblas_threads():
    from threadpoolctl import threadpool_info

    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_one_blas_thread_works_from_any_python_thread_and_restores():
    """threadpoolctl (>= 3.6) ignores limits set from a thread other than its "controlling" one
    (measured: threadpool_limits(1) in a worker thread left OpenBLAS at 2 threads); the section
    must hold wherever it is opened, nest, survive exceptions and restore the caller's limits."""
    before = _openblas_threads()
    seen = {}

    def worker():
        with one_blas_thread():
            seen["inside"] = _openblas_threads()
            with one_blas_thread():
                seen["nested"] = _openblas_threads()
            seen["after-nested"] = _openblas_threads()
        seen["after"] = _openblas_threads()

    with threadpool_limits(2, user_api="blas"):
        before = _openblas_threads()
        t = threading.Thread(target=worker)
        t.start()
        t.join(timeout=30)
        for key in ("inside", "nested", "after-nested"):
            assert set(seen[key].values()) == {1}, (key, seen[key])
        assert seen["after"] == before
        with pytest.raises(RuntimeError):
            with one_blas_thread():
                raise RuntimeError("boom")
        assert _openblas_threads() == before
        assert _blas.blas_threads() == max(before.values())
        with one_blas_thread():  # inside a section: the count the caller had
            assert _blas.blas_threads() == max(before.values())


def test_a_failing_tile_stops_the_others_and_restores_blas(monkeypatch):
    """An error in one tile (here a MemoryError) propagates, the other workers stop at their next
    tile instead of finishing the product, and the BLAS limits are restored."""
    rng = np.random.default_rng(7)
    A, B = rng.normal(size=(4000, 200)), rng.normal(size=(200, 600))  # 16 tiles
    before = _openblas_threads()
    calls = []
    real = np.matmul

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("tile 3")
        return real(*args, **kw)

    monkeypatch.setattr(_blas.np, "matmul", flaky)
    with pytest.raises(MemoryError, match="tile 3"):
        matmul(A, B)
    monkeypatch.setattr(_blas.np, "matmul", real)
    assert len(calls) <= 3 + _blas.blas_threads()  # each worker finishes at most the tile it had
    assert _blas._depth == 0 and _openblas_threads() == before
    assert np.array_equal(matmul(A, B), matmul(A, B))


_FORK_SCRIPT = """
import os, sys
from threadpoolctl import threadpool_info
from ntkit import _blas

def blas():
    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

before = blas()
with _blas.one_blas_thread():
    pid = os.fork()
    if pid == 0:  # the child: the forking thread's section is still open, BLAS still on one thread
        os._exit(0 if _blas._depth == 1 and set(blas().values()) == {1} else 1)
    _, status = os.waitpid(pid, 0)
sys.exit(3 if os.WEXITSTATUS(status) else (0 if blas() == before else 4))
"""


def test_fork_inside_a_section():
    """Only the forking thread survives a fork: its open section must still hold in the child, so
    LAPACK stays single-threaded and deterministic there. (In a fresh interpreter without jax, whose
    threads make forking the test process unsafe.)"""
    import os
    import subprocess
    import sys

    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2")
    p = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
