"""Spectrally transformed kernel regression (``ntkit.solvers.stkr``) against kernel ridge regression on
the labeled points alone (scikit-learn ``KernelRidge``) and ``sklearn.semi_supervised.LabelSpreading``,
on data where unlabeled points can help; one run, same data for every method.

Data (generated or bundled, nothing downloaded):

* two moons (``make_moons``, noise 0.15), m = 10·n unlabeled points, N = n + m from 110 to 110 000,
  2000 test points; classification error of the argmax of one-hot regressions;
* two moons with n = 10 labels and a growing unlabeled pool (m = 0 … 20 000);
* digits (1797 images, pixels / 16): 20% test, 5% of the rest labeled (72), the rest unlabeled.

Kernel methods share the base kernel RBF(ℓ) (moons ℓ = 0.2, digits ℓ = 0.5) and the ridge
β = 1e-3 of ``(1/n) Σ (f(x_i) − y_i)² + β‖f‖²`` (KernelRidge ``alpha = n·β``). STKR: the inverse
Laplacian ``s(λ) = λ/(1 − ηλ)`` with η = 0.99/λ_max ("auto"), and kernel PCA with d = 16 (moons) /
20 (digits) eigenfunctions. LabelSpreading on a kNN graph (7 neighbours): with its defaults (α = 0.2,
max_iter = 30: a label's mass decays by α per hop, so with few labels most of a large graph stays
unlabeled) and with α = 0.99, max_iter = 1000 (Zhou et al.'s α).
Data float32 for ntkit (float64 for scikit-learn, what it uses). Errors are means over seeds
(several at small N); times are one fit + predict, wall clock, on the machine in the header.

    python benchmarks/bench_stkr.py            # the tables below, and the section of RESULTS.md
    python benchmarks/bench_stkr.py --quick    # N ≤ 11 000
    python benchmarks/bench_stkr.py --large    # also exact STKR (inverse Laplacian) at N = 110 000 (~12 min)
"""

from __future__ import annotations

import pathlib
import sys
import time
import warnings

import numpy as np

from _harness import fmt_s, table

LS_MOONS, LS_DIGITS, RIDGE = 0.2, 0.5, 1e-3
HEADER = "## Spectrally transformed kernel regression (`ntkit.solvers.stkr`)"


def _krr(Xl, Y, Xt, ls):
    from sklearn.kernel_ridge import KernelRidge

    return KernelRidge(alpha=len(Xl) * RIDGE, kernel="rbf", gamma=1 / (2 * ls**2)).fit(Xl, Y).predict(Xt)


def _stkr(Xl, Y, Xu, Xt, ls, **kw):
    from ntkit.kernels import RBF
    from ntkit.solvers import stkr

    res = stkr(RBF(ls), Xl.astype(np.float32), Y.astype(np.float32), Xu.astype(np.float32), ridge=RIDGE,
               random_state=0, **kw)
    return res.predict(Xt.astype(np.float32)), res


