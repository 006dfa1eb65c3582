"""Gram products: ntkit's native engine vs numpy, scikit-learn and jax on the same data, one run.

1. RBF ``gram`` at n = m in {2000, 8000}, d in {16, 256, 784}, float32 and float64:
   native vs a numpy BLAS-trick RBF vs ``sklearn.metrics.pairwise.rbf_kernel`` vs jax (jit),
   with the plain ``X @ Z.T`` matmul as the BLAS roof.
2. Fused ``kernel_matvec`` vs materialise-then-multiply at n = m = 20 000, d = 32 (where
   both fit), and the fused product alone at n = 200 000, m = 20 000, d = 32 with its peak memory.
3. ``batched_gram`` vs ``numpy.matmul`` / the unfolded product (the eNTK's per-layer Grams).
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np

from _harness import best_time, fmt_s, peak_memory_subprocess, table


def numpy_rbf(X, Z, gamma):
    """The textbook numpy RBF: |x|^2 + |z|^2 - 2 X Z^T, then exp, in place."""
    K = X @ Z.T
    K *= -2
    K += np.einsum("ij,ij->i", X, X)[:, None]
    K += np.einsum("ij,ij->i", Z, Z)[None, :]
    np.maximum(K, 0, out=K)
    K *= -gamma
    np.exp(K, out=K)
    return K


def bench_rbf_gram(quick=False):
    import jax
    import jax.numpy as jnp
    from sklearn.metrics.pairwise import rbf_kernel

    import ntkit_native
    from ntkit.kernels import RBF
    from ntkit.ops import gram

    have_native = ntkit_native.is_available()
    sizes = [2000] if quick else [2000, 8000]
    dims = [16, 256] if quick else [16, 256, 784]
    rows = []
    for dtype in (np.float32, np.float64):
        for n in sizes:
            for d in dims:
                rng = np.random.default_rng(0)
                X = rng.normal(size=(n, d)).astype(dtype)
                Z = rng.normal(size=(n, d)).astype(dtype)
                ls = np.sqrt(d)
                gamma = 1 / (2 * ls * ls)
                reps = 2 if n * n * d > 8000 * 8000 * 200 else 3
                t_mm = best_time(lambda: X @ Z.T, reps)
                t_np = best_time(lambda: numpy_rbf(X, Z, gamma), reps)
                t_sk = best_time(lambda: rbf_kernel(X, Z, gamma=gamma), reps)
                with jax.enable_x64(dtype == np.float64):
                    Xj, Zj = jnp.asarray(X), jnp.asarray(Z)
                    t_jx = best_time(lambda: gram(RBF(ls), Xj, Zj).block_until_ready(), reps)
                if have_native:
                    t_nat = best_time(lambda: ntkit_native.gram(X, Z, "rbf", {"lengthscale": float(ls)}), reps)
                    t_api = best_time(lambda: gram(RBF(ls), X, Z, backend="native"), reps)
                else:
                    t_nat = t_api = float("nan")
                flops = 2.0 * n * n * d
                rows.append([np.dtype(dtype).name, n, d, fmt_s(t_mm), f"{flops / t_mm / 1e9:.0f}", fmt_s(t_nat),
                             fmt_s(t_api), fmt_s(t_np), fmt_s(t_sk), fmt_s(t_jx),
                             f"{t_sk / t_nat:.2f}x", f"{t_mm / t_nat:.0%}"])
                print("gram", rows[-1], file=sys.stderr, flush=True)
    header = ["dtype", "n = m", "d", "X @ Z.T (roof)", "roof GFLOP/s", "native gram", "ntkit.ops.gram (native)",
              "numpy BLAS-trick", "sklearn rbf_kernel", "jax (ntkit jax backend)", "sklearn / native",
              "native vs roof"]
    return table(header, rows)


MATVEC_CHILD = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {bench_dir!r})
    import numpy as np
    from _harness import RssSampler
    from ntkit.kernels import RBF
    from ntkit.ops import kernel_matvec, gram
    n, m, d, t, dtype, mode, backend = {args}
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d)).astype(dtype)
    Z = rng.normal(size=(m, d)).astype(dtype)
    v = rng.normal(size=(m, t)).astype(dtype)
    k = RBF(float(np.sqrt(d)))
    kernel_matvec(k, X[:4096], Z[:4096], v[:4096], backend=backend)  # warm-up: every thread allocates its BLAS buffers
    with RssSampler() as mem:
        t0 = time.perf_counter()
        if mode == "fused":
            out = kernel_matvec(k, X, Z, v, backend=backend, memory_budget="256MiB")
        else:
            out = gram(k, X, Z, backend=backend) @ v
        sec = time.perf_counter() - t0
    print(json.dumps({{"seconds": sec, "peak_extra_mib": mem.extra_mib}}))
    """
)


