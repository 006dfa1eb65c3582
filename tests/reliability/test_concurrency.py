"""Native calls release the GIL and are thread-safe.

* Every ``ntkit_native`` entry point (``gram``, ``kernel_matvec``, ``batched_gram``,
  ``hadamard_blocks``, ``grf_features``, ``info``) and the Python-level ``ntkit.ops.gram`` /
  ``kernel_matvec`` / ``batched_gram`` on the numpy, jax and native backends, called from 4
  Python threads at once (released together by a barrier, each thread running the calls in
  a different order, twice), return exactly what the same calls return sequentially.

  The comparison is bitwise (``np.array_equal``) and must be: a call's arithmetic does not
  depend on what other threads do. In the native engine every output entry is produced by
  one thread with a fixed summation order (OpenMP splits rows / tiles / start nodes, never a
  reduction; the GEMM inner dimension is never split; the graph walks use counter-based
  random numbers); XLA's CPU runtime likewise partitions outputs, not sums. OpenBLAS's dgemm
  does change its last bits with its thread count (see ``test_determinism.py``), so the numpy
  data include a 24-feature case whose product is thread-count sensitive: a concurrent call
  must still run like the sequential one (measured: OpenBLAS queues concurrent callers on its
  pool rather than giving them fewer threads). Bitwise equality is first checked between two
  sequential runs, so a failure here is a concurrency bug.
* Mixed float32 / float64 calls on the jax backend in different threads keep their dtypes
  (``x64_scope`` is thread-local), and ``ntkit.config_context(backend=...)`` in one thread does
  not leak into another.
* The first native calls of a fresh process, made by 4 threads at once, do not deadlock (they
  did: the extension's one-time BLAS lookup ran inside ``std::call_once`` with the GIL held).
* The GIL is released: while one native call runs in a worker thread, the main thread keeps
  executing Python bytecode. The call is sized to last >= 0.3 s and its duration is cut into
  10 equal slots; the main thread's loop must have run in at least 7 of them. With the GIL
  held the main thread is blocked for the whole call (at most the first slot, before the
  call is entered), while a fair scheduler gives a runnable thread the CPU every few tens of
  ms even on a loaded 2-core machine -- so the check does not depend on how fast the loop is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import ntkit
from ntkit.kernels import RBF, ArcCosine, Laplace, Matern, Polynomial, ReluNTK
from ntkit.ops import batched_gram, gram, kernel_matvec

from tests.conftest import native_available

from ._graphs import ring_plus_random

NATIVE = native_available()
needs_native = pytest.mark.skipif(not NATIVE, reason="ntkit_native not built")
N_THREADS = 4


def _graph(n=1500, seed=0):
    return ring_plus_random(n, seed)


def _native_calls():
    import ntkit_native as nn

    rng = np.random.default_rng(0)
    calls = {}
    for dt in (np.float64, np.float32):
        X = rng.normal(size=(700, 9)).astype(dt)
        Z = rng.normal(size=(530, 9)).astype(dt)
        v1 = rng.normal(size=530).astype(dt)
        v3 = rng.normal(size=(530, 3)).astype(dt)
        vs = rng.normal(size=(700, 2)).astype(dt)
        A = rng.normal(size=(5, 300, 40)).astype(dt)
        B = rng.normal(size=(5, 260, 40)).astype(dt)
        S = np.sign(rng.normal(size=(4, 3, 16))).astype(dt)
        Xh = rng.normal(size=(400, 12)).astype(dt)
        name = np.dtype(dt).name
        for kid, params in (("rbf", {"lengthscale": 1.3}), ("laplace", None), ("matern52", {"lengthscale": 2.0}),
                            ("polynomial", {"degree": 2}), ("arccos1", None), ("relu_ntk", {"depth": 2})):
            calls[f"gram-{kid}-{name}"] = (lambda X=X, Z=Z, k=kid, p=params: nn.gram(X, Z, k, p))
            calls[f"gram-sym-{kid}-{name}"] = (lambda X=X, k=kid, p=params: nn.gram(X, None, k, p))
            calls[f"matvec-{kid}-{name}"] = (lambda X=X, Z=Z, v=v1, k=kid, p=params: nn.kernel_matvec(X, Z, v, k, p))
        calls[f"matvec-tiles-{name}"] = (
            lambda X=X, Z=Z, v=v3: nn.kernel_matvec(X, Z, v, "rbf", None, block_rows=37, block_cols=101))
        calls[f"matvec-sym-{name}"] = (lambda X=X, v=vs: nn.kernel_matvec(X, None, v, "matern32", None))
        calls[f"batched-none-{name}"] = (lambda A=A, B=B: nn.batched_gram(A, B))
        calls[f"batched-sum-{name}"] = (lambda A=A, B=B: nn.batched_gram(A, B, reduce="sum"))
        calls[f"batched-sym-sum-{name}"] = (lambda A=A: nn.batched_gram(A, None, reduce="sum"))
        calls[f"hadamard-{name}"] = (lambda X=Xh, S=S: nn.hadamard_blocks(X, S))
    W = _graph()
    ip, ix = W.indptr.astype(np.int64), W.indices.astype(np.int64)
    starts = np.arange(W.shape[0], dtype=np.int64)
    f = 0.5 ** np.arange(12)
    for mode in (0, 1, 2, 3):
        calls[f"grf-mode{mode}"] = (
            lambda mode=mode: nn.grf_features(ip, ix, W.data, starts, 8, 0.3, f, 1234, mode))
    calls["info"] = lambda: tuple(sorted((k, str(v)) for k, v in nn.info().items()))
    if nn.has_cuda():  # the CUDA path shares pinned staging buffers between calls (behind a mutex)
        X = rng.normal(size=(900, 9))
        Z = rng.normal(size=(700, 9))
        v = rng.normal(size=(700, 2))
        A = rng.normal(size=(3, 200, 30))
        calls["cuda-gram"] = lambda: nn.gram(X, Z, "rbf", None, device="cuda")
        calls["cuda-gram-sym"] = lambda: nn.gram(X, None, "matern32", None, device="cuda")
        calls["cuda-matvec"] = lambda: nn.kernel_matvec(X, Z, v, "laplace", None, device="cuda")
        calls["cuda-batched"] = lambda: nn.batched_gram(A, None, "sum", device="cuda")
    return calls


def _ops_calls(backends):
    rng = np.random.default_rng(1)
    X64 = rng.normal(size=(300, 7))
    Z64 = rng.normal(size=(220, 7))
    v64 = rng.normal(size=(220, 2))
    A = rng.normal(size=(4, 120, 30))
    Xw, Zw = rng.normal(size=(300, 24)), rng.normal(size=(256, 24))
    calls = {}
    for backend in backends:
        for dt in (np.float64, np.float32):
            X, Z, v = X64.astype(dt), Z64.astype(dt), v64.astype(dt)
            name = f"{backend}-{np.dtype(dt).name}"
            kernels = (RBF(1.3), Laplace(0.8), Matern(1.1, nu=1.5), Polynomial(degree=3, gamma=0.2),
                       ArcCosine(order=1), ReluNTK(depth=2, bias_std=0.1))
            # numpy/jax: two kernel families (stationary, dot-product angle) keep the test fast (jax
            # compiles each); the native engine's kernels are all cheap
            for k in (kernels if backend == "native" else (kernels[0], kernels[4])):
                kn = type(k).__name__
                calls[f"ops.gram-{kn}-{name}"] = (lambda X=X, Z=Z, k=k, b=backend: gram(k, X, Z, backend=b))
                calls[f"ops.gram-sym-{kn}-{name}"] = (lambda X=X, k=k, b=backend: gram(k, X, backend=b))
                calls[f"ops.matvec-{kn}-{name}"] = (
                    lambda X=X, Z=Z, v=v, k=k, b=backend: kernel_matvec(k, X, Z, v, backend=b, memory_budget="256KiB"))
            calls[f"ops.matvec-sym-{name}"] = (
                lambda X=X, v=v64[:1].repeat(300, 0).astype(dt), b=backend: kernel_matvec(RBF(), X, None, v, backend=b))
            calls[f"ops.batched-{name}"] = (
                lambda A=A.astype(dt), b=backend: batched_gram(A, reduce="sum", backend=b))
            # 24 features: OpenBLAS's X @ Zᵀ here differs in the last bits between 1 and 2 threads
            calls[f"ops.gram-wide-{name}"] = (lambda X=Xw.astype(dt), Z=Zw.astype(dt), b=backend:
                                              gram(RBF(3.0), X, Z, backend=b))
            # the backend chosen by a thread's own config_context, with backend="auto"
            calls[f"ops.config-{name}"] = (lambda X=X, Z=Z, b=backend: _with_config(b, X, Z))
    return calls


def _with_config(backend, X, Z):
    with ntkit.config_context(backend=backend):
        time.sleep(0.001)  # let other threads run inside their own contexts
        return gram(Matern(0.9, nu=2.5), X, Z)


def _as_tuple(out):
    return tuple(np.asarray(a) for a in out) if isinstance(out, tuple) else (np.asarray(out),)


def _same(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray) and x.dtype.kind in "fiu":
            if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
                return False
        elif not np.all(x == y):
            return False
    return True


def _check_threads(calls):
    names = list(calls)
    ref = {k: _as_tuple(calls[k]()) for k in names}
    again = {k: _as_tuple(calls[k]()) for k in names}
    nondet = [k for k in names if not _same(ref[k], again[k])]
    assert not nondet, f"not deterministic even sequentially: {nondet}"

    barrier = threading.Barrier(N_THREADS)
    errors, results = [], {}

    def worker(t):
        try:
            order = names[t * len(names) // N_THREADS:] + names[: t * len(names) // N_THREADS]
            barrier.wait(timeout=60)
            for rep in range(2):
                for k in (order if rep == 0 else order[::-1]):
                    results[(t, rep, k)] = _as_tuple(calls[k]())
        except BaseException as e:  # noqa: BLE001
            errors.append(f"thread {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(N_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), "threads hung (deadlock?)"
    assert not errors, errors
    assert len(results) == N_THREADS * 2 * len(names)
    bad = sorted({k for (t, rep, k), out in results.items() if not _same(out, ref[k])})
    assert not bad, f"results from {N_THREADS} threads differ from sequential calls: {bad}"


@needs_native
def test_native_entry_points_thread_safe_and_bitwise_equal():
    _check_threads(_native_calls())


@pytest.mark.parametrize("backend", ["numpy", "jax", pytest.param("native", marks=needs_native)])
def test_ops_thread_safe_and_bitwise_equal(backend):
    _check_threads(_ops_calls([backend]))


def test_ops_mixed_backends_and_dtypes_in_threads():
    """float32 and float64 jax calls (x64 switched on per call) next to numpy/native ones."""
    backends = ["numpy", "jax"] + (["native"] if NATIVE else [])
    calls = _ops_calls(backends)
    keep = [k for k in calls if k.startswith(("ops.gram-RBF", "ops.matvec-ArcCosine", "ops.config", "ops.batched"))]
    _check_threads({k: calls[k] for k in keep})


_FIRST_CALLS = r"""
import sys, threading
import numpy as np
import ntkit_native as nn
assert "scipy" not in sys.modules  # the one-time BLAS lookup imports scipy inside the first call
X = np.random.default_rng(0).normal(size=(300, 5))
barrier = threading.Barrier(4)
out = [None] * 4
def work(i):
    barrier.wait()
    out[i] = [nn.gram(X, None, "rbf"), nn.kernel_matvec(X, None, X[:, 0].copy(), "rbf")]
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
assert all(np.array_equal(o[0], out[0][0]) and np.array_equal(o[1], out[0][1]) for o in out)
print("ok")
"""


@needs_native
def test_first_native_calls_from_threads_do_not_deadlock():
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _FIRST_CALLS], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, JAX_PLATFORMS="cpu"))
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


# ------------------------------------------------------------------------------ GIL release
def _gil_calls():
    """name -> factory(scale) returning a zero-argument native call whose cost grows with scale."""
    import ntkit_native as nn

    rng = np.random.default_rng(2)

    def gram_call(s):
        X = rng.normal(size=(int(500 * s), 16))
        return lambda: nn.gram(X, None, "matern52")

    def matvec_call(s):
        X = rng.normal(size=(int(800 * s), 8))
        v = rng.normal(size=X.shape[0])
        return lambda: nn.kernel_matvec(X, X, v, "laplace")

    def batched_call(s):
        A = rng.normal(size=(4, int(300 * s), 64))
        return lambda: nn.batched_gram(A, A)

    def hadamard_call(s):
        X = rng.normal(size=(int(2000 * s), 60))
        S = np.sign(rng.normal(size=(8, 3, 64)))
        return lambda: nn.hadamard_blocks(X, S)

    def grf_call(s):
        W = _graph(int(2000 * s))
        ip, ix = W.indptr.astype(np.int64), W.indices.astype(np.int64)
        starts = np.arange(W.shape[0], dtype=np.int64)
        f = 0.5 ** np.arange(40)
        return lambda: nn.grf_features(ip, ix, W.data, starts, 16, 0.1, f, 7, 0)

    return {"gram": (gram_call, 2), "kernel_matvec": (matvec_call, 2), "batched_gram": (batched_call, 2),
            "hadamard_blocks": (hadamard_call, 1), "grf_features": (grf_call, 1)}


def _sized(factory, power, target=0.3):
    """Grow the problem until one call takes >= target seconds (cost ~ scale ** power)."""
    s = 1.0
    for _ in range(12):
        call = factory(s)
        t0 = time.perf_counter()
        call()
        dt = time.perf_counter() - t0
        if dt >= target:
            return call
        s *= min(8.0, max(1.25, (target * 1.5 / max(dt, 1e-4)) ** (1.0 / power)))
    return call


@needs_native
@pytest.mark.parametrize("name", ["gram", "kernel_matvec", "batched_gram", "hadamard_blocks", "grf_features"])
def test_native_calls_release_the_gil(name):
    call = _sized(*_gil_calls()[name])
    state = {"t0": None, "t1": None}

    def worker():
        state["t0"] = time.perf_counter()
        call()
        state["t1"] = time.perf_counter()

    stamps = []
    th = threading.Thread(target=worker)
    th.start()
    while th.is_alive():  # the main thread's Python loop, timestamped
        stamps.append(time.perf_counter())
        for _ in range(200):
            pass
    th.join()
    t0, t1 = state["t0"], state["t1"]
    slots = np.zeros(10, bool)
    for s in stamps:
        if t0 <= s < t1:
            slots[min(9, int(10 * (s - t0) / (t1 - t0)))] = True
    assert slots.sum() >= 7, (
        f"ntkit_native.{name} held the GIL: during a {t1 - t0:.2f} s call the main thread ran in only "
        f"{slots.sum()} of 10 time slots ({slots.astype(int).tolist()})")
