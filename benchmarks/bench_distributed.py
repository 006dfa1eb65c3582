"""Dask scale-out (ntkit.distributed) against the single-process primitive, same data, one run.

``kernel_matvec(RBF, X, Z, v)`` with the rows of X (n = 400 000) sharded over a 2-worker
``LocalCluster`` (1 thread each) against ``ntkit.ops.kernel_matvec`` in one process (2 OpenMP
threads): on one 2-core machine the same cores do the work, so the difference is the Dask
overhead (scatter of X, broadcast of Z and v, task scheduling, gather of the result).
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
    diff = float(np.max(np.abs(remote - local)) / np.max(np.abs(local)))
    rows.append(f"| {n:,} × {m:,}, d = {d}, float64 | {fmt_s(t_local)} | {fmt_s(t_dask)} | "
                f"{fmt_s(t_dask - t_local)} ({100 * (t_dask / t_local - 1):+.0f}%) | {fmt_s(t_up)} | {diff:.1e} |")
    return "\n".join(["## Dask scale-out (ntkit.distributed)", "",
                      "`kernel_matvec(RBF, X, Z, v)`: one process with 2 OpenMP threads vs a 2-worker LocalCluster "
                      "(processes, 1 thread each) on the same 2 cores, so the difference is Dask's overhead. The "
                      "cluster start-up is listed apart.", "",
                      "| problem | single process | Dask, 2 workers | overhead | cluster start-up | max rel. diff |",
                      "| --- | --- | --- | --- | --- | --- |", *rows])


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
