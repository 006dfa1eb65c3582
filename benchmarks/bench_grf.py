"""Graph random features (ntkit.graphs) against the exact dense graph kernel, same graphs, one run.

Peer: the exact kernel from a dense eigendecomposition / inverse (what a user without GRFs
computes; O(N³) time, O(N²) memory). Rows: error vs walks per node (i.i.d., antithetic,
repelling) on three graph families; time and memory vs the dense kernel at N = 2 000 and
5 000; walk throughput with 1 and 2 threads; a 1 000 000-node graph; GraphKernelRidge vs
exact kernel ridge on a 5 000-node graph. Convergence plot: benchmarks/grf_convergence.png.
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np
import scipy.sparse as sp

from _harness import fmt_s, peak_memory_subprocess


def _graphs(n):
    import networkx as nx

    def csr(G):
        return nx.to_scipy_sparse_array(nx.convert_node_labels_to_integers(G), format="csr").astype(np.float64)

    side = int(round(np.sqrt(n)))
    return {"Erdős–Rényi (p = 8/N)": csr(nx.erdos_renyi_graph(n, 8.0 / n, seed=0)),
            "Barabási–Albert (m = 3)": csr(nx.barabasi_albert_graph(n, 3, seed=0)),
            f"2-D mesh ({side}×{side})": csr(nx.grid_2d_graph(side, side))}


def convergence(quick):
    from ntkit.graphs import GraphRandomFeatures, exact_graph_kernel

    n = 300 if quick else 1000
    walks = [4, 16, 64, 256]
    seeds = 2 if quick else 3
    rows, curves = [], {}
    for gname, W in _graphs(n).items():
        K = exact_graph_kernel(W, sigma=0.5)
        for label, kw in (("i.i.d.", {}), ("antithetic", {"antithetic": True}), ("repelling", {"repelling": True})):
            errs = []
            for m in walks:
                e = [np.linalg.norm(GraphRandomFeatures(n_walks=m, random_state=s, **kw).fit(W).kernel_estimate() - K)
                     / np.linalg.norm(K) for s in range(seeds)]
                errs.append(float(np.mean(e)))
            slope = np.polyfit(np.log(walks), np.log(errs), 1)[0]
            curves[(gname, label)] = errs
            rows.append(f"| {gname} | {label} | " + " | ".join(f"{e:.4f}" for e in errs) + f" | {slope:.2f} |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
        for ax, gname in zip(axes, _graphs(16)):
            key = [k for k in curves if k[0].split(" (")[0] == gname.split(" (")[0]]
            for k in key:
                ax.loglog(walks, curves[k], "o-", label=k[1])
            ax.loglog(walks, curves[key[0]][0] * np.sqrt(walks[0] / np.asarray(walks)), "k--", lw=1, label="∝ 1/√m")
            ax.set_title(key[0][0] if key else gname, fontsize=9)
            ax.set_xlabel("walks per node m")
        axes[0].set_ylabel("relative Frobenius error")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"Regularised Laplacian (σ = 0.5), N = {n}", fontsize=10)
        fig.tight_layout()
        fig.savefig(pathlib.Path(__file__).with_name("grf_convergence.png"), dpi=110)
        plt.close(fig)
    except Exception as exc:  # the table is the result
        print(f"plot skipped: {exc}", file=sys.stderr)
    return n, seeds, rows


_SIZE_CODE = """
import json, sys, time, numpy as np, networkx as nx, scipy.sparse as sp
sys.path.insert(0, {bench!r})
from _rss import RssSampler
n, what = {n}, {what!r}
W = nx.to_scipy_sparse_array(nx.barabasi_albert_graph(n, 3, seed=0), format="csr").astype(np.float64)
t0 = time.perf_counter()
with RssSampler() as rss:
    if what == "exact":
        from ntkit.graphs import exact_graph_kernel
        K = exact_graph_kernel(W, sigma=0.5)
    else:
        from ntkit.graphs import GraphRandomFeatures
        g = GraphRandomFeatures(n_walks=64, repelling=True, random_state=0).fit(W)
        v = g.kernel_matvec(np.ones(n))
