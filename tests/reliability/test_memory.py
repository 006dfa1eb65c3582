"""Every operation that is quadratic in n honours ``memory_budget``.

Each case runs in a fresh interpreter (a subprocess), at a size whose dense kernel matrix
would need at least 8 GiB (n = m = 32 768 in float64; the (n, n, O, O) float32 eNTK of
n = 32 768 and O = 2: 16 GiB; the node kernel of a 32 768-node graph), under a 1 GiB budget
(the argument, or ``ntkit.config_context``), and measures the peak resident set size
of that process above a baseline taken after the imports, the inputs and a small warm-up call.

The bound checked is

    peak - baseline <= memory_budget + C,    C = C_FIXED + C_LINEAR

* ``C_FIXED`` = 64 MiB: what no budget can plan for -- allocator arenas and per-thread
  caches, OpenMP / BLAS / XLA thread stacks, XLA code and compile scratch for the new
  shapes (a warm-up at the full shape would cost as much as the case itself).
* ``C_LINEAR`` = 8 * (n + m) * (d + t + 1) * itemsize: the O((n + m)(d + t)) data that the
  API documents outside the budget -- prepared (lengthscale-scaled, aligned) copies of X and
  Z, squared norms, the right-hand side and the (n, t) result -- counted 8 times over.
  For n = m = 32 768, d = 4, t = 1 in float64: 24 MiB.

``ntkit.ops.gram`` returns the whole (n, m) matrix, which the budget cannot bound; at the 8 GiB
size it is consumed through ``ntkit.ops.iter_gram_blocks`` (blocks planned from the budget; the
caller holds one block while the next is formed, and ``plan_blocks`` sizes a block to a third of
the budget). A separate test checks that ``gram`` itself needs no more than its result plus the
budget (``peak - baseline <= n*m*itemsize + budget + C``) at a size that fits in memory, and so
does ``GraphRandomFeatures.kernel_estimate``.

Measurement: on Linux the kernel's high-water mark ``VmHWM`` is reset to the current RSS
(``/proc/self/clear_refs`` = 5) right after the baseline and read at the end, so short spikes
are seen; a thread sampling ``VmRSS`` every 50 ms also aborts the child (exit 3) once RSS passes
the bound by 512 MiB, so a regression that materialises the 8 GiB matrix fails fast instead of
exhausting a shared machine. Where the high-water mark cannot be reset, ``ru_maxrss`` (the peak
since process start, an upper bound) is used.

Runtime: ~35 s for the file on an idle 2-core machine. ``iter_gram_blocks`` is consumed for
its first blocks only (4 of 25 native, 2 numpy / jax): the peak is reached from the second
block on (the caller holds block 1 while block 2 is formed), and every block is planned the
same way, while the full 8 GiB sweep costs ~3 s (native, mostly page faults of fresh block
buffers), ~7 s (jax) and ~28 s (numpy). The matvec cases run in full (n * m = 2^30 kernel
evaluations each) except the numpy one, shrunk to 2 GiB dense under 256 MiB (see CASES).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")

MiB = 2**20
GiB = 2**30
BUDGET = 1 * GiB
C_FIXED = 64 * MiB
N = 32_768  # N * N * 8 bytes = 8 GiB
D = 4
ROOT = Path(__file__).resolve().parents[2]


def c_linear(n, m, d, t, itemsize=8):
    return 8 * (n + m) * (d + t + 1) * itemsize


def bound(extra=0, *, n=N, m=N, d=D, t=1, itemsize=8, budget=BUDGET):
    """The documented bound on peak - baseline (``extra``: a result the caller asked for)."""
    return extra + budget + C_FIXED + c_linear(n, m, d, t, itemsize)


# ----------------------------------------------------------------------------- child side
def _status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


class _Peak:
    """Peak RSS above a baseline; aborts the process if RSS runs past ``abort_above``."""

    def __init__(self, abort_above):
        gc.collect()
        self.base = _status("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # VmHWM := current RSS
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.sampled = self.base
        self.abort_above = abort_above
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()

    def _watch(self):
        # coarse on purpose: the exact peak comes from VmHWM, and a thread that wakes every few ms
        # steals the GIL from numpy's many short GIL-releasing calls (measured: 3.7x slower numpy matvec)
        while not self._stop.wait(0.05):
            rss = _status("VmRSS")
            self.sampled = max(self.sampled, rss)
            if rss - self.base > self.abort_above:
                sys.stdout.write("RESULT " + json.dumps({"aborted": True, "delta": rss - self.base}) + "\n")
                sys.stdout.flush()
                os._exit(3)

    def stop(self):
        seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        if self.hwm_reset:
            peak = max(_status("VmHWM"), self.sampled)
        else:  # peak since process start: an upper bound
            peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, self.sampled)
        return {"delta": peak - self.base, "seconds": seconds, "hwm_reset": self.hwm_reset}


def _data(n=N, d=D, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=n)


def _case_matvec(backend, sym=True, operator=False, via_config=False, n=N, budget=BUDGET):
    def run(limit):
        import numpy as np

        import ntkit
        from ntkit.kernels import RBF
        from ntkit.ops import KernelOperator, gram, kernel_matvec

        X, v = _data(n)
        Z = None if sym else _data(n, seed=1)[0]
        k = RBF(1.5)
        kernel_matvec(k, X[:64], None if sym else Z[:64], v[:64], backend=backend, memory_budget=budget)
        probe = _Peak(limit)
        if operator:
            out = KernelOperator(k, X, Z, backend=backend, memory_budget=budget).matvec(v)
        elif via_config:  # the budget from config_context, not the argument
            with ntkit.config_context(memory_budget=budget):
                out = kernel_matvec(k, X, Z, v, backend=backend)
        else:
            out = kernel_matvec(k, X, Z, v, backend=backend, memory_budget=budget)
        res = probe.stop()
        ref = gram(k, X[:3], X if sym else Z, backend="numpy") @ v
        res["ok"] = bool(np.allclose(np.asarray(out)[:3], ref, rtol=1e-9, atol=1e-9))
        return res

    return run


def _case_blocks(backend, max_blocks=None):
    def run(limit):
        import numpy as np

        from ntkit.kernels import RBF
        from ntkit.ops import gram, iter_gram_blocks

        X, _ = _data()
        k = RBF(1.5)
        for _ in iter_gram_blocks(k, X[:64], backend=backend, memory_budget=BUDGET):
            pass
        rowsum = np.zeros(N)
        count = 0
        probe = _Peak(limit)
        for rows, cols, blk in iter_gram_blocks(k, X, backend=backend, memory_budget=BUDGET):
            rowsum[rows] += np.asarray(blk).sum(axis=1)
            count += 1
            if max_blocks is not None and count == max_blocks:
                break
        res = probe.stop()
        res["blocks"] = count
        res["block_shape"] = list(np.shape(blk))
        ref = gram(k, X[:3], X, backend="numpy").sum(axis=1)
        res["ok"] = bool(np.allclose(rowsum[:3], ref, rtol=1e-9))
        return res

    return run


def _case_gram(backend, n, sym=True, budget=128 * MiB):
    def run(limit):
        import numpy as np

        from ntkit.kernels import RBF
        from ntkit.ops import gram

        X, _ = _data(n)
        Z = None if sym else _data(n, seed=1)[0]
        k = RBF(1.5)
        gram(k, X[:64], None if sym else Z[:64], backend=backend, memory_budget=budget)
        probe = _Peak(limit)
        K = gram(k, X, Z, backend=backend, memory_budget=budget)
        res = probe.stop()
        ref = gram(k, X[:3], X if sym else Z, backend="numpy")
        res["ok"] = bool(np.allclose(K[:3], ref, rtol=1e-9, atol=1e-12)) and K.shape == (n, n)
        return res

    return run


def _case_grf_estimate(n, budget):
    def run(limit):
        import numpy as np

        from ntkit.graphs import GraphRandomFeatures

        W, _ = _ring_graph(n)
        grf = GraphRandomFeatures(n_walks=16, random_state=0).fit(W)
        grf.features_b_  # the second walk set, sampled on first use
        probe = _Peak(limit)
        K = grf.kernel_estimate(memory_budget=budget)
        res = probe.stop()
        A, B = grf.features_[:3], grf.features_b_[:3]
        ref = 0.5 * ((A @ grf.features_b_.T).toarray() + (B @ grf.features_.T).toarray())
        res["ok"] = bool(K.shape == (n, n) and np.allclose(K[:3], ref, rtol=1e-12, atol=0))
        return res

    return run


def _case_entk(limit):
    import jax
    import numpy as np

    from ntkit.ntk import NTKOperator, empirical_ntk
    from ntkit.ntk.models import mlp

    init, apply = mlp((D, 16, 2))
    params = init(jax.random.PRNGKey(0))
    x = np.random.default_rng(0).normal(size=(N, D)).astype(np.float32)
    empirical_ntk(apply, params, x[:64], kind="diagonal", memory_budget=BUDGET)
    probe = _Peak(limit)
    # the (n, n, O, O) eNTK would be 16 GiB: its (n, O, O) diagonal, and products with the (n, n) trace eNTK
    diag = empirical_ntk(apply, params, x, kind="diagonal", memory_budget=BUDGET)
    tr = NTKOperator(apply, params, x, kind="trace") @ np.ones(N, np.float32)
    res = probe.stop()
    small = empirical_ntk(apply, params, x[:3], x, kind="trace")
    res["ok"] = bool(diag.shape == (N, 2, 2) and np.allclose(tr[:3], small.sum(axis=1), rtol=1e-3))
    return res


def _ring_graph(n):
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    i = np.arange(n)  # a ring plus 2 random chords per node: degree ~ 6
    rows = np.concatenate([i, i, i])
    cols = np.concatenate([(i + 1) % n, rng.integers(0, n, size=2 * n)])
    W = sp.csr_matrix((np.ones(3 * n), (rows, cols)), shape=(n, n))
    return ((W + W.T) > 0).astype(np.float64), rng.normal(size=n)


def _case_grf(limit):
    import numpy as np

    import ntkit
    from ntkit.graphs import GraphRandomFeatures

    W, v = _ring_graph(N)
    GraphRandomFeatures(random_state=0).fit(W[:64, :64]).kernel_matvec(v[:64])
    probe = _Peak(limit)
    with ntkit.config_context(memory_budget=BUDGET):
        grf = GraphRandomFeatures(n_walks=16, random_state=0).fit(W)
        out = grf.kernel_matvec(v)  # the unbiased estimator: a second walk set
        try:
            grf.kernel_estimate()  # the dense N x N estimate is refused, not attempted
            refused = False
        except MemoryError:
            refused = True
    res = probe.stop()
    res["ok"] = bool(refused and out.shape == (N,) and np.all(np.isfinite(out)))
    return res


def _native():
    try:
        import ntkit_native

        return bool(ntkit_native.is_available())
    except ImportError:
        return False


NATIVE = pytest.mark.skipif(not _native(), reason="ntkit_native not built")

# name -> (child function, bound in bytes, marks)
CASES = {
    "matvec-native": (_case_matvec("native"), bound(), [NATIVE]),
    # shrunk 4x in n*m (2 GiB dense under 256 MiB, the same 8:1 ratio): the numpy reference runs
    # at ~6 ns per kernel entry on one core, ~7-15 s at the full size; its blocks are capped at
    # 32 MiB (MAX_BLOCK_BYTES) whatever the budget, so the smaller size takes the same code path.
    "matvec-numpy": (_case_matvec("numpy", n=N // 2, budget=BUDGET // 4),
                     bound(n=N // 2, m=N // 2, budget=BUDGET // 4), []),
    "matvec-jax-config": (_case_matvec("jax", via_config=True), bound(), []),
    "operator-native-cross": (_case_matvec("native", sym=False, operator=True), bound(), [NATIVE]),
    "blocks-native": (_case_blocks("native", max_blocks=4), bound(), [NATIVE]),
    "blocks-numpy": (_case_blocks("numpy", max_blocks=2), bound(), []),
    "blocks-jax": (_case_blocks("jax", max_blocks=2), bound(), []),
    "entk": (_case_entk, bound(n=N, m=N, d=D, t=2, itemsize=4), []),
    "grf": (_case_grf, bound(n=N, m=N, d=0, t=1), []),
}
GRAM_N = 8192  # a 512 MiB result
GRAM_BUDGET = 128 * MiB
GRAM_CASES = {
    "gram-native": (_case_gram("native", GRAM_N, budget=GRAM_BUDGET), [NATIVE]),
    "gram-numpy": (_case_gram("numpy", GRAM_N, budget=GRAM_BUDGET), []),
    "gram-jax": (_case_gram("jax", GRAM_N, budget=GRAM_BUDGET), []),
    # GraphRandomFeatures.kernel_estimate used to hold a second dense n x n matrix beside its result
    "grf-kernel-estimate": (_case_grf_estimate(GRAM_N, GRAM_BUDGET), []),
}


def _child(name, limit):
    fn = CASES[name][0] if name in CASES else GRAM_CASES[name][0]
    res = fn(limit)
    sys.stdout.write("RESULT " + json.dumps(res) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------- parent side
def _run(name, limit):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    code = f"from tests.reliability import test_memory as t; t._child({name!r}, {int(limit) + 512 * MiB})"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"{name}: child exited {proc.returncode} without a result\n{proc.stdout}\n{proc.stderr[-4000:]}"
    res = json.loads(lines[-1][len("RESULT "):])
    res["wall"] = wall
    return res


def _check(name, res, limit):
    summary = (f"{name}: peak - baseline = {res['delta'] / MiB:.0f} MiB, bound {limit / MiB:.0f} MiB, "
               f"op {res.get('seconds', float('nan')):.1f} s, wall {res['wall']:.1f} s")
    print(summary)
    assert not res.get("aborted"), f"{name}: RSS ran past the bound (+512 MiB); aborted. {summary}"
    assert res["ok"], f"{name}: wrong result. {summary}"
    assert res["delta"] <= limit, summary


@pytest.mark.parametrize("name", [pytest.param(k, marks=v[2]) for k, v in CASES.items()])
def test_quadratic_ops_stay_within_budget_at_8gib_dense_size(name):
    limit = CASES[name][1]
    _check(name, _run(name, limit), limit)


@pytest.mark.parametrize("name", [pytest.param(k, marks=v[1]) for k, v in GRAM_CASES.items()])
def test_gram_needs_its_result_plus_the_budget(name):
    """gram's workspace beyond the (n, n) result stays within memory_budget (jax used to hold 2-3 results)."""
    limit = bound(GRAM_N * GRAM_N * 8, n=GRAM_N, m=GRAM_N, budget=GRAM_BUDGET)
    _check(name, _run(name, limit), limit)
