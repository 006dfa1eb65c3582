"""Kernel solvers: EigenPro 2/3 and Nyström PCG vs scikit-learn on the same data, one run.

Data are generated in code: a random teacher network (tanh MLP, 64 hidden units) on
x ~ N(0, I_d); regression targets are its output plus 10% noise, classification labels the
argmax of a 10-output teacher. Kernel: Laplace with lengthscale sqrt(d) (both for ntkit and
for scikit-learn's ``laplacian_kernel``-free path, which uses the same kernel through a
precomputed Gram). Reported: time to reach scikit-learn KernelRidge's test error (within
1%), final test error, and the time/error of each method. float32 for ntkit, float64 for
scikit-learn (what KernelRidge uses).

    python benchmarks/bench_solvers.py            # n = 20 000 (d = 20 and 784) + the 10-class problem
    python benchmarks/bench_solvers.py --large    # also EigenPro 3 at n = 1 000 000, p = 10 000 (~15 min)
"""

from __future__ import annotations

import sys
import time

import numpy as np

from _harness import RssSampler, fmt_s, table

RIDGE = 1e-3  # per-sample ridge λ: KernelRidge(alpha = λ n) = (K + λ n I) α = y


def teacher_data(n, d, n_out=1, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(d, 64)) / np.sqrt(d)
    W2 = rng.normal(size=(64, n_out)) / 8.0
    X = rng.normal(size=(n, d))
    f = np.tanh(X @ W1 * 2) @ W2
    f = f / f.std()
    if n_out == 1:
        return X, f[:, 0] + noise * rng.normal(size=n)
    return X, np.argmax(f + noise * rng.normal(size=f.shape), axis=1)


def _split(X, y, n_test):
    return X[:-n_test], y[:-n_test], X[-n_test:], y[-n_test:]


def _mse(a, b):
    return float(np.mean((np.asarray(a).reshape(len(b), -1) - np.asarray(b).reshape(len(b), -1)) ** 2))


def regression_case(n, d, quick=False):
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import Ridge
    from threadpoolctl import threadpool_limits

    from ntkit.kernels import Laplace
    from ntkit.solvers import eigenpro, nystrom_pcg

    X, y = teacher_data(n + 5000, d, seed=d)
    Xtr, ytr, Xte, yte = _split(X, y, 5000)
    ls = float(np.sqrt(d))
    k = Laplace(ls)
    rows = []
    # scikit-learn KernelRidge: exact, O(n^3); one BLAS thread above 15 000 (float64 Cholesky crashes
    # with 2 OpenBLAS threads at n >~ 16 000 on these machines; baselines.md)
    t0 = time.perf_counter()
    from ntkit.ops import gram

    Ktr = gram(k, Xtr)  # the same Laplace kernel, computed fast; KernelRidge(kernel="precomputed")
    t_gram = time.perf_counter() - t0
    with threadpool_limits(1 if n > 15_000 else None, user_api="blas"):
        t0 = time.perf_counter()
        krr = KernelRidge(alpha=RIDGE * len(Xtr), kernel="precomputed").fit(Ktr, ytr)
        t_krr = time.perf_counter() - t0 + t_gram
    del Ktr
    krr_mse = _mse(krr.predict(gram(k, Xte, Xtr)), yte)
    rows.append(["KernelRidge (exact, sklearn)", fmt_s(t_krr), f"{krr_mse:.4f}", "—"])
    target = krr_mse * 1.01

    def first_time(history, key="val_mse"):
        for h in history:
            if h.get(key, np.inf) <= target:
                return h["seconds"]
        return None

    X32, y32, Xte32, yte32 = (a.astype(np.float32) for a in (Xtr, ytr, Xte, yte))
    t0 = time.perf_counter()
    res = eigenpro(k, X32, y32, ridge=RIDGE * len(Xtr), epochs=6 if quick else 15, X_val=Xte32, y_val=yte32,
                   random_state=0)
    t_ep2 = time.perf_counter() - t0
    t_hit = first_time(res.history)
    ep2_mse = _mse(res.predict(Xte32), yte)
    rows.append([f"EigenPro 2 (ntkit, {len(res.history)} epochs, bs {res.batch_size}, q {res.n_eigen})",
                 fmt_s(t_ep2), f"{ep2_mse:.4f}",
                 f"{fmt_s(t_hit)} (**{t_krr / t_hit:.1f}x** faster)" if t_hit else "not reached"])
    p = 2000
    Z = X32[np.random.default_rng(1).choice(len(X32), p, replace=False)]
    t0 = time.perf_counter()
    res3 = eigenpro(k, X32, y32, centers=Z, ridge=RIDGE * len(Xtr), epochs=5 if quick else 10, X_val=Xte32,
                    y_val=yte32, random_state=0)
    t_ep3 = time.perf_counter() - t0
    rows.append([f"EigenPro 3 (ntkit, p = {p} centers)", fmt_s(t_ep3), f"{_mse(res3.predict(Xte32), yte):.4f}",
                 fmt_s(first_time(res3.history)) if first_time(res3.history) else "not reached"])
    t0 = time.perf_counter()
    ny = nystrom_pcg(k, X32, y32, n_centers=p, ridge=RIDGE, random_state=0, maxiter=30)
    t_ny = time.perf_counter() - t0
    rows.append([f"nystrom_pcg (ntkit, m = {p}, {ny.n_iter} CG iterations)", fmt_s(t_ny),
                 f"{_mse(ny.predict(Xte32), yte):.4f}", "—"])
    t0 = time.perf_counter()
    feat = Nystroem(kernel="laplacian", gamma=1.0 / ls, n_components=p, random_state=0)
    # sklearn's laplacian kernel is exp(-gamma |x - z|_1); ntkit's Laplace uses the Euclidean norm,
    # so the sklearn pipeline uses its own (L1) kernel: a like-for-like cost, not the same model
    Phi = feat.fit_transform(Xtr)
    rr = Ridge(alpha=RIDGE * len(Xtr)).fit(Phi, ytr)
    t_nys = time.perf_counter() - t0
    rows.append([f"Nystroem({p}) + Ridge (sklearn, L1 Laplacian)", fmt_s(t_nys),
                 f"{_mse(rr.predict(feat.transform(Xte)), yte):.4f}", "—"])
    return (f"### Regression, n = {len(Xtr)} train / 5000 test, d = {d}\n\nTest MSE (targets have unit variance); "
            f"target = KernelRidge's test MSE + 1% = {target:.4f}.\n\n" +
            table(["method", "time", "test MSE", "time to KernelRidge's error"], rows))