print(json.dumps({{"seconds": time.perf_counter() - t0, "mib": rss.extra_mib}}))
"""


def sizes(quick):
    bench = str(pathlib.Path(__file__).parent)
    rows = []
    for n in ([2000] if quick else [2000, 5000]):
        ex = peak_memory_subprocess(_SIZE_CODE.format(bench=bench, n=n, what="exact"))
        gr = peak_memory_subprocess(_SIZE_CODE.format(bench=bench, n=n, what="grf"))
        rows.append(f"| {n:,} | {fmt_s(gr['seconds'])} | {gr['mib']:.0f} MiB | {fmt_s(ex['seconds'])} | "
                    f"{ex['mib']:.0f} MiB | {ex['seconds'] / gr['seconds']:.1f}× |")
    return rows


_THREADS_CODE = """
import json, os, time, numpy as np, scipy.sparse as sp
from ntkit.graphs import GraphRandomFeatures
rng = np.random.default_rng(0)
n, deg = {n}, 10
i = rng.integers(0, n, n * deg // 2); j = rng.integers(0, n, n * deg // 2)
W = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr(); W = ((W + W.T) > 0).astype(np.float64)
W.setdiag(0); W.eliminate_zeros()
g = GraphRandomFeatures(n_walks=16, p_halt=0.2, random_state=0)
g.fit(W)
print(json.dumps({{"steps": g.n_steps_, "seconds": g.fit_seconds_}}))
"""


def throughput(quick):
    import os
    import subprocess

    n = 20_000 if quick else 100_000
    out = {}
    for threads in (1, 2):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        proc = subprocess.run([sys.executable, "-c", _THREADS_CODE.format(n=n)], capture_output=True, text=True,
                              env=env, timeout=1800)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        import json

        out[threads] = json.loads(proc.stdout.strip().splitlines()[-1])
    r1 = out[1]["steps"] / out[1]["seconds"]
    r2 = out[2]["steps"] / out[2]["seconds"]
    return [f"| {n:,} nodes, avg degree 10, 16 walks, p_halt 0.2 | {out[1]['steps']:,} | {r1 / 1e6:.1f} M/s | "
            f"{r2 / 1e6:.1f} M/s | {r2 / r1:.2f}× |"]


_BIG_CODE = """
import json, sys, time, numpy as np, scipy.sparse as sp
sys.path.insert(0, {bench!r})
from _rss import RssSampler
rng = np.random.default_rng(0)
n, deg = {n}, 10
i = rng.integers(0, n, n * deg // 2); j = rng.integers(0, n, n * deg // 2)
W = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr(); W = ((W + W.T) > 0).astype(np.float64)
W.setdiag(0); W.eliminate_zeros()
avg = W.nnz / n
from ntkit.graphs import GraphRandomFeatures
t0 = time.perf_counter()
with RssSampler() as rss:
    g = GraphRandomFeatures(n_walks=16, repelling=True, random_state=0).fit(W)
    v = g.kernel_matvec(np.ones(n), unbiased_diagonal=False)
print(json.dumps({{"seconds": time.perf_counter() - t0, "mib": rss.extra_mib, "nnz": int(g.features_.nnz),
                  "steps": int(g.n_steps_), "avg_degree": avg}}))
"""


def big(quick):
    n = 100_000 if quick else 1_000_000
    r = peak_memory_subprocess(_BIG_CODE.format(bench=str(pathlib.Path(__file__).parent), n=n), timeout=1800)
    return [f"| {n:,} | {r['avg_degree']:.1f} | 16, repelling | {r['steps']:,} | {r['nnz']:,} | {fmt_s(r['seconds'])} | "
            f"{r['mib'] / 1024:.2f} GiB |"]


def ridge(quick):
    import networkx as nx

    from ntkit.graphs import GraphKernelRidge, exact_graph_kernel

    n = 1500 if quick else 5000
    sizes_ = [n // 3, n // 3, n - 2 * (n // 3)]
    P = np.full((3, 3), 4.0 / n) + np.eye(3) * (60.0 / n)
    G = nx.stochastic_block_model(sizes_, P, seed=0)
    W = nx.to_scipy_sparse_array(G, format="csr").astype(np.float64)
    y = np.concatenate([np.full(s, k) for k, s in enumerate(sizes_)])
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(n, n // 10, replace=False))
    test = np.setdiff1d(np.arange(n), train)
    lam = 1e-2
    t0 = time.perf_counter()
    m = GraphKernelRidge(n_walks=256, p_halt=0.2, repelling=True, ridge=lam, random_state=0).fit(W, train, y[train])
    acc = float(np.mean(m.predict(test) == y[test]))
    t_grf = time.perf_counter() - t0
    t0 = time.perf_counter()
    K = exact_graph_kernel(W, sigma=0.5)
    A = np.linalg.solve(K[np.ix_(train, train)] + lam * np.eye(len(train)), np.eye(3)[y[train]])
    acc_exact = float(np.mean(np.argmax(K[np.ix_(test, train)] @ A, 1) == y[test]))
    t_exact = time.perf_counter() - t0
    return [f"| stochastic block model, {n:,} nodes, 3 blocks, 10% labelled | {acc:.4f} ({fmt_s(t_grf)}) | "
            f"{acc_exact:.4f} ({fmt_s(t_exact)}) | {100 * (acc - acc_exact):+.2f} points |"]


def run(quick=False):
    n, seeds, conv = convergence(quick)
    parts = ["## Graph random features (ntkit.graphs)", "",
             f"Relative Frobenius error ‖K̂ − K‖_F/‖K‖_F of the unbiased estimate (two walk sets) against the exact "
             f"regularised Laplacian (I − U)⁻¹, σ = 0.5, p_halt = 0.5, N = {n} nodes, mean of {seeds} seeds; slope "
             "of log error vs log walks (Monte Carlo: −0.5). Plot: `benchmarks/grf_convergence.png`.", "",
             "| graph | walks | m = 4 | m = 16 | m = 64 | m = 256 | slope |",
             "| --- | --- | --- | --- | --- | --- | --- |", *conv, "",
             "Time and peak memory (fresh process): GRF (64 repelling walks per node, features + one K̂v) vs the "
             "exact dense kernel (eigendecomposition), Barabási–Albert graphs (m = 3).", "",
             "| N | GRF time | GRF memory | exact time | exact memory | speed-up |",
             "| --- | --- | --- | --- | --- | --- |", *sizes(quick), "",
             "Walk throughput (C++ sampler, counter-based RNG; OMP_NUM_THREADS = 1 vs 2, same features).", "",
             "| graph | walk steps | 1 thread | 2 threads | scaling |", "| --- | --- | --- | --- | --- |",
             *throughput(quick), "",
             "A large sparse random graph featurised (fresh process; peak memory above the graph itself; includes "
             "one K̂v).", "",
             "| nodes | average degree | walks | walk steps | nnz(Φ) | time | peak memory |",
             "| --- | --- | --- | --- | --- | --- | --- |", *big(quick), "",
             "GraphKernelRidge (256 repelling walks, p_halt 0.2, CG on the sparse features) vs exact kernel ridge "
             "with the same kernel and ridge (1e-2): test accuracy on the unlabelled nodes.", "",
             "| task | GRF accuracy (time) | exact accuracy (time) | difference |", "| --- | --- | --- | --- |",
             *ridge(quick)]
    return "\n".join(parts)


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