def _spread(Xl, yl, Xu, Xt, **kw):
    from sklearn.semi_supervised import LabelSpreading

    with warnings.catch_warnings():  # graph components without a label get NaN label distributions (its warning)
        warnings.simplefilter("ignore", RuntimeWarning)
        m = LabelSpreading(kernel="knn", n_neighbors=7, **kw).fit(np.vstack([Xl, Xu]),
                                                                  np.r_[yl, -np.ones(len(Xu), int)])
        return m.predict(Xt)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _case(Xl, yl, Xu, Xt, yt, ls, d, methods):
    """{method: (error, seconds, note)} for one split."""
    k = int(max(yl.max(), yt.max())) + 1
    Y = np.eye(k)[yl]
    out = {}
    if "krr" in methods:
        P, t = _timed(lambda: _krr(Xl, Y, Xt, ls))
        out["krr"] = (np.mean(P.argmax(1) != yt), t, "")
    if "lap" in methods:
        (P, res), t = _timed(lambda: _stkr(Xl, Y, Xu, Xt, ls))
        out["lap"] = (np.mean(np.asarray(P).argmax(1) != yt), t, f"{res.n_iter} CG it.")
    if "pca" in methods:
        kw = dict(transformation="kernel_pca", n_components=min(d, len(Xl) + len(Xu)))
        if len(Xl) + len(Xu) > 20_000:
            kw.update(maxiter=2, subsample_size=4000)  # Nyström start + 2 Rayleigh–Ritz passes (streamed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "did not converge in maxiter" at the largest size: reported below
            (P, res), t = _timed(lambda: _stkr(Xl, Y, Xu, Xt, ls, **kw))
        note = f"eigen-res. {res.history[-1]:.0e}" if res.history else "exact eigh"
        out["pca"] = (np.mean(np.asarray(P).argmax(1) != yt), t, note)
    if "ls" in methods:
        p, t = _timed(lambda: _spread(Xl, yl, Xu, Xt))
        out["ls"] = (np.mean(p != yt), t, "")
        p, t = _timed(lambda: _spread(Xl, yl, Xu, Xt, alpha=0.99, max_iter=1000))
        out["ls99"] = (np.mean(p != yt), t, "")
    return out


def _moons(N, n, seed, n_test=2000):
    from sklearn.datasets import make_moons

    X, y = make_moons(N + n_test, noise=0.15, random_state=seed)
    rng = np.random.default_rng(seed)
    # labels: at least one of each class among the n labeled points
    order = rng.permutation(N)
    while len(set(y[order[:n]])) < 2:
        order = rng.permutation(N)
    lab, unl = order[:n], order[n:]
    return X[lab], y[lab], X[unl], X[N:], y[N:]


def _mean(rows):
    keys = rows[0].keys()
    return {k: (float(np.mean([r[k][0] for r in rows])), float(np.mean([r[k][1] for r in rows])),
                rows[-1][k][2]) for k in keys}


NAMES = {"krr": "KRR (labels only, sklearn)", "lap": "STKR inverse Laplacian", "pca": "STKR kernel PCA",
         "ls": "LabelSpreading (kNN, defaults)", "ls99": "LabelSpreading (kNN, α = 0.99)"}


def _cell(v):
    err, t, note = v
    return f"{100 * err:.1f}% / {fmt_s(t)}" + (f" ({note})" if note else "")


def moons_ratio(quick, large):
    sizes = [110, 1_100, 11_000] + ([] if quick else [110_000])
    rows = []
    for N in sizes:
        n = N // 11
        seeds = {110: 10, 1_100: 5}.get(N, 1)
        methods = ["krr", "lap", "pca", "ls"]
        if N > 20_000 and not large:
            methods.remove("lap")
        res = _mean([_case(*_moons(N, n, s), LS_MOONS, 16, methods) for s in range(seeds)])
        lap = _cell(res["lap"]) if "lap" in res else "not run (streamed: ≈ 12 min on 2 cores; `--large`)"
        rows.append([f"{N:,}", f"{n:,}", seeds, _cell(res["krr"]), lap, _cell(res["pca"]), _cell(res["ls"]),
                     _cell(res["ls99"])])
    return ("### Two moons, m = 10 n unlabeled: test error / fit + predict time\n\n"
            + table(["N = n + m", "labels n", "seeds", NAMES["krr"], NAMES["lap"], NAMES["pca"], NAMES["ls"],
                     NAMES["ls99"]], rows))


