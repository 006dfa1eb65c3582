"""Small driver that calls every CUDA entry point of ntkit_native once per variant.

Not a test module (no ``test_`` prefix): run it under compute-sanitizer, e.g.

    compute-sanitizer --tool memcheck --leak-check full python tests/native/cuda_smoke.py
    compute-sanitizer --tool racecheck python tests/native/cuda_smoke.py --small
    compute-sanitizer --tool initcheck python tests/native/cuda_smoke.py --small
    compute-sanitizer --tool memcheck python tests/native/cuda_smoke.py --zchunks
    compute-sanitizer --tool memcheck python tests/native/cuda_smoke.py --ffi   (jax on a GPU)

Every result is compared with the CPU path; the script prints one line per
entry point and exits non-zero on a mismatch (or 0 with a message when there
is no CUDA build / device). Covered: every kernel id through gram (cuBLAS GEMM /
SYRK + transform pass + symmetric finish, and the own tiled GEMM), the fused
register-tiled kernel_matvec (t = 1, t = 3 and 5 in groups of 4, symmetric, one and
several column chunks, near-duplicates through the guard), batched_gram (strided
batched GEMM, packed sum, symmetric), the row-slab path, empty / zero-feature
inputs, the DLPack path when cupy is importable, and with --ffi the XLA FFI CUDA
handlers (XLA's stream and scratch allocator).
"""

from __future__ import annotations

import sys


def main(small: bool, zchunks: bool, ffi: bool = False) -> int:
    import numpy as np

    import ntkit_native as nn

    if not nn.has_cuda():
        print("cuda_smoke: no CUDA build or device; nothing to do")
        return 0
    from ntkit_native import _C

    rng = np.random.default_rng(0)
    bad = []
    if zchunks:  # only the batched_gram launch split over gridDim.z (> 65535 batch entries)
        A = rng.standard_normal((66000, 2, 3))
        B = rng.standard_normal((66000, 3, 3))
        for Bin in (B, None):
            np.testing.assert_allclose(nn.batched_gram(A, Bin, "none", device="cuda"),
                                       nn.batched_gram(A, Bin, "none"), rtol=1e-12, atol=1e-12)
        print("cuda_smoke --zchunks: batched_gram over two batch chunks matches the CPU path")
        return 0

    def check(name, a, b, dtype):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = max(float(np.abs(b64).max()) if b64.size else 1.0, 1e-300)
        r = 1e-9 if dtype == np.float64 else 2e-3
        ok = a.shape == b.shape and a.dtype == b.dtype and bool(np.all(np.abs(a64 - b64) <= r * scale))
        if not ok:
            bad.append(name)
        return ok

    params = {"rbf": {"lengthscale": 2.0}, "laplace": {"lengthscale": 2.0}, "matern12": {"lengthscale": 2.0},
              "matern32": {"lengthscale": 2.0}, "matern52": {"lengthscale": 2.0},
              "polynomial": {"degree": 2, "gamma": 0.1, "coef0": 1.0},
              "relu_nngp": {"depth": 2, "weight_std": 1.2, "bias_std": 0.1},
              "relu_ntk": {"depth": 2, "weight_std": 1.2, "bias_std": 0.1}}
    n, m, d = (70, 45, 19) if small else (150, 131, 33)
    # GEMM back ends: cuBLAS with SYRK for K(X, X), cuBLAS GEMM only, the own tiled GEMM
    backends = [(True, True), (True, False), (False, True)] if nn.info()["cublas"] else [(False, True)]
    old_tuning = _C._cuda_get_tuning()
    try:
        for dtype in (np.float32, np.float64):
            X = rng.standard_normal((n, d)).astype(dtype)
            Z = rng.standard_normal((m, d)).astype(dtype)
            v = rng.standard_normal((m, 2)).astype(dtype)
            v5 = rng.standard_normal((m, 5)).astype(dtype)
            vs = rng.standard_normal(n).astype(dtype)
            for use_cublas, syrk in backends:
                _C._cuda_set_tuning(use_cublas, syrk)
                tag = "cublas" if use_cublas else "own"
                tag += "" if syrk or not use_cublas else "-gemm"
                for k in nn.KERNEL_IDS:
                    p = params.get(k)
                    check(f"gram {tag} {k}", nn.gram(X, Z, k, p, device="cuda"), nn.gram(X, Z, k, p), dtype)
                    check(f"gram sym {tag} {k}", nn.gram(X, None, k, p, device="cuda"), nn.gram(X, None, k, p),
                          dtype)
                A = rng.standard_normal((3, n, 17)).astype(dtype)
                B = rng.standard_normal((3, m, 17)).astype(dtype)
                for red in ("none", "sum"):
                    check(f"batched {tag} {red}", nn.batched_gram(A, B, red, device="cuda"),
                          nn.batched_gram(A, B, red), dtype)
                    check(f"batched sym {tag} {red}", nn.batched_gram(A, None, red, device="cuda"),
                          nn.batched_gram(A, None, red), dtype)
            _C._cuda_set_tuning(*old_tuning)
            for k in nn.KERNEL_IDS:  # the fused matvec: generic epilogue for all ids, RBF's own
                p = params.get(k)
                check(f"matvec {k}", nn.kernel_matvec(X, Z, v, k, p, device="cuda"),
                      nn.kernel_matvec(X, Z, v, k, p), dtype)
                check(f"matvec sym {k}", nn.kernel_matvec(X, None, vs, k, p, device="cuda"),
                      nn.kernel_matvec(X, None, vs, k, p), dtype)
            check("matvec t=5", nn.kernel_matvec(X, Z, v5, "rbf", params["rbf"], device="cuda"),
                  nn.kernel_matvec(X, Z, v5, "rbf", params["rbf"]), dtype)
            # few row panels, many column tiles: several column chunks + the partial-sum kernel
            Zl = rng.standard_normal((1500 if small else 6000, d)).astype(dtype)
            vl = rng.standard_normal(Zl.shape[0]).astype(dtype)
            for k in ("rbf", "matern32"):
                check(f"matvec chunks {k}", nn.kernel_matvec(X[:33], Zl, vl, k, params[k], device="cuda"),
                      nn.kernel_matvec(X[:33], Zl, vl, k, params[k]), dtype)
            # near-duplicates far from the origin: the cancellation guard's exact differences
            Xd = (np.repeat(X[:20], 2, axis=0) * 10 + 50).astype(dtype)
            for k in ("rbf", "laplace"):
                check(f"matvec guard {k}", nn.kernel_matvec(Xd, Xd, np.ones(40, dtype), k, params[k], device="cuda"),
                      nn.kernel_matvec(Xd, Xd, np.ones(40, dtype), k, params[k]), dtype)
            old = _C._cuda_set_slab_bytes(64 * m * np.dtype(dtype).itemsize)  # 64-row slabs
            try:
                check("gram slabs", nn.gram(X, Z, "rbf", None, device="cuda"), nn.gram(X, Z, "rbf"), dtype)
            finally:
                _C._cuda_set_slab_bytes(old)
            check("empty", nn.gram(X[:0], Z, device="cuda"), nn.gram(X[:0], Z), dtype)
            check("zero d", nn.kernel_matvec(X[:, :0], None, vs, "rbf", device="cuda"),
                  nn.kernel_matvec(X[:, :0], None, vs, "rbf"), dtype)
            check("zero d gram", nn.gram(X[:, :0], Z[:, :0], "rbf", device="cuda"), nn.gram(X[:, :0], Z[:, :0], "rbf"),
                  dtype)
            _dlpack_checks(nn, X, Z, v, dtype, check)
            if ffi:
                _ffi_checks(nn, X, Z, v, dtype, check)
            print(f"cuda_smoke {np.dtype(dtype).name}: done, profile of the last call: {_C._cuda_last_profile()}")
    finally:
        _C._cuda_set_tuning(*old_tuning)
    print("cuda_smoke:", "FAILED " + ", ".join(bad) if bad else "all CUDA entry points match the CPU path")
    return 1 if bad else 0