def _matvec_child(n, m, d, t, dtype, mode, backend):
    import os

    args = repr((n, m, d, t, dtype, mode, backend))
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    return peak_memory_subprocess(MATVEC_CHILD.format(args=args, bench_dir=bench_dir))


def bench_matvec(quick=False):
    import ntkit_native

    backend = "native" if ntkit_native.is_available() else "numpy"
    rows = []
    small = 8000 if quick else 20000
    big = 40000 if quick else 200000
    for dtype in ("float32", "float64"):
        for n, m, modes in [(small, small, ("fused", "materialise")), (big, 20000 if not quick else 8000, ("fused",))]:
            res = {mode: _matvec_child(n, m, 32, 1, dtype, mode, backend) for mode in modes}
            fused = res["fused"]
            mat = res.get("materialise")
            dense_mib = n * m * np.dtype(dtype).itemsize / 2**20
            rows.append([dtype, n, m, 32, 1, backend, fmt_s(fused["seconds"]), f"{fused['peak_extra_mib']:.1f} MiB",
                         fmt_s(mat["seconds"]) if mat else "not run (K needs more than the 256 MiB budget)",
                         f"{mat['peak_extra_mib']:.0f} MiB" if mat else f"(K alone: {dense_mib:.0f} MiB)",
                         f"{mat['seconds'] / fused['seconds']:.2f}x" if mat else "-"])
            print("matvec", rows[-1], file=sys.stderr, flush=True)
    header = ["dtype", "n", "m", "d", "t", "backend", "fused kernel_matvec", "fused peak extra RSS",
              "gram then @ v", "its peak extra RSS", "speed-up of fused"]
    return table(header, rows)


def bench_batched(quick=False):
    import ntkit_native

    from ntkit.ops import batched_gram

    rows = []
    for dtype in (np.float32, np.float64):
        for b, n, p in ([(3, 1000, 256)] if quick else [(3, 2000, 512), (10, 1000, 128)]):
            rng = np.random.default_rng(0)
            A = rng.normal(size=(b, n, p)).astype(dtype)
            B = rng.normal(size=(b, n, p)).astype(dtype)
            t_np_none = best_time(lambda: np.matmul(A, B.transpose(0, 2, 1)))
            t_np_sum = best_time(lambda: np.einsum("bnp,bmp->nm", A, B, optimize=True))
            res = [np.dtype(dtype).name, b, n, n, p, fmt_s(t_np_none), fmt_s(t_np_sum)]
            if ntkit_native.is_available():
                t_n_none = best_time(lambda: batched_gram(A, B, reduce="none", backend="native"))
                t_n_sum = best_time(lambda: batched_gram(A, B, reduce="sum", backend="native"))
                t_n_sym = best_time(lambda: batched_gram(A, reduce="sum", backend="native"))
                t_np_sym = best_time(lambda: np.einsum("bnp,bmp->nm", A, A, optimize=True))
                res += [fmt_s(t_n_none), fmt_s(t_n_sum), fmt_s(t_n_sym), f"{t_np_none / t_n_none:.2f}x",
                        f"{t_np_sum / t_n_sum:.2f}x", f"{t_np_sym / t_n_sym:.2f}x"]
            t_auto = best_time(lambda: batched_gram(A, reduce="sum"))
            res.append(f"{fmt_s(t_auto)} ({t_np_sym / t_auto:.2f}x)")
            rows.append(res)
            print("batched", rows[-1], file=sys.stderr, flush=True)
    header = ["dtype", "b", "n", "m", "p", "numpy matmul (none)", "numpy einsum (sum)", "native (none)",
              "native (sum)", "native (sum, B = A)", "speed-up none", "speed-up sum", "speed-up sym vs einsum(A, A)",
              "ntkit auto (sum, B = A)"]
    return table(header, rows)


def run(quick=False) -> str:
    parts = ["## Gram products (`benchmarks/bench_gram.py`)", "",
             "### RBF `gram`: native vs numpy vs scikit-learn vs jax (same data, same run)", "",
             bench_rbf_gram(quick), "",
             "### Fused `kernel_matvec` (RBF) vs materialise-then-multiply", "", bench_matvec(quick), "",
             "### `batched_gram` vs numpy", "", bench_batched(quick), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
