"""Small driver that calls every CUDA entry point of ntkit_native once per variant.

Not a test module (no ``test_`` prefix): run it under compute-sanitizer, e.g.

    compute-sanitizer --tool memcheck --leak-check full python tests/native/cuda_smoke.py
    compute-sanitizer --tool racecheck python tests/native/cuda_smoke.py --small
    compute-sanitizer --tool memcheck python tests/native/cuda_smoke.py --zchunks

Every result is compared with the CPU path; the script prints one line per
entry point and exits non-zero on a mismatch (or 0 with a message when there
is no CUDA build / device).
"""

from __future__ import annotations

import sys


def main(small: bool, zchunks: bool) -> int:
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
    for dtype in (np.float32, np.float64):
        X = rng.standard_normal((n, d)).astype(dtype)
        Z = rng.standard_normal((m, d)).astype(dtype)
        v = rng.standard_normal((m, 2)).astype(dtype)
        vs = rng.standard_normal(n).astype(dtype)
        for k in nn.KERNEL_IDS:
            p = params.get(k)
            check(f"gram {k}", nn.gram(X, Z, k, p, device="cuda"), nn.gram(X, Z, k, p), dtype)
            check(f"gram sym {k}", nn.gram(X, None, k, p, device="cuda"), nn.gram(X, None, k, p), dtype)
            check(f"matvec {k}", nn.kernel_matvec(X, Z, v, k, p, device="cuda"),
                  nn.kernel_matvec(X, Z, v, k, p), dtype)
            check(f"matvec sym {k}", nn.kernel_matvec(X, None, vs, k, p, device="cuda"),
                  nn.kernel_matvec(X, None, vs, k, p), dtype)
        old = _C._cuda_set_slab_bytes(64 * m * np.dtype(dtype).itemsize)  # 64-row slabs
        try:
            check("gram slabs", nn.gram(X, Z, "rbf", None, device="cuda"), nn.gram(X, Z, "rbf"), dtype)
        finally:
            _C._cuda_set_slab_bytes(old)
        A = rng.standard_normal((3, n, 17)).astype(dtype)
        B = rng.standard_normal((3, m, 17)).astype(dtype)
        for red in ("none", "sum"):
            check(f"batched {red}", nn.batched_gram(A, B, red, device="cuda"), nn.batched_gram(A, B, red), dtype)
            check(f"batched sym {red}", nn.batched_gram(A, None, red, device="cuda"),
                  nn.batched_gram(A, None, red), dtype)
        check("empty", nn.gram(X[:0], Z, device="cuda"), nn.gram(X[:0], Z), dtype)
        check("zero d", nn.kernel_matvec(X[:, :0], None, vs, "rbf", device="cuda"),
              nn.kernel_matvec(X[:, :0], None, vs, "rbf"), dtype)
        print(f"cuda_smoke {np.dtype(dtype).name}: done, profile of the last call: {_C._cuda_last_profile()}")
    print("cuda_smoke:", "FAILED " + ", ".join(bad) if bad else "all CUDA entry points match the CPU path")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main("--small" in sys.argv, "--zchunks" in sys.argv))
