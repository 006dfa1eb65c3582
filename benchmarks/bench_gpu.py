"""GPU benchmarks: ntkit_native's CUDA kernels vs jax on the same GPU, in the same run.

    python benchmarks/bench_gpu.py [--quick]

writes ``benchmarks/RESULTS_GPU.md`` (exits 0 with a message, writing nothing, when ntkit_native
has no CUDA build or no CUDA device is present).

1. RBF ``gram`` at n = m in {4096, 16384}, d in {16, 256}, float32 and float64.
2. Fused ``kernel_matvec`` (RBF) at n = m = 50 000, d = 32, t = 1 (Z given and Z = None).
3. ``batched_gram`` (reduce "none", "sum", and "sum" with B = A).

The peer is plain jax (jit) on the same GPU, with ``precision=HIGHEST`` on every product so that
float32 stays true float32 (ntkit's kernels use FP32/FP64 FMA, no TF32); jax's default (TF32) is
shown for the float32 Gram products as well. When jax has no GPU the peer is numpy on the CPU.
ntkit's API is numpy in, numpy out, so the headline comparison is host -> host (upload, compute,
download into a numpy array) for both; the device-only columns come from CUDA events inside the
extension (``_C._cuda_last_profile()``) for ntkit and from ``block_until_ready`` on device-resident
arrays for jax. Every time is the best of ``repeats`` calls after one warm-up (``_harness``).
Device memory: ntkit's is the exact sum of its device allocations for the call; jax's is XLA's
compile-time estimate (arguments + output + temporaries) of the same jitted function.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # jax and ntkit share the GPU

sys.path.insert(0, str(pathlib.Path(__file__).parent))
try:  # an installed ntkit, else the repository checkout (e.g. after `setup.py build_ext --inplace`)
    import ntkit_native  # noqa: F401
except ImportError:
    sys.path.insert(1, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from _harness import best_time, fmt_s, machine, table  # noqa: E402
from bench_gram import numpy_rbf  # noqa: E402

MIB = 2.0**20


def _ms(t):
    return "-" if t is None or t != t else fmt_s(t)


def _ratio(a, b):
    return "-" if a is None or b is None or a != a or b != b or b <= 0 else f"{a / b:.2f}x"


def _machine() -> str:
    try:
        return machine()
    except Exception as exc:  # noqa: BLE001  (diagnostics only)
        return f"{os.cpu_count()} cores (details unavailable: {exc})"


def gpu_description() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            name, mem, drv, clk = [s.strip() for s in out.stdout.strip().splitlines()[0].split(",")]
            return f"{name} ({mem}, driver {drv}, max SM clock {clk})"
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return "unknown CUDA GPU"


# ----------------------------------------------------------------- the peer
class Peer:
    """jax on the GPU (or numpy on the CPU when jax has no GPU)."""

    def __init__(self):
        self.jax = None
        self.name = "numpy (CPU)"
        try:
            import jax

            jax.config.update("jax_enable_x64", True)  # float64 stays float64; float32 stays float32
            dev = jax.devices()[0]
            if dev.platform == "gpu":
                self.jax = jax
                self.dev = dev
                self.name = f"jax {jax.__version__} ({dev.device_kind})"
        except Exception as exc:  # noqa: BLE001
            print(f"bench_gpu: jax on GPU unavailable ({exc}); the peer is numpy on the CPU", file=sys.stderr)
        if self.jax is not None:
            self._build()

    def _build(self):
        jax = self.jax
        import jax.numpy as jnp

        hi = jax.lax.Precision.HIGHEST

        def rbf(X, Z, gamma, precision=hi):
            dot = jnp.matmul(X, Z.T, precision=precision)
            sx = jnp.sum(X * X, axis=1)
            sz = jnp.sum(Z * Z, axis=1)
            return jnp.exp(-gamma * jnp.maximum(sx[:, None] + sz[None, :] - 2 * dot, 0))

        self.rbf = jax.jit(rbf)
        self.rbf_default = jax.jit(lambda X, Z, g: rbf(X, Z, g, precision=None))
        self.mm = jax.jit(lambda X, Z: jnp.matmul(X, Z.T, precision=hi))
        self.matvec = jax.jit(lambda X, Z, v, g: jnp.matmul(rbf(X, Z, g), v, precision=hi))

        def matvec_blocked(X, Z, v, g, rows=2000):
            Xb = X.reshape(X.shape[0] // rows, rows, X.shape[1])
            return jax.lax.map(lambda xb: jnp.matmul(rbf(xb, Z, g), v, precision=hi), Xb).reshape(X.shape[0], -1)

        self.matvec_blocked = jax.jit(matvec_blocked)
        self.bnone = jax.jit(lambda A, B: jnp.einsum("bnp,bmp->bnm", A, B, precision=hi))
        self.bsum = jax.jit(lambda A, B: jnp.einsum("bnp,bmp->nm", A, B, precision=hi))

    def put(self, *arrays):
        return [self.jax.device_put(a, self.dev) for a in arrays]

    def host_to_host(self, fn, *arrays):
        """numpy in -> numpy out through the GPU (upload, compute, download)."""
        return lambda: np.asarray(fn(*self.put(*arrays)))

    def device_only(self, fn, *arrays):
        dev = self.put(*arrays)
        for a in dev:
            a.block_until_ready()
        return lambda: fn(*dev).block_until_ready()

    def xla_bytes(self, fn, *arrays):
        try:
            ma = fn.lower(*self.put(*arrays)).compile().memory_analysis()
            return (ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes
                    - getattr(ma, "alias_size_in_bytes", 0))
        except Exception:  # noqa: BLE001
            return None


def _ntkit_timed(fn, repeats):
    """Best host -> host time of an ntkit CUDA call and the profile of its fastest call."""
    from ntkit_native import _C

    fn()  # warm-up (module load, context creation on the first call)
    best, prof = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        if t < best:
            best, prof = t, dict(_C._cuda_last_profile())
    return best, prof


def _check(name, a, b, rtol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
    if not err <= rtol:
        raise AssertionError(f"{name}: relative error {err:.2e} vs the peer exceeds {rtol:.0e}")
    return err


# ----------------------------------------------------------------- 1. gram
def bench_gram(peer, quick=False):
    import ntkit_native as nn

    sizes = [4096] if quick else [4096, 16384]
    dims = [16, 256]
    rows = []
    for dtype in (np.float32, np.float64):
        for n in sizes:
            for d in dims:
                rng = np.random.default_rng(0)
                X = rng.normal(size=(n, d)).astype(dtype)
                Z = rng.normal(size=(n, d)).astype(dtype)
                ls = float(np.sqrt(d))
                gamma = 1 / (2 * ls * ls)
                reps = 3
                t_nk, prof = _ntkit_timed(lambda: nn.gram(X, Z, "rbf", {"lengthscale": ls}, device="cuda"), reps)
                K = nn.gram(X, Z, "rbf", {"lengthscale": ls}, device="cuda")
                flops = 2.0 * n * n * d
                if peer.jax is not None:
                    g = np.asarray(gamma, dtype)
                    t_px = best_time(peer.host_to_host(peer.rbf, X, Z, g), reps)
                    t_pd = best_time(peer.device_only(peer.rbf, X, Z, g), reps)
                    t_tf = best_time(peer.device_only(peer.rbf_default, X, Z, g), reps) if dtype == np.float32 else None
                    t_mm = best_time(peer.device_only(peer.mm, X, Z), reps)
                    err = _check(f"gram {n} {d}", K, np.asarray(peer.rbf(*peer.put(X, Z, g))),
                                 1e-4 if dtype == np.float32 else 1e-12)
                    pbytes = peer.xla_bytes(peer.rbf, X, Z, g)
                else:
                    t_px = best_time(lambda: numpy_rbf(X, Z, gamma), 2)
                    t_pd = t_tf = t_mm = None
                    err = _check(f"gram {n} {d}", K, numpy_rbf(X, Z, gamma), 1e-4 if dtype == np.float32 else 1e-12)
                    pbytes = None
                t_k = prof["kernel_ms"] / 1e3
                rows.append([np.dtype(dtype).name, n, d, fmt_s(t_nk), fmt_s(t_px), _ratio(t_px, t_nk),
                             f"{prof['h2d_ms']:.1f} / {prof['kernel_ms']:.1f} / {prof['d2h_ms']:.1f} ms",
                             _ms(t_pd), _ratio(t_pd, t_k), _ms(t_tf), _ms(t_mm),
                             f"{flops / t_mm / 1e12:.1f}" if t_mm else "-",
                             f"{flops / t_k / 1e12:.1f}",
                             f"{prof['device_bytes'] / MIB:.0f}",
                             f"{pbytes / MIB:.0f}" if pbytes else "-", f"{err:.1e}"])
                print("gram", rows[-1], file=sys.stderr, flush=True)
                del K
    header = ["dtype", "n = m", "d", "ntkit CUDA (host->host)", "peer (host->host)", "peer / ntkit",
              "ntkit h2d / kernels / d2h", "peer device-only", "peer device / ntkit kernels",
              "jax default precision (TF32), device", "cuBLAS X @ Z.T (jax, HIGHEST), device", "cuBLAS TFLOP/s",
              "ntkit kernel TFLOP/s (GEMM part)", "ntkit device MiB", "peer device MiB (XLA)", "rel. diff vs peer"]
    return table(header, rows)


# ----------------------------------------------------------------- 2. matvec
def bench_matvec(peer, quick=False):
    import ntkit_native as nn

    n = 10000 if quick else 50000
    d, t = 32, 1
    rows = []
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        X = rng.normal(size=(n, d)).astype(dtype)
        Z = rng.normal(size=(n, d)).astype(dtype)
        v = rng.normal(size=(n, t)).astype(dtype)
        ls = float(np.sqrt(d))
        p = {"lengthscale": ls}
        g = np.asarray(1 / (2 * ls * ls), dtype)
        t_nk, prof = _ntkit_timed(lambda: nn.kernel_matvec(X, Z, v, "rbf", p, device="cuda"), 3)
        t_sym, prof_sym = _ntkit_timed(lambda: nn.kernel_matvec(X, None, v, "rbf", p, device="cuda"), 3)
        out = nn.kernel_matvec(X, Z, v, "rbf", p, device="cuda")
        t_cpu = best_time(lambda: nn.kernel_matvec(X, Z, v, "rbf", p), 1)
        if peer.jax is not None:
            t_px = best_time(peer.host_to_host(peer.matvec, X, Z, v, g), 3)
            t_pd = best_time(peer.device_only(peer.matvec, X, Z, v, g), 3)
            t_bd = best_time(peer.device_only(peer.matvec_blocked, X, Z, v, g), 3)
            ref = np.asarray(peer.matvec(*peer.put(X, Z, v, g)))
            pbytes = peer.xla_bytes(peer.matvec, X, Z, v, g)
            bbytes = peer.xla_bytes(peer.matvec_blocked, X, Z, v, g)
        else:
            t_px = best_time(lambda: numpy_rbf(X, Z, float(g)) @ v, 1)
            t_pd = t_bd = pbytes = bbytes = None
            ref = numpy_rbf(X, Z, float(g)) @ v
        err = _check("matvec", out, ref, 1e-4 if dtype == np.float32 else 1e-11)
        rows.append([np.dtype(dtype).name, n, n, d, t, fmt_s(t_nk), fmt_s(t_px), _ratio(t_px, t_nk),
                     f"{prof['kernel_ms']:.1f} ms", _ms(t_pd), _ratio(t_pd, prof["kernel_ms"] / 1e3), _ms(t_bd),
                     f"{prof_sym['kernel_ms']:.1f} ms ({fmt_s(t_sym)} host->host)", fmt_s(t_cpu),
                     f"{prof['device_bytes'] / MIB:.1f}", f"{pbytes / MIB:.0f}" if pbytes else "-",
                     f"{bbytes / MIB:.0f}" if bbytes else "-", f"{err:.1e}"])
        print("matvec", rows[-1], file=sys.stderr, flush=True)
    header = ["dtype", "n", "m", "d", "t", "ntkit CUDA fused (host->host)", "peer materialise K then @ v (host->host)",
              "peer / ntkit", "ntkit kernels", "peer materialise, device", "peer device / ntkit kernels",
              "peer lax.map 2000-row blocks, device", "ntkit Z = None (exact diagonal) kernels",
              "ntkit CPU (same machine)", "ntkit device MiB", "peer materialise MiB (XLA)",
              "peer blocked MiB (XLA)", "rel. diff vs peer"]
    return table(header, rows)


# ----------------------------------------------------------------- 3. batched
def bench_batched(peer, quick=False):
    import ntkit_native as nn

    rows = []
    for dtype in (np.float32, np.float64):
        for b, n, p in ([(3, 1024, 256)] if quick else [(3, 4096, 1024), (10, 2048, 256)]):
            rng = np.random.default_rng(0)
            A = rng.normal(size=(b, n, p)).astype(dtype)
            B = rng.normal(size=(b, n, p)).astype(dtype)
            res = [np.dtype(dtype).name, b, n, n, p]
            rtol = 1e-4 if dtype == np.float32 else 1e-12
            for label, Bin, red, pfn in (("none", B, "none", "bnone"), ("sum", B, "sum", "bsum"),
                                         ("sum, B = A", None, "sum", "bsum")):
                t_nk, prof = _ntkit_timed(lambda: nn.batched_gram(A, Bin, red, device="cuda"), 3)
                out = nn.batched_gram(A, Bin, red, device="cuda")
                Bp = A if Bin is None else Bin
                if peer.jax is not None:
                    fn = getattr(peer, pfn)
                    t_px = best_time(peer.host_to_host(fn, A, Bp), 3)
                    t_pd = best_time(peer.device_only(fn, A, Bp), 3)
                    ref = np.asarray(fn(*peer.put(A, Bp)))
                else:
                    spec = "bnp,bmp->bnm" if red == "none" else "bnp,bmp->nm"
                    t_px = best_time(lambda: np.einsum(spec, A, Bp, optimize=True), 2)
                    t_pd = None
                    ref = np.einsum(spec, A, Bp, optimize=True)
                _check(f"batched {label}", out, ref, rtol)
                res += [f"{fmt_s(t_nk)} ({prof['kernel_ms']:.1f} ms kernels)", fmt_s(t_px), _ms(t_pd),
                        _ratio(t_px, t_nk)]
            rows.append(res)
            print("batched", rows[-1], file=sys.stderr, flush=True)
    header = ["dtype", "b", "n", "m", "p"]
    for label in ("none", "sum", "sum, B = A"):
        header += [f"ntkit CUDA {label} (host->host)", f"peer {label} (host->host)", f"peer {label} device",
                   f"peer / ntkit ({label})"]
    return table(header, rows)


def main():
    quick = "--quick" in sys.argv
    import ntkit_native as nn

    if not nn.has_cuda():
        why = ("ntkit_native is not built" if not nn.is_available() else
               "ntkit_native was built without CUDA" if not nn.info()["cuda_compiled"] else "no CUDA device")
        print(f"bench_gpu: nothing to do ({why}); build with NTKIT_CUDA=1 on a machine with a CUDA GPU.")
        return 0
    t0 = time.time()
    peer = Peer()
    parts = [
        "### RBF `gram` (n x m output downloaded to the host)", "", bench_gram(peer, quick), "",
        "### Fused `kernel_matvec` (RBF): K(X, Z) @ v without storing K", "", bench_matvec(peer, quick), "",
        "### `batched_gram`", "", bench_batched(peer, quick), "",
    ]
    text = "\n".join([
        "# GPU benchmark results",
        "",
        "Written by `python benchmarks/bench_gpu.py` (see its docstring for the method). Every table",
        "compares ntkit_native's CUDA kernels with the peer on the same data, on the same GPU, in the",
        "same run. host->host = numpy in, numpy out (upload + compute + download); 'kernels' = the",
        "extension's compute kernels alone (CUDA events); 'device' = the peer on device-resident",
        "arrays. Times are the best of 3 after a warm-up. Ratios > 1 mean ntkit is faster.",
        "",
        f"GPU: {gpu_description()}. Peer: {peer.name}, every product at precision HIGHEST (true FP32/FP64).",
        f"Host: {_machine()}.",
        f"Total benchmark time: {time.time() - t0:.0f} s{' (quick mode)' if quick else ''}.",
        "",
        *parts,
    ])
    out = pathlib.Path(__file__).with_name("RESULTS_GPU.md")
    out.write_text(text + "\n")
    print(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
