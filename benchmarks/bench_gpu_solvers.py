"""GPU benchmarks of the solvers: ntkit on the device vs the official EigenPro 3 code vs ntkit on the host.

    python benchmarks/bench_gpu_solvers.py [--quick] [--deadline SECONDS] [--skip-official] [--cpu-peers]

Same data, same GPU, same run. Every configuration runs in its own subprocess (a clean process: its
peak device memory is its own), in this order, until ``--deadline`` seconds have passed (the
remaining rows then say "not run"):

1. EigenPro 3, n = 10⁶, d = 20, p = 10⁴ centers (the first p training rows), RBF with lengthscale
   √d, float32: ntkit on the GPU (``device="gpu"``), the official EigenPro 3 code (torch, on the
   GPU; fetched with the search tool into ``.peers/EigenPro3`` and run unmodified by
   ``benchmarks/_ep3_official_worker.py`` with its own defaults: Nyström subsample 5000, level 500,
   its own batch size and step, its own per-sample data loader), and ntkit on the host CPU
   (numpy in, the native engine). Time per epoch, setup, test MSE per epoch, peak device memory.
2. EigenPro 3, n = 10⁷, p = 2·10⁴: ntkit on the GPU with X resident on the device, and with X a
   host array streamed batch by batch (``stream=True``).
3. EigenPro 2, n = 10⁵, d = 20: GPU vs host.
4. ``nystrom_pcg``, n = 2·10⁵, m = 5000 centers: GPU vs host (time per CG iteration).

Data: X ~ N(0, I_d), y = sin(u·x) + cos(v·x)/2 + 0.05·N(0, 1) with fixed unit vectors u, v; the
test set is 10⁴ fresh rows. Writes (or replaces) the "Solvers on the GPU" section of
``benchmarks/RESULTS_GPU.md`` (run after ``bench_gpu.py``, which rewrites that file) and prints it.
``--quick`` runs tiny sizes on whatever device jax has (a smoke test of this script; writes
nothing). Without a GPU and without ``--quick`` it prints why and exits 0.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # several processes share the GPU in turn

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))

import numpy as np  # noqa: E402

BEGIN, END = "<!-- solvers:begin -->", "<!-- solvers:end -->"


def make_data(n, d, seed=0, n_test=10_000):
    rng = np.random.default_rng([seed, n, d])
    u = rng.normal(size=d)
    v = rng.normal(size=d)
    u /= np.linalg.norm(u)
    v /= np.linalg.norm(v)

    def f(X):
        return (np.sin(X @ u) + 0.5 * np.cos(X @ v)).astype(np.float32)

    X = rng.standard_normal((n, d), dtype=np.float32)
    y = f(X) + 0.05 * rng.standard_normal(n, dtype=np.float32)
    Xt = rng.standard_normal((n_test, d), dtype=np.float32)
    return X, y, Xt, f(Xt)


# ----------------------------------------------------------------------------- workers (subprocess)
def _device_peak_mib():
    import jax

    try:
        st = jax.devices()[0].memory_stats() or {}
        return st.get("peak_bytes_in_use", 0) / 2**20
    except Exception:  # noqa: BLE001
        return float("nan")


def worker_eigenpro(cfg):
    import jax

    from ntkit.kernels import RBF
    from ntkit.solvers import eigenpro

    X, y, Xt, yt = make_data(cfg["n"], cfg["d"])
    if cfg.get("memmap"):
        path = pathlib.Path(tempfile.mkdtemp()) / "X.f32"
        mm = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
        mm[:] = X
        mm.flush()
        del mm
        X = np.memmap(path, dtype=np.float32, mode="r", shape=(cfg["n"], cfg["d"]))
    p = cfg.get("p")
    centers = None if p is None else np.array(X[:p])
    kernel = RBF(float(np.sqrt(cfg["d"])))
    device = cfg["device"]
    if device == "host":
        device = None
    t0 = time.perf_counter()
    kw = {"stream": True} if cfg.get("stream") else {}
    res = eigenpro(kernel, X, y, centers=centers, epochs=cfg["epochs"], random_state=0, X_val=Xt, y_val=yt,
                   device=device, memory_budget=cfg.get("budget"), **kw)
    fit = time.perf_counter() - t0
    secs = [h["seconds"] for h in res.history]
    per_epoch = [h["epoch_seconds"] for h in res.history]  # steps + loss; not the validation pass
    return {"fit_seconds": fit, "setup_seconds": fit - secs[-1] if secs else fit, "epoch_seconds": per_epoch,
            "variance_reduction": [bool(h.get("variance_reduction")) for h in res.history],
            "test_mse": [h.get("val_mse") for h in res.history], "batch_size": res.batch_size,
            "n_eigen": res.n_eigen, "peak_device_mib": _device_peak_mib() if device else None,
            "device": str(jax.devices()[0]) if device else "host"}


def worker_nystrom(cfg):
    import jax

    from ntkit.kernels import RBF
    from ntkit.solvers import nystrom_pcg

    X, y, Xt, yt = make_data(cfg["n"], cfg["d"])
    device = None if cfg["device"] == "host" else cfg["device"]
    t0 = time.perf_counter()
    res = nystrom_pcg(RBF(float(np.sqrt(cfg["d"]))), X, y, n_centers=cfg["m"], ridge=1e-6, maxiter=cfg["maxiter"],
                      tol=1e-9, random_state=0, device=device)
    fit = time.perf_counter() - t0
    mse = float(np.mean((np.asarray(res.predict(Xt)) - yt) ** 2))
    return {"fit_seconds": fit, "n_iter": res.n_iter, "residual": res.history[-1], "test_mse": mse,
            "peak_device_mib": _device_peak_mib() if device else None}


def run_worker(kind, cfg, timeout):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        out = fh.name
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", kind, json.dumps(cfg), out]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else "failed"}
    return json.loads(pathlib.Path(out).read_text())


def run_official(cfg, timeout):
    """The official EigenPro 3 code on the same data (``_ep3_official_worker.py``, unmodified code)."""
    ep3 = ROOT / ".peers" / "EigenPro3"
    if not ep3.is_dir():
        return {"error": "official code not present (.peers/EigenPro3; see benchmarks/_peers/README.md)"}
    X, y, Xt, yt = make_data(cfg["n"], cfg["d"])
    tmp = pathlib.Path(tempfile.mkdtemp())
    np.savez(tmp / "d.npz", X_train=X, y_train=y, X_test=Xt, y_test=yt, centers=X[: cfg["p"]],
             bandwidth=np.float64(np.sqrt(cfg["d"])))
    del X, y
    cmd = [sys.executable, str(HERE / "_ep3_official_worker.py"), "--data", str(tmp / "d.npz"), "--out",
           str(tmp / "o.json"), "--device", cfg["device"], "--epochs", str(cfg["epochs"]),
           "--max-seconds", str(int(timeout * 0.8))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc = None
    if (tmp / "o.json").exists():
        return json.loads((tmp / "o.json").read_text())
    return {"error": "failed: " + ((proc.stderr.strip().splitlines() or ["?"])[-1][:300] if proc else "timeout")}


# ----------------------------------------------------------------------------- table
def _f(x, unit="s"):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{x:.2f} {unit}" if unit else f"{x:.4g}"


def _row(name, r, ref_epoch=None):
    if "error" in r:
        return [name, "-", "-", "-", "-", "-", "-", r["error"]]
    ep = r.get("epoch_seconds") or []
    steady = float(np.min(ep[1:])) if len(ep) > 1 else (ep[0] if ep else None)
    mse = r.get("test_mse")
    mse_s = " → ".join(f"{m:.4f}" for m in mse if m is not None) if isinstance(mse, list) else _f(mse, "")
    ratio = f"{ref_epoch / steady:.1f}x" if ref_epoch and steady else "-"
    return [name, _f(r.get("setup_seconds")), " / ".join(f"{e:.2f}" for e in ep) + " s" if ep else "-",
            _f(steady), ratio, mse_s, _f(r.get("peak_device_mib"), "MiB"),
            f"bs {r.get('batch_size', '-')}" + (f", q {r['n_eigen']}" if "n_eigen" in r else "")]


def main(argv):
    quick = "--quick" in argv
    deadline = float(argv[argv.index("--deadline") + 1]) if "--deadline" in argv else 400.0
    t_start = time.time()
    import jax

    has_gpu = any(d.platform == "gpu" for d in jax.devices())
    if not has_gpu and not quick:
        print("bench_gpu_solvers: jax sees no GPU; nothing to do (run on a machine with a CUDA build of jax, "
              "or --quick for a CPU smoke run).")
        return 0
    dev = "gpu" if has_gpu else "cpu"
    big = not quick
    S = dict(n1=10**6 if big else 20_000, p1=10_000 if big else 500, n2=10**7 if big else 40_000,
             p2=20_000 if big else 800, n3=10**5 if big else 5000, n4=200_000 if big else 10_000,
             m4=5000 if big else 300)

    def left():
        return deadline - (time.time() - t_start)

    def go(kind, cfg, est):
        if left() < est:
            return {"error": f"not run (deadline: {left():.0f} s left, needs ~{est:.0f} s)"}
        r = run_worker(kind, cfg, timeout=max(30.0, left()))
        print(kind, cfg, json.dumps(r)[:400], file=sys.stderr, flush=True)
        return r

    ep3 = dict(n=S["n1"], d=20, p=S["p1"])
    r_gpu = go("eigenpro", dict(ep3, device=dev, epochs=4), 20)
    if "--skip-official" in argv:
        r_off = {"error": "not run (--skip-official)"}
    elif left() < 60:
        r_off = {"error": "not run (deadline)"}
    else:
        r_off = run_official(dict(ep3, device="cuda" if has_gpu else "cpu", epochs=2), timeout=min(150.0, left()))
        print("official", json.dumps(r_off)[:400], file=sys.stderr, flush=True)
    r_host = go("eigenpro", dict(ep3, device="host", epochs=1), 40)
    r_10m = go("eigenpro", dict(n=S["n2"], d=20, p=S["p2"], device=dev, epochs=3), 40)
    r_10m_s = go("eigenpro", dict(n=S["n2"], d=20, p=S["p2"], device=dev, epochs=2, stream=True), 50)
    r_ep2 = go("eigenpro", dict(n=S["n3"], d=20, device=dev, epochs=3), 20)
    r_ep2_h = go("eigenpro", dict(n=S["n3"], d=20, device="host", epochs=1), 30)
    ny = dict(n=S["n4"], d=20, m=S["m4"])
    r_ny = go("nystrom", dict(ny, device=dev, maxiter=40), 20)
    r_ny_h = go("nystrom", dict(ny, device="host", maxiter=3), 30)

    def steady(r):
        ep = r.get("epoch_seconds") or []
        return float(np.min(ep[1:])) if len(ep) > 1 else (ep[0] if ep else None)

    ref = steady(r_off) if "error" not in r_off else None
    off_row = ["official EigenPro 3 (torch, GPU)"] + (
        ["-"] * 6 + [r_off["error"]] if "error" in r_off else
        [_f(r_off.get("setup_seconds")), " / ".join(f"{e:.2f}" for e in r_off["epoch_seconds"]) + " s",
         _f(steady(r_off)), "1.0x", " → ".join(f"{m:.4f}" for m in r_off["test_mse"]),
         _f(r_off.get("peak_device_mib"), "MiB"), f"bs {r_off.get('batch_size')}, loader {r_off.get('loader')}"])
    header = ["run", "setup", "epochs", "time / epoch (fastest after the first)", "official / this", "test MSE per epoch",
              "peak device memory", "notes"]
    t1 = [_row(f"ntkit EigenPro 3, device={dev}", r_gpu, ref), off_row,
          _row("ntkit EigenPro 3, host CPU (numpy in, native engine)", r_host, ref)]
    t2 = [_row(f"ntkit EigenPro 3, n = {S['n2']:,}, p = {S['p2']:,}, X resident on the {dev}", r_10m),
          _row(f"ntkit EigenPro 3, n = {S['n2']:,}, p = {S['p2']:,}, X a host array streamed to the {dev} "
               "(stream=True)", r_10m_s)]
    t3 = [_row(f"ntkit EigenPro 2, n = {S['n3']:,}, device={dev}", r_ep2),
          _row(f"ntkit EigenPro 2, n = {S['n3']:,}, host CPU", r_ep2_h)]

    def ny_row(name, r):
        if "error" in r:
            return [name, "-", "-", "-", "-", r["error"]]
        return [name, _f(r["fit_seconds"]), str(r["n_iter"]), _f(r["fit_seconds"] / max(r["n_iter"], 1)),
                f"{r['residual']:.2e}", f"{r['test_mse']:.4f}"]

    t4 = [ny_row(f"nystrom_pcg device={dev}", r_ny), ny_row("nystrom_pcg host CPU", r_ny_h)]
    from _harness import machine, table

    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip() or "no GPU"
    except (OSError, subprocess.SubprocessError):
        gpu = "no GPU"
    text = "\n".join([
        BEGIN, "## Solvers on the GPU (`benchmarks/bench_gpu_solvers.py`)", "",
        f"GPU: {gpu}; jax {jax.__version__}. Host: {machine()}. Same data, same GPU, same run; each row a fresh "
        f"process. float32, RBF lengthscale √d, d = 20, test MSE on 10⁴ fresh points (noise variance 0.0025). "
        f"{'QUICK smoke sizes. ' if quick else ''}Total {time.time() - t_start:.0f} s.", "",
        f"### EigenPro 3, n = {S['n1']:,}, p = {S['p1']:,} centers", "", table(header, t1), "",
        "### EigenPro 3 at scale", "", table(header, t2), "",
        "### EigenPro 2", "", table(header, t3), "",
        f"### Nyström PCG (Falkon-style), n = {S['n4']:,}, m = {S['m4']:,}", "",
        table(["run", "fit", "CG iterations", "time / iteration", "final residual", "test MSE"], t4), "",
        END, ""])
    print(text)
    if not quick:
        out = HERE / "RESULTS_GPU.md"
        old = out.read_text() if out.exists() else "# GPU benchmark results\n\n"
        if BEGIN in old and END in old:
            old = old[: old.index(BEGIN)] + old[old.index(END) + len(END):].lstrip("\n")
        out.write_text(old.rstrip("\n") + "\n\n" + text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, cfg, out = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
        fn = {"eigenpro": worker_eigenpro, "nystrom": worker_nystrom}[kind]
        pathlib.Path(out).write_text(json.dumps(fn(cfg)))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
