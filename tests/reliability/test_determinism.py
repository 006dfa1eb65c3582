"""Same seed -> bit-identical results, across runs and across thread counts, on CPU.

Every random thing in ntkit that takes a ``random_state`` (or a JAX key) is run, with the same
seed, in three fresh interpreters started side by side: one limited to 1 thread and two to 2
threads (OpenMP, OpenBLAS and XLA: ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``XLA_FLAGS``
in the environment, plus ``threadpoolctl.threadpool_limits`` inside). Covered: the random
features (``RandomFourierFeatures`` dense / orthogonal / structured (native Hadamard) / large
enough for the threaded trig pool, ``PositiveRandomFeatures``, ``ArcCosineFeatures``,
``NTKRandomFeatures``, ``UniversalRandomFeatures``), ``Nystroem`` (uniform and ridge-leverage
sampling), ``GraphRandomFeatures`` (native and numpy walks; plain, antithetic, repelling) and
``GraphKernelRidge``, ``eigenpro`` (EigenPro 2 and 3), ``nystrom_pcg``, ``top_eigensystem``
(randomized), ``EigenProRegressor``, ``SketchedKONS``, ``regret_curve`` (Nyström comparator),
``estimate_spectrum`` (Nyström), ``simulate_risk``, ``empirical_ntk(kind="projected", key=...)``
and ``NTKSurrogate(kind="projected")``, plus dense linear algebra on seeded data (numpy-backend
``gram`` / ``kernel_matvec``, the blocked Cholesky). (``ntkit.distributed`` is left to its own tests: a Dask
cluster per run would double this file's time.)

* Repeated runs with the same thread count (the two 2-thread runs, whose threads are scheduled
  differently): bitwise equal (``np.array_equal``), always.
* 1 thread vs 2 threads: bitwise equal, always. OpenBLAS's own GEMM/GEMV change their last bits
  with the thread count (measured: ``(300, 20) @ (20, 256)`` by 5e-15), so ntkit's dense products
  go through ``ntkit._blas.matmul`` (fixed tiles, each a one-thread BLAS call), LAPACK runs on one
  thread, and the random draws never depend on threads (numpy Generators seeded from
  ``random_state``, counter-based hashes in the native walks). Before ``matmul``, arc-cosine and
  NTK features differed by 3e-16 relative, EigenPro 3 by 5e-15 and ``top_eigensystem`` by 5e-14.
* Another seed gives other results for every item (the equalities are not vacuous).

Runtime: ~15 s on an idle 2-core machine (three interpreters, each importing jax and compiling
the projected eNTK once).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ._graphs import ring_plus_random

ROOT = Path(__file__).resolve().parents[2]
SEED = 1234

def _graph(n=400, seed=0):
    return ring_plus_random(n, seed)


def _compute(timings, seed=SEED):
    """Everything random in ntkit, with fixed seeds; returns name -> ndarray."""
    import jax

    from ntkit import features as F
    from ntkit.estimators import EigenProRegressor
    from ntkit.explain import NTKSurrogate
    from ntkit.graphs import GraphKernelRidge, GraphRandomFeatures
    from ntkit.kernels import RBF, Laplace, Matern
    from ntkit.ntk import empirical_ntk
    from ntkit.ntk.models import mlp
    from ntkit.online import SketchedKONS, regret_curve
    from ntkit.solvers import eigenpro, nystrom_pcg, top_eigensystem
    from ntkit.theory import estimate_spectrum, power_law, profiles, simulate_risk

    data = np.random.default_rng(0)
    X = data.normal(size=(300, 6))
    X20 = data.normal(size=(200, 20))
    y = np.sin(X[:, 0]) + 0.1 * data.normal(size=300)
    out = {}

    def rec(name, fn):
        t0 = time.perf_counter()
        res = fn()
        timings[name] = time.perf_counter() - t0
        res = res if isinstance(res, (tuple, list)) else (res,)
        for i, r in enumerate(res):
            out[f"{name}#{i}"] = np.asarray(r)

    rec("features.rff", lambda: F.RandomFourierFeatures(n_components=301, lengthscale=1.5, random_state=seed)
        .fit_transform(X))
    # 4000 x 600 outputs: the cosines and sines are computed on a thread pool (rows split between threads)
    rec("features.rff_thread_pool", lambda: F.RandomFourierFeatures(n_components=600, random_state=seed)
        .fit(X).transform(np.tile(X, (14, 1))[:4000]))
    rec("features.rff_orthogonal_laplace", lambda: F.RandomFourierFeatures(
        "laplace", n_components=200, orthogonal=True, random_state=seed).fit_transform(X))
    rec("features.rff_structured_matern", lambda: F.RandomFourierFeatures(
        "matern", nu=2.5, n_components=256, structured=True, random_state=seed).fit_transform(X20))
    rec("features.positive", lambda: F.PositiveRandomFeatures(64, random_state=seed).fit_transform(0.3 * X))
    rec("features.hyperbolic_gaussian", lambda: F.PositiveRandomFeatures(
        64, kernel="gaussian", kind="hyperbolic", random_state=seed).fit_transform(0.3 * X))
    rec("features.arccos", lambda: F.ArcCosineFeatures(1, depth=2, n_components=128, random_state=seed)
        .fit_transform(X))
    rec("features.ntk", lambda: F.NTKRandomFeatures(2, n_components=256, random_state=seed).fit_transform(X))
    rec("features.universal_exp", lambda: F.UniversalRandomFeatures("exp", n_components=128, random_state=seed)
        .fit(0.3 * X).transform(0.3 * X))
    rec("features.universal_relu", lambda: F.UniversalRandomFeatures("relu", n_components=128, random_state=seed)
        .fit(0.3 * X).transform(0.3 * X))
    rec("features.nystroem_uniform", lambda: F.Nystroem(RBF(1.5), n_components=40, random_state=seed)
        .fit_transform(X))
    rec("features.nystroem_rls", lambda: F.Nystroem(Laplace(2.0), n_components=40, sampling="rls",
                                                    random_state=seed).fit_transform(X))

    W = _graph()
    v = data.normal(size=W.shape[0])
    for backend in ("native", "numpy"):
        for mode, kw in (("plain", {}), ("antithetic", {"antithetic": True}), ("repelling", {"repelling": True})):
            def grf(backend=backend, kw=kw):
                g = GraphRandomFeatures(n_walks=8, backend=backend, random_state=seed, **kw).fit(W)
                Phi = g.features_
                return Phi.indptr, Phi.indices, Phi.data, g.kernel_matvec(v)
            if backend == "native":
                try:
                    import ntkit_native

                    if not ntkit_native.is_available():
                        continue
                except ImportError:
                    continue
            rec(f"graphs.grf_{backend}_{mode}", grf)
    nodes = np.arange(0, W.shape[0], 3)
    rec("graphs.ridge", lambda: GraphKernelRidge(n_walks=8, random_state=seed)
        .fit(W, nodes, np.cos(nodes / 40.0)).decision_function())

    rec("solvers.eigenpro2", lambda: eigenpro(RBF(1.5), X, y, epochs=2, random_state=seed).weights)
    rec("solvers.eigenpro3", lambda: eigenpro(Matern(1.5), X, y, centers=X[:60], epochs=2,
                                              random_state=seed).weights)
    rec("solvers.nystrom_pcg", lambda: nystrom_pcg(RBF(1.5), X, y, n_centers=50, random_state=seed).weights)
    rec("solvers.top_eigensystem", lambda: top_eigensystem(RBF(1.5), X, 8, method="randomized",
                                                           random_state=seed)[:2])
    rec("estimators.eigenpro", lambda: EigenProRegressor(epochs=2, random_state=seed).fit(X, y).predict(X))
    rec("online.sketched_kons", lambda: (lambda m: (m.predict(X[:20]), m.cumulative_loss_))(
        SketchedKONS(RBF(1.5), random_state=seed).fit(X[:120], y[:120])))
    rec("online.regret_curve", lambda: regret_curve(SketchedKONS(RBF(1.5), random_state=seed), X[:150], y[:150],
                                                    max_exact=50, n_centers=30, random_state=seed).regret)
    rec("theory.estimate_spectrum", lambda: tuple(estimate_spectrum(RBF(1.5), X, y, method="nystrom",
                                                                    n_components=50, random_state=seed)[:2]))
    lam, c = power_law(40, 1.5, 1.2)
    rec("theory.simulate_risk", lambda: tuple(simulate_risk(lam, c, [10, 20], profile=profiles.krr(1e-2), noise=0.1,
                                                            n_trials=3, random_state=seed)[:2]))

    # dense linear algebra on seeded data: numpy-backend Gram blocks and matvecs (X Zᵀ with 24
    # features: OpenBLAS's own product differs between 1 and 2 threads), the blocked Cholesky
    # (its trailing updates are GEMMs) and a jittered solve
    from ntkit import _linalg
    from ntkit.ops import gram, kernel_matvec

    drng = np.random.default_rng(seed)
    Xw, Zw, vw = drng.normal(size=(700, 24)), drng.normal(size=(500, 24)), drng.normal(size=(500, 3))
    rec("linalg.gram_numpy", lambda: gram(RBF(3.0), Xw, Zw, backend="numpy"))
    rec("linalg.matvec_numpy", lambda: kernel_matvec(Laplace(2.0), Xw, Zw, vw, backend="numpy",
                                                     memory_budget="256KiB"))
    rec("linalg.blocked_cholesky", lambda: _linalg.cholesky(gram(RBF(4.0), drng.normal(size=(1500, 24)),
                                                                 backend="numpy") + 1e-6 * np.eye(1500),
                                                            block=512)[0])

    init, apply = mlp((6, 16, 3))
    params = init(jax.random.PRNGKey(0))
    xs = X[:40].astype(np.float32)
    rec("ntk.projected", lambda: empirical_ntk(apply, params, xs, kind="projected", n_projections=32, key=seed))
    labels = np.argmax(np.asarray(apply(params, xs)), axis=1)
    rec("explain.surrogate_projected", lambda: NTKSurrogate(apply, params, kind="projected", n_projections=32,
                                                            key=seed, machine="ridge").fit(xs, labels)
        .decision_function(xs[:10]))
    return out


def _child(path, threads, other_seed=False):
    from threadpoolctl import threadpool_limits

    timings = {}
    with threadpool_limits(limits=threads):
        out = _compute(timings)
        if other_seed:  # the seed must matter
            out.update({f"other-seed:{k}": v for k, v in _compute({}, SEED + 1).items()})
    np.savez(path, **out)
    print("TIMINGS", sorted(timings.items(), key=lambda kv: -kv[1])[:8])


def _run(path, threads, other_seed=False):
    xla = os.environ.get("XLA_FLAGS", "")
    if threads == 1:
        xla += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), XLA_FLAGS=xla.strip(), JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    code = f"from tests.reliability import test_determinism as t; t._child({str(path)!r}, {threads}, {other_seed})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("determinism")
    # all three side by side (the results must not depend on timing either)
    plan = {"t1": 1, "t2a": 2, "t2b": 2}
    procs = {name: _run(d / f"{name}.npz", th, other_seed=name == "t2a") for name, th in plan.items()}
    outs = {name: p.communicate(timeout=300) for name, p in procs.items()}
    res = {}
    for name, p in procs.items():
        so, se = outs[name]
        assert p.returncode == 0, f"{name} failed:\n{so}\n{se[-4000:]}"
        print(name, so.strip().splitlines()[-1])
        with np.load(d / f"{name}.npz") as z:
            res[name] = {k: z[k] for k in z.files}
    res["other"] = {k.split(":", 1)[1]: v for k, v in res["t2a"].items() if k.startswith("other-seed:")}
    res["t2a"] = {k: v for k, v in res["t2a"].items() if not k.startswith("other-seed:")}
    return res


def test_same_seed_same_thread_count_is_bitwise_identical(runs):
    """Two 2-thread runs, side by side (so their threads' timing differs)."""
    a, b = runs["t2a"], runs["t2b"]
    assert sorted(a) == sorted(b)
    diff = [k for k in a if not (a[k].shape == b[k].shape and np.array_equal(a[k], b[k]))]
    assert not diff, f"same seed, same thread count, different results: {diff}"


def test_same_seed_across_thread_counts(runs):
    a, b = runs["t1"], runs["t2a"]
    assert sorted(a) == sorted(b)
    report = {}
    for k in a:
        if a[k].shape == b[k].shape and np.array_equal(a[k], b[k]):
            continue
        rel = np.max(np.abs(a[k] - b[k])) / max(np.max(np.abs(a[k])), 1e-300) if a[k].shape == b[k].shape else np.inf
        report[k] = f"{rel:.1e}"
    assert not report, f"1 vs 2 threads differ (max relative difference): {report}"


def test_the_seed_is_used(runs):
    """Another seed gives other results (so the equalities above are not vacuous)."""
    a, b = runs["t2a"], runs["other"]
    items = sorted({k.split("#")[0] for k in a})
    same = [it for it in items
            if all(a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in a if k.split("#")[0] == it)]
    assert not same, f"results do not depend on the seed: {same}"