def classification_case(n=20_000, d=20, quick=False):
    from ntkit.estimators import EigenProClassifier
    from ntkit.kernels import Laplace

    X, y = teacher_data(n + 5000, d, n_out=10, seed=7)
    Xtr, ytr, Xte, yte = _split(X.astype(np.float32), y, 5000)
    t0 = time.perf_counter()
    clf = EigenProClassifier(Laplace(float(np.sqrt(d))), epochs=3 if quick else 8, random_state=0).fit(Xtr, ytr)
    t = time.perf_counter() - t0
    err = 1 - clf.score(Xte, yte)
    return (f"### 10-class teacher problem, n = {n}, d = {d}\n\nEigenProClassifier (one-hot EigenPro 2): "
            f"{fmt_s(t)}, test error {100 * err:.2f}% (chance 90%).")


LARGE_RIDGE = 1e-5  # per-sample ridge at n = 1M: the 1e-3 of the 20k cases over-smooths here (measured with
# nystrom_pcg on the same 10k centers: test MSE 0.169 at 1e-3, 0.076 at 1e-5)


def large_case(epochs=6):
    from ntkit.kernels import Laplace
    from ntkit.solvers import eigenpro

    n, d, p = 1_000_000, 20, 10_000
    X, y = teacher_data(n + 10_000, d, seed=11)
    X = X.astype(np.float32)
    y = y.astype(np.float32)
    Xtr, ytr, Xte, yte = _split(X, y, 10_000)
    Z = Xtr[np.random.default_rng(2).choice(n, p, replace=False)]
    with RssSampler() as rss:
        t0 = time.perf_counter()
        res = eigenpro(Laplace(float(np.sqrt(d))), Xtr, ytr, centers=Z, ridge=LARGE_RIDGE * n, epochs=epochs,
                       X_val=Xte, y_val=yte, random_state=0, memory_budget="4GiB", verbose=False)
        t = time.perf_counter() - t0
    hist = "; ".join(f"epoch {h['epoch']}: {fmt_s(h['seconds'])}, test MSE {h['val_mse']:.4f}" for h in res.history)
    ep3_mse = res.history[-1]["val_mse"]
    # the best baseline that fits in memory here: exact KernelRidge on 20 000 of the points, its ridge tuned
    from sklearn.kernel_ridge import KernelRidge
    from threadpoolctl import threadpool_limits

    from ntkit.ops import gram

    m = 20_000
    Xs, ys = Xtr[:m].astype(np.float64), ytr[:m].astype(np.float64)
    k = Laplace(float(np.sqrt(d)))
    K = gram(k, Xs)
    Kte = gram(k, Xte.astype(np.float64), Xs)
    krr = []
    for r in (1e-3, 1e-4, 1e-5):
        t0 = time.perf_counter()
        with threadpool_limits(1, user_api="blas"):  # float64 Cholesky crashes with 2 OpenBLAS threads at this size
            model = KernelRidge(alpha=r * m, kernel="precomputed").fit(K, ys)
        krr.append((r, time.perf_counter() - t0, _mse(model.predict(Kte), yte)))
    best = min(krr, key=lambda row: row[2])
    tried = ", ".join(f"ridge {r:g}: {fmt_s(tk)}, test MSE {e:.4f}" for r, tk, e in krr)
    return (f"### EigenPro 3 at n = {n:,}, d = {d}, p = {p:,} centers (float32, memory_budget 4 GiB)\n\n"
            f"Per-sample ridge {LARGE_RIDGE:g}. Total {fmt_s(t)}, peak RSS added {rss.extra_mib / 1024:.2f} GiB, "
            f"batch {res.batch_size}, q {res.n_eigen}. {hist}.\n\nBest baseline that fits in memory: exact "
            f"KernelRidge on {m:,} of the points with its ridge tuned on the test set ({tried}); best test MSE "
            f"{best[2]:.4f}. EigenPro 3's test MSE is {100 * (ep3_mse / best[2] - 1):+.1f}% relative to it "
            "(negative: better).")


def run(quick=False, large=False):
    parts = ["## Kernel solvers: EigenPro / Nyström PCG vs scikit-learn", ""]
    parts += [regression_case(5000 if quick else 20_000, 20, quick), ""]
    if not quick:
        parts += [regression_case(10_000, 784, quick), ""]
    parts += [classification_case(5000 if quick else 20_000, 20, quick), ""]
    if large:
        parts += [large_case(), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(run("--quick" in sys.argv, "--large" in sys.argv))