def moons_pool(quick):
    """The same 10 labels and test points for every m (per seed); the unlabeled pool grows."""
    n, pools = 10, [0, 200, 2_000] + ([] if quick else [20_000])
    seeds = 3 if quick else 5
    res = {m: [] for m in pools}
    for s in range(seeds):
        Xl, yl, Xu, Xt, yt = _moons(n + pools[-1], n, 100 + s)
        for m in pools:
            res[m].append(_case(Xl, yl, Xu[:m], Xt, yt, LS_MOONS, 16, ["krr", "lap", "ls"] if m else ["krr", "lap"]))
    rows = []
    for m in pools:
        r = _mean(res[m])
        rows.append([f"{m:,}", _cell(r["krr"]), _cell(r["lap"])]
                    + [_cell(r[k]) if k in r else "—" for k in ("ls", "ls99")])
    return (f"### Two moons, n = 10 labels, growing unlabeled pool m (same labels and test points; {seeds} seeds)\n\n"
            + table(["unlabeled m", NAMES["krr"], NAMES["lap"], NAMES["ls"], NAMES["ls99"]], rows))


def digits(quick):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rows = []
    for s in range(3 if quick else 5):
        rng = np.random.default_rng(s)
        p = rng.permutation(len(X))
        te, tr = p[:360], p[360:]
        n = int(0.05 * len(tr))
        rows.append(_case(X[tr[:n]], y[tr[:n]], X[tr[n:]], X[te], y[te], LS_DIGITS, 20, ["krr", "lap", "pca", "ls"]))
    res = _mean(rows)
    n, m = int(0.05 * 1437), 1437 - int(0.05 * 1437)
    return (f"### Digits, 5% labels (n = {n}, m = {m} unlabeled, 360 test; {len(rows)} splits)\n\n"
            + table(["method", "test error / time"],
                    [[NAMES[k], _cell(res[k])] for k in ("krr", "lap", "pca", "ls", "ls99")]))


def run(quick=False, large=False):
    """The RESULTS.md section (markdown)."""
    t0 = time.perf_counter()
    intro = ("STKR regresses with K_s = Σ s(λ_i) ψ_i ψ_iᵀ, the eigenpairs estimated from labeled + unlabeled "
             "points (Zhai et al., ICLR 2024); see `benchmarks/bench_stkr.py` for the data and settings (RBF base "
             f"kernel ℓ = {LS_MOONS} on moons, {LS_DIGITS} on digits, ridge β = {RIDGE}; η = 0.99/λ_max; "
             "LabelSpreading on a 7-NN graph with its defaults and with α = 0.99, max_iter = 1000). Cells: test "
             "error / fit + predict time. STKR's exact solve forms the Gram matrix once when it fits half the "
             "memory budget (N ≤ 11 000 here) and streams K v products otherwise; kernel PCA at N = 110 000 is a "
             "Nyström start (4000-point subsample) refined by two streamed Rayleigh–Ritz passes, its eigen-residual "
             "in the cell.")
    parts = [HEADER, "", intro, "", moons_ratio(quick, large), "", moons_pool(quick), "", digits(quick), ""]
    parts += [f"Benchmark time: {time.perf_counter() - t0:.0f} s{' (quick mode)' if quick else ''}"
              f"{' (with --large)' if large else ''}.", ""]
    return "\n".join(parts)


def write_section(text, path=None):
    """Put the section into RESULTS.md: replace an earlier version of it, else insert it after the kernel
    solvers' section (where ``run_all.py`` places it)."""
    path = pathlib.Path(path or pathlib.Path(__file__).with_name("RESULTS.md"))
    old = path.read_text() if path.exists() else ""
    lines = old.splitlines()
    body = text.rstrip("\n").splitlines()
    if HEADER in lines:
        i = lines.index(HEADER)
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        lines[i:j] = body + [""]
    else:
        solvers = next((k for k, line in enumerate(lines) if line.startswith("## Kernel solvers")), None)
        j = len(lines) if solvers is None else next(
            (k for k in range(solvers + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        lines[j:j] = body + [""]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")
    return path


if __name__ == "__main__":
    section = run("--quick" in sys.argv, "--large" in sys.argv)
    print(section)
    if "--no-write" not in sys.argv:
        print(f"wrote {write_section(section)}")
