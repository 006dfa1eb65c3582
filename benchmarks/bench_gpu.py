"""GPU benchmarks: ntkit_native's CUDA kernels vs jax (and KeOps) on the same GPU, in the same run.

    python benchmarks/bench_gpu.py [--quick] [--section NAME[,NAME...]] [--no-keops] [--out PATH]

Sections (all by default; ``--section`` picks some, e.g. ``--section ffi_gram,ffi_matvec``):

``gram``        RBF ``gram`` numpy in / numpy out (host->host) at n = m in {4096, 16384},
                d in {16, 256}, float32 and float64.
``matvec``      Fused ``kernel_matvec`` (RBF) numpy in / out at n = m = 50 000, d = 32, t = 1.
``batched``     ``batched_gram`` numpy in / out (reduce "none", "sum", and "sum" with B = A).
``ffi_gram``    RBF ``gram`` through the XLA FFI custom call (``ntkit_native._jax_ffi``) on
                device-resident jax arrays vs XLA (jit, precision HIGHEST), with the two
                bounds of any implementation: cuBLAS' bare GEMM (``X @ Z.T`` in jax, HIGHEST)
                and one pass over the output (a device copy of an n x m array), at
                n = m in {4096, 16384}, d in {16, 256}, float32 and float64.
``ffi_matvec``  Fused ``kernel_matvec`` (RBF) through the custom call on device-resident jax
                arrays at n = m = 200 000, d in {3, 32}, t = 1, float32 and float64, vs XLA
                materialising K then K @ v (when K fits in GPU memory; at 2e5 it does not,
                and the table says so) and XLA in ``lax.map`` row blocks of 2000 rows, and
                vs KeOps (``pykeops.torch`` LazyTensor RBF sum reduction on torch CUDA
                tensors; '-' when pykeops / torch are not importable, or with --no-keops).

The peer is plain jax (jit) on the same GPU, with ``precision=HIGHEST`` on every product so that
float32 stays true float32 (ntkit's kernels use FP32/FP64 FMA or cuBLAS' default math, no TF32);
jax's default (TF32) is shown for the float32 Gram products as well. When jax has no GPU the peer
is numpy on the CPU (and the ffi_* sections are skipped). Every time is the best of ``repeats``
calls after one warm-up (``_harness``); device-resident timings end with ``block_until_ready``
(torch: ``torch.cuda.synchronize``). Device memory: ntkit's host-pointer calls report the exact
sum of their device allocations; the custom calls' temporaries are the squared norms (n + m
entries) plus, with several column chunks, the chunk partial sums (computed by the same rule as
the extension); jax's is XLA's compile-time estimate (arguments + output + temporaries). The
last table is a compact summary against the targets of issue 20 (fused matvec at 2e5: float32
>= 3x XLA and >= KeOps, float64 >= 2x XLA).

Results go to ``benchmarks/RESULTS_GPU.md`` when every section runs (or to ``--out``); a run of
some sections prints its tables only. Expected GPU time on an H100/H200: gram ~60 s, matvec
~20 s, batched ~40 s, ffi_gram ~25 s, ffi_matvec ~30 s (+ KeOps' one-time compile, ~15 s per
dtype and d, cached in ~/.cache/keops).
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

        self.rbf_raw = rbf  # traceable, for use inside other jitted functions
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


# ----------------------------------------------------------------- 4. gram through the custom call
def _ffi():
    from ntkit_native import _jax_ffi

    return _jax_ffi


def _sync_all(*arrays):
    for a in arrays:
        a.block_until_ready()


def bench_ffi_gram(peer, quick=False, summary=None):
    F = _ffi()
    jax = peer.jax
    import jax.numpy as jnp

    sizes = [4096] if quick else [4096, 16384]
    rows = []
    for dtype in (np.float32, np.float64):
        for n in sizes:
            for d in (16, 256):
                rng = np.random.default_rng(0)
                X, Z = peer.put(rng.normal(size=(n, d)).astype(dtype), rng.normal(size=(n, d)).astype(dtype))
                ls = float(np.sqrt(d))
                g = jax.device_put(np.asarray(1 / (2 * ls * ls), dtype), peer.dev)
                _sync_all(X, Z, g)
                ffi = jax.jit(lambda a, b, _ls=ls: F.gram(a, b, "rbf", {"lengthscale": _ls}))
                neg = jax.jit(lambda K: -K)
                reps = 3
                t_nk = best_time(lambda: ffi(X, Z).block_until_ready(), reps)
                t_xla = best_time(lambda: peer.rbf(X, Z, g).block_until_ready(), reps)
                t_mm = best_time(lambda: peer.mm(X, Z).block_until_ready(), reps)
                K = ffi(X, Z)
                t_pass = best_time(lambda: neg(K).block_until_ready(), reps)
                Kx = peer.rbf(X, Z, g)
                err = float(jnp.linalg.norm(K - Kx) / jnp.linalg.norm(Kx))  # on the device: no 2 GB download
                if not err <= (1e-5 if dtype == np.float32 else 1e-13):
                    raise AssertionError(f"ffi gram {n} {d}: relative error {err:.2e} vs XLA")
                del K, Kx
                flops = 2.0 * n * n * d
                bound = max(t_mm, t_pass)
                rows.append([np.dtype(dtype).name, n, d, fmt_s(t_nk), fmt_s(t_xla), _ratio(t_xla, t_nk), fmt_s(t_mm),
                             fmt_s(t_pass), f"{bound / t_nk:.2f}", f"{flops / t_mm / 1e12:.1f}",
                             f"{flops / t_nk / 1e12:.1f}", f"{err:.1e}"])
                if summary is not None:
                    summary.append([f"gram FFI {np.dtype(dtype).name} n={n} d={d}", fmt_s(t_nk),
                                    f"XLA {fmt_s(t_xla)}", _ratio(t_xla, t_nk), "faster than XLA",
                                    "yes" if t_nk < t_xla else "no"])
                print("ffi_gram", rows[-1], file=sys.stderr, flush=True)
    header = ["dtype", "n = m", "d", "ntkit custom call (jit, device)", "XLA rbf (HIGHEST), device", "XLA / ntkit",
              "bare GEMM X @ Z.T (cuBLAS via XLA, HIGHEST)", "one pass over n x m (device copy)",
              "max(GEMM, pass) / ntkit", "GEMM TFLOP/s", "ntkit TFLOP/s (GEMM part)", "rel. diff vs XLA"]
    return table(header, rows)


# ----------------------------------------------------------------- 5. fused matvec through the custom call
def _matvec_temp_bytes(n, m, t, itemsize, sms):
    """The extension's temporaries for one fused matvec: norms + chunk partials (its own rule)."""
    q = 1 if t == 1 else 4
    tm = (128 if q == 1 else 64) if itemsize == 4 else (64 if q == 1 else 32)
    tn = 64 if itemsize == 4 else 64
    panels = -(-n // tm)
    ctiles = -(-m // tn)
    chunks = max(1, min(ctiles, -(-8 * sms // panels)))
    per = -(-ctiles // chunks)
    chunks = -(-ctiles // per)
    return itemsize * ((n + m) + (chunks * n * t if chunks > 1 else 0))


class KeOps:
    """RBF sum reduction with pykeops.torch LazyTensors on torch CUDA tensors (None when unavailable)."""

    def __init__(self, enabled=True):
        self.ok = False
        self.why = "disabled (--no-keops)"
        if not enabled:
            return
        try:
            import pykeops  # noqa: F401
            import torch
            from pykeops.torch import LazyTensor

            if not torch.cuda.is_available():
                raise RuntimeError("torch has no CUDA")
            self.torch, self.LazyTensor = torch, LazyTensor
            self.ok = True
            self.name = f"KeOps {pykeops.__version__} (torch {torch.__version__})"
        except Exception as exc:  # noqa: BLE001
            self.why = f"not importable ({type(exc).__name__}: {exc})"

    def prepare(self, X, Z, v, gamma):
        torch, LT = self.torch, self.LazyTensor
        Xt, Zt, vt = (torch.from_numpy(a).cuda() for a in (X, Z, v))
        x_i, z_j = LT(Xt[:, None, :]), LT(Zt[None, :, :])
        K = (-gamma * ((x_i - z_j) ** 2).sum(-1)).exp()

        def run():
            out = K @ vt
            torch.cuda.synchronize()
            return out

        return run


def bench_ffi_matvec(peer, quick=False, keops=None, summary=None):
    F = _ffi()
    jax = peer.jax
    import jax.numpy as jnp

    hi = jax.lax.Precision.HIGHEST
    n = 20000 if quick else 200000
    rows_blk = 2000
    total_mem = None
    try:
        total_mem = peer.dev.memory_stats().get("bytes_limit")
    except Exception:  # noqa: BLE001
        pass
    sms = int(getattr(peer.dev, "core_count", 132) or 132)
    rows = []
    for dtype in (np.float32, np.float64):
        for d in (3, 32):
            rng = np.random.default_rng(0)
            Xh = rng.normal(size=(n, d)).astype(dtype)
            Zh = rng.normal(size=(n, d)).astype(dtype)
            vh = rng.normal(size=(n, 1)).astype(dtype)
            ls = float(np.sqrt(d))
            gamma = 1 / (2 * ls * ls)
            X, Z, v = peer.put(Xh, Zh, vh)
            g = jax.device_put(np.asarray(gamma, dtype), peer.dev)
            _sync_all(X, Z, v, g)
            ffi = jax.jit(lambda a, b, w, _ls=ls: F.kernel_matvec(a, b, w, "rbf", {"lengthscale": _ls}))
            t_nk = best_time(lambda: ffi(X, Z, v).block_until_ready(), 3)
            out = np.asarray(ffi(X, Z, v))
            itemsize = np.dtype(dtype).itemsize
            k_bytes = n * n * itemsize
            fits = total_mem is not None and 3 * k_bytes < 0.9 * total_mem
            if fits:
                t_full = best_time(lambda: peer.matvec(X, Z, v, g).block_until_ready(), 3)
                full_mib = peer.xla_bytes(peer.matvec, Xh, Zh, vh, np.asarray(gamma, dtype))
            else:
                t_full, full_mib = None, None

            def blocked(a, b, w, gg):
                ab = a.reshape(a.shape[0] // rows_blk, rows_blk, a.shape[1])
                return jax.lax.map(lambda xb: jnp.matmul(peer.rbf_raw(xb, b, gg), w, precision=hi), ab).reshape(
                    a.shape[0], -1)

            blocked = jax.jit(blocked)
            t_blk = best_time(lambda: blocked(X, Z, v, g).block_until_ready(), 2)
            ref = np.asarray(blocked(X, Z, v, g))
            err = _check(f"ffi matvec d={d}", out, ref, 1e-4 if dtype == np.float32 else 1e-11)
            blk_bytes = peer.xla_bytes(blocked, Xh, Zh, vh, np.asarray(gamma, dtype))
            t_ko, ko_err = None, None
            if keops is not None and keops.ok:
                run = keops.prepare(Xh, Zh, vh, float(gamma))
                t_ko = best_time(run, 3)
                ko_err = _check(f"keops d={d}", run().cpu().numpy(), ref, 1e-3 if dtype == np.float32 else 1e-10)
            xla_best = min(t for t in (t_full, t_blk) if t is not None)
            temp = _matvec_temp_bytes(n, n, 1, itemsize, sms)
            rows.append([np.dtype(dtype).name, n, d, 1, fmt_s(t_nk),
                         fmt_s(t_full) if t_full else f"does not fit ({k_bytes / 2**30:.0f} GiB for K)",
                         fmt_s(t_blk), _ratio(xla_best, t_nk), _ms(t_ko), _ratio(t_ko, t_nk),
                         f"{temp / MIB:.1f}", f"{full_mib / MIB:.0f}" if full_mib else "-",
                         f"{blk_bytes / MIB:.0f}" if blk_bytes else "-", f"{err:.1e}",
                         f"{ko_err:.1e}" if ko_err is not None else "-"])
            if summary is not None:
                nm = np.dtype(dtype).name
                target = 3.0 if dtype == np.float32 else 2.0
                summary.append([f"matvec FFI {nm} n={n} d={d}", fmt_s(t_nk), f"XLA {fmt_s(xla_best)}",
                                _ratio(xla_best, t_nk), f">= {target:.0f}x XLA",
                                "yes" if xla_best / t_nk >= target else "no"])
                if dtype == np.float32:
                    summary.append([f"matvec FFI {nm} n={n} d={d}", fmt_s(t_nk),
                                    f"KeOps {_ms(t_ko)}" if t_ko else "KeOps -", _ratio(t_ko, t_nk), ">= 1x KeOps",
                                    ("yes" if t_ko / t_nk >= 1 else "no") if t_ko else "-"])
            print("ffi_matvec", rows[-1], file=sys.stderr, flush=True)
            del X, Z, v
    header = ["dtype", "n = m", "d", "t", "ntkit fused custom call (jit, device)", "XLA materialise K, K @ v",
              f"XLA lax.map {rows_blk}-row blocks", "best XLA / ntkit", "KeOps LazyTensor (torch)", "KeOps / ntkit",
              "ntkit temporaries MiB", "XLA materialise MiB", "XLA blocked MiB", "rel. diff vs XLA",
              "KeOps rel. diff vs XLA"]
    note = "" if keops is None or keops.ok else f"\n\nKeOps column: {keops.why}."
    return table(header, rows) + note


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--section", default="all",
                    help="comma-separated subset of: " + ", ".join(SECTIONS) + " (default: all)")
    ap.add_argument("--no-keops", action="store_true", help="leave the KeOps column out")
    ap.add_argument("--out", default=None, help="write the markdown here (default: RESULTS_GPU.md on a full run)")
    args = ap.parse_args()
    chosen = list(SECTIONS) if args.section == "all" else [s.strip() for s in args.section.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    quick = args.quick
    import ntkit_native as nn

    if not nn.has_cuda():
        why = ("ntkit_native is not built" if not nn.is_available() else
               "ntkit_native was built without CUDA" if not nn.info()["cuda_compiled"] else "no CUDA device")
        print(f"bench_gpu: nothing to do ({why}); build with NTKIT_CUDA=1 on a machine with a CUDA GPU.")
        return 0
    t0 = time.time()
    peer = Peer()
    summary = []
    keops = KeOps(enabled=not args.no_keops) if "ffi_matvec" in chosen else None
    parts = []
    timings = []
    for name in chosen:
        title, fn = SECTIONS[name]
        if name.startswith("ffi_"):
            if peer.jax is None:
                parts += [title, "", "skipped: jax has no GPU backend", ""]
                continue
            if "CUDA" not in _ffi().platforms():
                parts += [title, "", "skipped: ntkit_native has no CUDA FFI targets (built without jaxlib?)", ""]
                continue
        ts = time.time()
        if name == "ffi_matvec":
            body = fn(peer, quick, keops=keops, summary=summary)
        elif name == "ffi_gram":
            body = fn(peer, quick, summary=summary)
        else:
            body = fn(peer, quick)
        timings.append(f"{name} {time.time() - ts:.0f} s")
        parts += [title, "", body, ""]
    if summary:
        parts += ["### Summary (issue 20 targets)", "",
                  table(["case", "ntkit", "peer", "peer / ntkit", "target", "met"], summary), ""]
    info = nn.info()
    text = "\n".join([
        "# GPU benchmark results",
        "",
        "Written by `python benchmarks/bench_gpu.py` (see its docstring for the method). Every table",
        "compares ntkit_native's CUDA kernels with the peer on the same data, on the same GPU, in the",
        "same run. host->host = numpy in, numpy out (upload + compute + download); 'kernels' = the",
        "extension's compute kernels alone (CUDA events); 'device' = device-resident arrays (the XLA",
        "FFI custom calls of ntkit_native._jax_ffi and the peer). Times are the best of 3 after a",
        "warm-up. Ratios > 1 mean ntkit is faster.",
        "",
        f"GPU: {gpu_description()}. Peer: {peer.name}, every product at precision HIGHEST (true FP32/FP64).",
        f"ntkit_native: cuBLAS {'yes' if info.get('cublas') else 'no (own GEMM)'}, "
        f"XLA FFI platforms {info.get('ffi_platforms')}.",
        f"Host: {_machine()}.",
        f"Total benchmark time: {time.time() - t0:.0f} s ({', '.join(timings)}){' (quick mode)' if quick else ''}.",
        "",
        *parts,
    ])
    print(text)
    out = args.out
    if out is None and set(chosen) == set(SECTIONS) and not quick:
        out = str(pathlib.Path(__file__).with_name("RESULTS_GPU.md"))
    if out:
        pathlib.Path(out).write_text(text + "\n")
        print(f"wrote {out}")
    return 0


SECTIONS = {
    "gram": ("### RBF `gram` (n x m output downloaded to the host)", bench_gram),
    "matvec": ("### Fused `kernel_matvec` (RBF): K(X, Z) @ v without storing K", bench_matvec),
    "batched": ("### `batched_gram`", bench_batched),
    "ffi_gram": ("### RBF `gram` through the XLA FFI custom call (device-resident jax arrays)", bench_ffi_gram),
    "ffi_matvec": ("### Fused `kernel_matvec` (RBF) through the XLA FFI custom call (device-resident)",
                   bench_ffi_matvec),
}


if __name__ == "__main__":
    sys.exit(main())
