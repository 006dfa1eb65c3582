"""Random features (ntkit.features) against scikit-learn's kernel approximations, same data, one run.

Peers: ``sklearn.kernel_approximation.RBFSampler`` (random Fourier features, cos(Wx + b)),
``Nystroem`` (uniform landmarks) and ``PolynomialCountSketch`` (tensor sketch). Error is the
relative Frobenius error ‖K − ΦΦᵀ‖_F / ‖K‖_F on a 2 000-point subset against the exact
kernel (random Fourier maps: mean of 10 seeds; Nyström: the timed fit's landmarks); time is
fit + transform of all n points (best of 2 for the small cases, one run for the largest). Error-vs-time curves are saved to benchmarks/features_error_time.png.
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

from _harness import fmt_s


def _data(n, d, seed=0):
    """A Gaussian mixture with clusters of very different sizes (unit-variance features)."""
    rng = np.random.default_rng(seed)
    k = 20
    sizes = rng.dirichlet(np.full(k, 0.3)) * n
    sizes = np.maximum(1, np.round(sizes)).astype(int)
    sizes[-1] += n - sizes.sum()
    centers = 2.0 * rng.normal(size=(k, d))
    X = np.vstack([c + rng.normal(size=(max(s, 0), d)) for c, s in zip(centers, sizes)])
    X = X[rng.permutation(len(X))][:n]
    return (X - X.mean(0)) / X.std(0)


def _timed(fn, repeats):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _err(F, K):
    return float(np.linalg.norm(F @ F.T - K) / np.linalg.norm(K))


def curves(quick):
    from sklearn.kernel_approximation import Nystroem as SkNystroem
    from sklearn.kernel_approximation import RBFSampler

    from ntkit.features import Nystroem, RandomFourierFeatures
    from ntkit.kernels import RBF

    n = 10_000 if quick else 100_000
    d = 20
    X = _data(n, d)
    sub = X[:2000]
    ls = float(np.sqrt(d))
    gamma = 1.0 / (2 * ls * ls)
    K = RBF(ls)(sub)
    Ds = [250, 500, 1000, 2000]
    methods = {
        "sklearn RBFSampler": lambda D: RBFSampler(gamma=gamma, n_components=D, random_state=0),
        "ntkit RFF": lambda D: RandomFourierFeatures(lengthscale=ls, n_components=D, random_state=0),
        "ntkit RFF orthogonal": lambda D: RandomFourierFeatures(lengthscale=ls, n_components=D, orthogonal=True,
                                                                random_state=0),
        "sklearn Nystroem": lambda D: SkNystroem(gamma=gamma, n_components=D, random_state=0),
        "ntkit Nystroem": lambda D: Nystroem(RBF(ls), n_components=D, random_state=0),
        "ntkit Nystroem rls": lambda D: Nystroem(RBF(ls), n_components=D, sampling="rls", random_state=0),
    }
    res = {}
    for name, make in methods.items():
        for D in Ds:
            if quick and D > 1000:
                continue
            reps = 1 if (D >= 1000 and "Nystroem" in name) or n >= 100_000 else 2
            fitted = []
            t, _ = _timed(lambda: fitted.append(make(D).fit(X)) or fitted[-1].transform(X), reps)
            if "Nystroem" in name:  # the landmarks come from X: the error of the timed fit (one seed)
                errs = [_err(fitted[-1].transform(sub), K)]
            else:  # data-independent maps: the error over 10 seeds (the map's randomness; the subset is fixed)
                errs = [_err(make(D).set_params(random_state=s).fit(sub).transform(sub), K) for s in range(10)]
            res[(name, D)] = (t, float(np.mean(errs)))
    rows = []
    for D in Ds:
        if ("ntkit RFF", D) not in res:
            continue
        sk_t, sk_e = res[("sklearn RBFSampler", D)]
        for name in ("ntkit RFF", "ntkit RFF orthogonal"):
            t, e = res[(name, D)]
            rows.append(f"| RFF, D = {D} | {name} | {fmt_s(t)} | {e:.4f} | {fmt_s(sk_t)} | {sk_e:.4f} | "
                        f"{t / sk_t:.2f} | {e / sk_e:.2f} |")
        sk_t, sk_e = res[("sklearn Nystroem", D)]
        for name in ("ntkit Nystroem", "ntkit Nystroem rls"):
            t, e = res[(name, D)]
            rows.append(f"| Nyström, D = {D} | {name} | {fmt_s(t)} | {e:.4f} | {fmt_s(sk_t)} | {sk_e:.4f} | "
                        f"{t / sk_t:.2f} | {e / sk_e:.2f} |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name in methods:
            pts = sorted((res[(name, D)] for D in Ds if (name, D) in res))
            ax.loglog([p[0] for p in pts], [p[1] for p in pts], "o-" if "ntkit" in name else "s--", label=name)
        ax.set_xlabel("fit + transform time (s)")
        ax.set_ylabel("relative Frobenius error")
        ax.set_title(f"RBF kernel, n = {n:,}, d = {d}, float64")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(pathlib.Path(__file__).with_name("features_error_time.png"), dpi=110)
        plt.close(fig)
    except Exception as exc:  # the table is the result; the plot is a convenience
        print(f"plot skipped: {exc}", file=sys.stderr)
    return n, rows


def structured(quick):
    from ntkit.features import RandomFourierFeatures

    n = 2000 if quick else 10_000
    rows = []
    for dt in (np.float32, np.float64):
        X = np.random.default_rng(1).normal(size=(n, 784)).astype(dt)
        dense = RandomFourierFeatures(lengthscale=28.0, n_components=8192, random_state=0)
        struct = RandomFourierFeatures(lengthscale=28.0, n_components=8192, structured=True, random_state=0)
        td, _ = _timed(lambda: dense.fit(X).transform(X), 3)
        ts, _ = _timed(lambda: struct.fit(X).transform(X), 3)
        tdt, _ = _timed(lambda: dense.transform(X), 3)
        tst, _ = _timed(lambda: struct.transform(X), 3)
        sub = X[:1000].astype(np.float64)
        from ntkit.kernels import RBF

        K = RBF(28.0)(sub)
        ed = _err(dense.transform(sub.astype(dt)).astype(np.float64), K)
        es = _err(struct.transform(sub.astype(dt)).astype(np.float64), K)
        rows.append(f"| {np.dtype(dt).name} | {fmt_s(td)} | {fmt_s(ts)} | {td / ts:.1f}× | {tdt / tst:.1f}× | "
                    f"{ed:.4f} | {es:.4f} |")
    return n, rows


def sketches(quick):
    from sklearn.kernel_approximation import PolynomialCountSketch

    from ntkit.features import NTKRandomFeatures
    from ntkit.kernels import ReluNTK

    n = 10_000 if quick else 100_000
    X = _data(n, 20)
    sub = X[:2000]
    rows = []
    D = 2000
    tp, _ = _timed(lambda: PolynomialCountSketch(degree=2, gamma=1 / 20, coef0=1, n_components=D,
                                                  random_state=0).fit(X).transform(X), 1)
    Kp = (sub @ sub.T / 20 + 1) ** 2
    ep = _err(PolynomialCountSketch(degree=2, gamma=1 / 20, coef0=1, n_components=D, random_state=0).fit(X)
              .transform(sub), Kp)
    tn, _ = _timed(lambda: NTKRandomFeatures(depth=1, n_components=D, random_state=0).fit(X).transform(X), 1)
    Kn = ReluNTK(depth=1)(sub)
    en = _err(NTKRandomFeatures(depth=1, n_components=D, random_state=0).fit(X).transform(sub), Kn)
    rows.append(f"| sklearn PolynomialCountSketch (degree 2) | polynomial (xᵀz/20 + 1)² | {fmt_s(tp)} | {ep:.4f} |")
    rows.append(f"| ntkit NTKRandomFeatures (depth 1, tensor sketch) | ReluNTK(depth=1) | {fmt_s(tn)} | {en:.4f} |")
    return n, rows


def run(quick=False):
    n, rows = curves(quick)
    ns, srows = structured(quick)
    nk, krows = sketches(quick)
    parts = ["## Random features (ntkit.features)", "",
             f"RBF kernel (lengthscale √d), n = {n:,} × d = 20 (Gaussian mixture with unequal clusters), float64. "
             "Time: fit + transform of all n points; error: relative Frobenius error on a 2 000-point subset (random "
             "Fourier maps: mean of 10 seeds; Nyström: the timed fit). Ratios < 1 favour ntkit. Curves: `benchmarks/features_error_time.png`.", "",
             "| case | ntkit method | ntkit time | ntkit error | sklearn time | sklearn error | time ratio | "
             "error ratio |", "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows, "",
             f"Structured (Hadamard) vs dense random Fourier features, n = {ns:,}, d = 784, D = 8192 "
             "(fit + transform; error on 1 000 points).", "",
             "| dtype | dense | structured | speed-up | speed-up (transform only) | dense error | structured error |",
             "| --- | --- | --- | --- | --- | --- | --- |", *srows, "",
             f"Tensor sketches, n = {nk:,} × 20, D = 2000, float64 (different kernels: each error is against its "
             "own exact kernel).", "",
             "| method | kernel | fit + transform | error |", "| --- | --- | --- | --- |", *krows]
    return "\n".join(parts)


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
