"""Dask scale-out (ntkit.distributed) against the single-process primitive, same data, one run.

``kernel_matvec(RBF, X, Z, v)`` with the rows of X (n = 400 000) sharded over a 2-worker
``LocalCluster`` (1 thread each) against ``ntkit.ops.kernel_matvec`` in one process (2 OpenMP
threads): on one 2-core machine the same cores do the work, so the difference is the Dask
overhead (scatter of X, broadcast of Z and v, task scheduling, gather of the result).

EigenPro 3 with the rows sharded (``ntkit.distributed.eigenpro``) against the local solver on
the same data, seed and settings: every step is one synchronous round trip (weights out,
gradient parts back), so the per-step overhead is what the row shows.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from _harness import fmt_s


def run(quick=False):
    from dask.distributed import Client, LocalCluster

    from ntkit import distributed as nd
    from ntkit.kernels import RBF
    from ntkit.ops import kernel_matvec

    n, m, d = (40_000, 4_000, 20) if quick else (400_000, 20_000, 20)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    Z = rng.normal(size=(m, d))
    v = rng.normal(size=m)
    k = RBF(float(np.sqrt(d)))
    kernel_matvec(k, X[:1000], Z, v)
    t0 = time.perf_counter()
    local = kernel_matvec(k, X, Z, v)
    t_local = time.perf_counter() - t0
    rows = []
    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as c, \
            Client(c) as client:
        t_up = time.perf_counter() - t0
        nd.kernel_matvec(k, X[:1000], Z, v, client=client)  # warm the workers (imports)
        t0 = time.perf_counter()
        remote = nd.kernel_matvec(k, X, Z, v, client=client)
        t_dask = time.perf_counter() - t0
        ep_row = _eigenpro_row(client, quick)
    diff = float(np.max(np.abs(remote - local)) / np.max(np.abs(local)))
    rows.append(f"| {n:,} × {m:,}, d = {d}, float64 | {fmt_s(t_local)} | {fmt_s(t_dask)} | "
                f"{fmt_s(t_dask - t_local)} ({100 * (t_dask / t_local - 1):+.0f}%) | {fmt_s(t_up)} | {diff:.1e} |")
    return "\n".join(["## Dask scale-out (ntkit.distributed)", "",
                      "`kernel_matvec(RBF, X, Z, v)`: one process with 2 OpenMP threads vs a 2-worker LocalCluster "
                      "(processes, 1 thread each) on the same 2 cores, so the difference is Dask's overhead. The "
                      "cluster start-up is listed apart.", "",
                      "| problem | single process | Dask, 2 workers | overhead | cluster start-up | max rel. diff |",
                      "| --- | --- | --- | --- | --- | --- |", *rows, "",
                      "EigenPro 3 with the data rows sharded over the same 2 workers (`ntkit.distributed.eigenpro`) "
                      "vs the local solver (same seed: same batches and steps); Laplace kernel, float64, Cholesky "
                      "projection. Overhead per step = (Dask − local) / steps.", "",
                      "| problem | epochs | steps | local | Dask, 2 workers | overhead per step | final train MSE "
                      "local / Dask | max rel. diff of weights |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- |", ep_row])


def _eigenpro_row(client, quick):
    from ntkit import distributed as nd
    from ntkit.kernels import Laplace
    from ntkit.solvers import eigenpro

    n, p, d, epochs = (20_000, 500, 10, 2) if quick else (200_000, 2_000, 10, 2)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, d))
    y = np.sin(X @ rng.normal(size=d) / np.sqrt(d)) + 0.1 * rng.normal(size=n)
    Z = X[:p].copy()
    k = Laplace(float(np.sqrt(d)))
    kw = dict(centers=Z, epochs=epochs, random_state=0, projection="cholesky")
    nd.eigenpro(k, X[:2000], y[:2000], centers=Z[:100], epochs=1, random_state=0, client=client)  # warm up
    t0 = time.perf_counter()
    loc = eigenpro(k, X, y, **kw)
    t_loc = time.perf_counter() - t0
    t0 = time.perf_counter()
    dis = nd.eigenpro(k, X, y, client=client, **kw)
    t_dis = time.perf_counter() - t0
    steps = epochs * -(-n // loc.batch_size)
    diff = float(np.max(np.abs(dis.weights - loc.weights)) / np.max(np.abs(loc.weights)))
    return (f"| n = {n:,}, p = {p:,}, d = {d}, batch {loc.batch_size} | {epochs} | {steps} | {fmt_s(t_loc)} | "
            f"{fmt_s(t_dis)} ({t_dis / t_loc:.2f}×) | {fmt_s((t_dis - t_loc) / steps)} | "
            f"{loc.history[-1]['train_mse']:.4g} / {dis.history[-1]['train_mse']:.4g} | {diff:.1e} |")


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