def _dlpack_checks(nn, X, Z, v, dtype, check):
    import numpy as np

    try:
        import cupy
    except Exception:  # noqa: BLE001  (not installed, or no usable CUDA for it)
        return
    Xd, Zd, vd = cupy.asarray(X), cupy.asarray(Z), cupy.asarray(v)
    check("dlpack gram", cupy.asnumpy(nn.gram(Xd, Zd, "rbf")), nn.gram(X, Z, "rbf"), dtype)
    check("dlpack matvec", cupy.asnumpy(nn.kernel_matvec(Xd, None, cupy.asarray(X[:, 0]), "rbf")),
          nn.kernel_matvec(X, None, np.ascontiguousarray(X[:, 0]), "rbf"), dtype)
    check("dlpack matvec Z", cupy.asnumpy(nn.kernel_matvec(Xd, Zd, vd, "laplace")), nn.kernel_matvec(X, Z, v, "laplace"),
          dtype)
    A = np.stack([X, X + 1])
    check("dlpack batched", cupy.asnumpy(nn.batched_gram(cupy.asarray(A), None, "sum")), nn.batched_gram(A, None, "sum"),
          dtype)


def _ffi_checks(nn, X, Z, v, dtype, check):
    import jax
    import numpy as np

    from ntkit_native import _jax_ffi as F

    if "CUDA" not in F.platforms() or not jax.devices("gpu"):
        print("cuda_smoke --ffi: no CUDA FFI targets or no jax GPU; skipped")
        return
    gpu = jax.devices("gpu")[0]
    with jax.enable_x64(np.dtype(dtype) == np.float64):
        Xg, Zg, vg = (jax.device_put(a, gpu) for a in (X, Z, v))
        p = {"lengthscale": 2.0}
        check("ffi gram", np.asarray(F.gram(Xg, Zg, "rbf", p)), nn.gram(X, Z, "rbf", p), dtype)
        check("ffi gram sym", np.asarray(F.gram(Xg, None, "matern52", p)), nn.gram(X, None, "matern52", p), dtype)
        check("ffi matvec", np.asarray(F.kernel_matvec(Xg, Zg, vg, "rbf", p)), nn.kernel_matvec(X, Z, v, "rbf", p),
              dtype)
        A = np.stack([X, 2 * X])
        check("ffi batched", np.asarray(F.batched_gram(jax.device_put(A, gpu), None, "sum")),
              nn.batched_gram(A, None, "sum"), dtype)


if __name__ == "__main__":
    sys.exit(main("--small" in sys.argv, "--zchunks" in sys.argv, "--ffi" in sys.argv))
