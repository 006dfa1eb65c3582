"""Empirical NTK: ntkit vs neural-tangents on the same model, parameters and inputs, one run.

Model: MLP 784-512-512-10, ReLU, NTK parameterisation, float32 (668,672 parameters),
x2 = x1. neural-tangents 0.6.5 runs in the pinned ``.venv-interop`` (jax 0.4.25) through
``benchmarks/_nt_entk_worker.py``; ntkit runs in this environment through the worker mode of
this file. Each side runs in its own subprocess and reports the time of the first call
(compilation included), the best of the steady calls, and the peak resident memory added by
the calls (sampled every 2 ms above the level after imports and data loading). neural-tangents'
"best" is the fastest of the implementations it ran at that size.

Also: a CNN, and ntkit's sum_logits kernel at N = 10 000 under a 4 GiB memory budget.

    python benchmarks/bench_entk.py            # the full table (several minutes: neural-tangents is slow)
    python benchmarks/bench_entk.py --quick    # N = 64 only
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from _harness import fmt_s, table

ROOT = pathlib.Path(__file__).resolve().parents[1]
INTEROP_PY = ROOT / ".venv-interop" / "bin" / "python"
NT_WORKER = ROOT / "benchmarks" / "_nt_entk_worker.py"
WIDTHS = (784, 512, 512, 10)


CNN = {"in_shape": [16, 16, 1], "channels": [8, 8], "out_dim": 10}


def _model(cnn):
    from ntkit.ntk.models import cnn as make_cnn
    from ntkit.ntk.models import mlp

    if cnn:
        return make_cnn(**CNN), tuple(CNN["in_shape"])
    return mlp(WIDTHS, "relu"), (WIDTHS[0],)


def make_data(path, N, seed=0, cnn=False):
    """Model parameters (ntkit.ntk.models, key 0) and N standard-normal inputs, float32."""
    import jax

    (init, _), shape = _model(cnn)
    params = init(jax.random.PRNGKey(seed))
    x = np.random.default_rng(seed).standard_normal((N,) + shape).astype(np.float32)
    arrays = {f"params/{i}/{k}": np.asarray(v) for i, layer in enumerate(params) for k, v in layer.items()}
    np.savez(path, x=x, **arrays)


def worker(argv):
    """``--worker DATA KIND IMPL REPEATS [BUDGET]``: time ntkit in this process, print one JSON line."""
    data, kind, impl, repeats = argv[0], argv[1], argv[2], int(argv[3])
    budget = argv[4] if len(argv) > 4 and argv[4] else None
    cnn = "cnn" in pathlib.Path(data).name
    import jax.numpy as jnp

    from ntkit.ntk import empirical_ntk_fn

    with np.load(data) as z:
        n_layers = len({k.split("/")[1] for k in z.files if k.startswith("params/")})
        params = [{"W": jnp.asarray(z[f"params/{i}/W"]), "b": jnp.asarray(z[f"params/{i}/b"])}
                  for i in range(n_layers)]
        x = np.asarray(z["x"])
    (_, apply), _ = _model(cnn)
    from _harness import RssSampler

    fn = empirical_ntk_fn(apply, kind=kind, implementation=impl, memory_budget=budget)
    with RssSampler() as sampler:
        t0 = time.perf_counter()
        k = fn(params, x)
        first = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            del k
            t0 = time.perf_counter()
            k = fn(params, x)
            times.append(time.perf_counter() - t0)
    out = {"first_call_s": first, "best_s": min(times) if times else first, "extra_rss_mib": sampler.extra_mib,
           "shape": list(k.shape), "dtype": str(k.dtype)}
    if len(argv) > 5:
        np.save(argv[5], k)
    print(json.dumps(out))


def _run(cmd, timeout=1800):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ntkit_run(data, kind, impl="structured", repeats=3, budget=None, save=None):
    cmd = [sys.executable, __file__, "--worker", str(data), kind, impl, str(repeats)]
    if budget or save:
        cmd += [budget or "", str(save or "")][: 2 if save else 1]
    return _run(cmd)


def nt_run(data, kind, impl, repeats=2, save=None):
    cmd = [str(INTEROP_PY), str(NT_WORKER), "--data", str(data), "--kind", kind, "--implementation", impl,
           "--repeats", str(repeats)]
    if "cnn" in pathlib.Path(data).name:
        cmd += ["--cnn", json.dumps(CNN)]
    if save:
        cmd += ["--out", str(save)]
    return _run(cmd)


def _extra(r):
    return r["extra_rss_mib"]


# neural-tangents implementations worth running at each size (its Jacobian contraction needs
# tens of GB and minutes beyond N = 64; baselines.md).
NT_PLAN = {64: ("jacobian", "ntk_vp", "structured"), 128: ("ntk_vp", "structured"), 256: ("ntk_vp", "structured")}


def run(quick=False):
    have_nt = INTEROP_PY.exists()
    sizes = [64] if quick else [64, 128, 256]
    rows, checks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for N in sizes:
            data = tmp / f"mlp_{N}.npz"
            make_data(data, N)
            ours = {kind: ntkit_run(data, kind) for kind in ("full", "trace", "sum_logits")}
            for kind in ("full", "trace"):
                nt = {}
                if have_nt:
                    for impl in NT_PLAN[N]:
                        save = tmp / f"nt_{N}_{kind}_{impl}.npz" if impl == "structured" else None
                        try:
                            nt[impl] = nt_run(data, kind, impl, repeats=1 if N > 64 else 2, save=save)
                        except (RuntimeError, subprocess.TimeoutExpired) as exc:
                            print(f"neural-tangents {impl} {kind} N={N} failed: {exc}", file=sys.stderr)
                best_impl = min(nt, key=lambda k: nt[k]["best_s"]) if nt else None
                o = ours[kind]
                if best_impl:
                    b = nt[best_impl]
                    ratio = b["best_s"] / o["best_s"]
                    rows.append([N, kind, fmt_s(o["best_s"]), fmt_s(o["first_call_s"]), f"{_extra(o):.0f}",
                                 f"{fmt_s(b['best_s'])} ({best_impl})", fmt_s(b["first_call_s"]),
                                 f"{_extra(b):.0f}", f"**{ratio:.1f}x**"])
                else:
                    rows.append([N, kind, fmt_s(o["best_s"]), fmt_s(o["first_call_s"]), f"{_extra(o):.0f}",
                                 "not run", "", "", ""])
                nt_file = tmp / f"nt_{N}_{kind}_structured.npz"
                if nt_file.exists():
                    ours_k = tmp / f"ours_{N}_{kind}.npy"
                    ntkit_run(data, kind, repeats=0, save=ours_k)
                    a, b = np.load(ours_k).astype(np.float64), np.load(nt_file)["kernel"].astype(np.float64)
                    checks.append(f"N={N} {kind}: max |ntkit − NT| / max |NT| = "
                                  f"{np.abs(a - b).max() / np.abs(b).max():.1e}")
            s = ours["sum_logits"]
            rows.append([N, "sum_logits", fmt_s(s["best_s"]), fmt_s(s["first_call_s"]), f"{_extra(s):.0f}",
                         "—", "", "", f"{ours['full']['best_s'] / s['best_s']:.0f}x vs ntkit full"])
        cnn_rows = []
        data = tmp / "cnn_64.npz"
        make_data(data, 64, cnn=True)
        for kind in ("full", "trace"):
            o = ntkit_run(data, kind)
            nt = {}
            if have_nt:
                for impl in ("jacobian", "ntk_vp", "structured"):
                    try:
                        nt[impl] = nt_run(data, kind, impl)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        print(f"neural-tangents {impl} {kind} CNN failed: {exc}", file=sys.stderr)
            if nt:
                bi = min(nt, key=lambda k: nt[k]["best_s"])
                b = nt[bi]
                cnn_rows.append([64, kind, fmt_s(o["best_s"]), f"{_extra(o):.0f}", f"{fmt_s(b['best_s'])} ({bi})",
                                 f"{_extra(b):.0f}", f"**{b['best_s'] / o['best_s']:.1f}x**"])
            else:
                cnn_rows.append([64, kind, fmt_s(o["best_s"]), f"{_extra(o):.0f}", "not run", "", ""])
        big = None
        if not quick:
            data = tmp / "mlp_10000.npz"
            make_data(data, 10_000)
            big = ntkit_run(data, "sum_logits", repeats=1, budget="4GiB")
    header = ["N", "kind", "ntkit", "ntkit 1st call", "ntkit peak MiB", "neural-tangents best", "NT 1st call",
              "NT peak MiB", "speed-up"]
    lines = [
        "## Empirical NTK: ntkit vs neural-tangents",
        "",
        "MLP 784-512-512-10, ReLU, NTK parameterisation (668,672 parameters), float32, x2 = x1; ntkit "
        "`implementation=\"structured\"` (found from the jaxpr) on jax "
        f"{__import__('jax').__version__}; neural-tangents 0.6.5 on jax 0.4.25 (`.venv-interop`), `vmap_axes=0`, "
        "jitted, its fastest implementation at each size. Peak MiB = resident memory added by the calls (sampled "
        "every 2 ms above the level after imports and data loading; includes compilation). Each side in "
        "its own subprocess, same parameters and inputs.",
        "",
        table(header, rows),
        "",
    ]
    lines += [f"CNN: `ntkit.ntk.models.cnn(**{CNN})` (two 3x3 SAME convolutions, ReLU, dense readout; "
              "NTK parameterisation), float32. ntkit forms the convolution weights' per-example gradients "
              "(its cost model: 256 positions make the factored form dearer) and factorises the readout.", "",
              table(["N", "kind", "ntkit", "ntkit peak MiB", "neural-tangents best", "NT peak MiB", "speed-up"],
                    cnn_rows), ""]
    if checks:
        lines += ["Agreement with neural-tangents (float32): " + "; ".join(checks) + ".", ""]
    if not have_nt:
        lines += ["neural-tangents was not run: `make interop` builds `.venv-interop`.", ""]
    if big:
        lines += [f"sum_logits at N = 10 000 under `memory_budget=\"4GiB\"`: {fmt_s(big['best_s'])} "
                  f"(first call {fmt_s(big['first_call_s'])}), peak RSS added {_extra(big):.0f} MiB "
                  f"(the (10 000, 10 000) float32 output itself is 381 MiB).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        print(run("--quick" in sys.argv))
